"""SQLAlchemy 2 through tsaccess (``tsaccess.create_engine``): the role after every checkout and
reconnect, refusals as ``.orig``, pandas' ``read_sql`` and ``to_sql`` through the engine."""

from __future__ import annotations

import asyncio
import sys
import warnings

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine

import tsaccess
from tests.helpers import apply_company, untouched


@pytest.fixture
def company(db):
    return apply_company(db)


def _who(conn: sa.Connection) -> tuple[str, str, str]:
    row = conn.execute(
        sa.text("SELECT session_user, current_user, current_setting('application_name')")
    ).one()
    return (row[0], row[1], row[2])


def test_engine_is_role_scoped_and_refusals_surface_as_orig(company):
    engine = tsaccess.create_engine(
        **company.params("alice"),
        role="data_analysts",
        preflight=True,
        pool_size=1,
        max_overflow=2,
        pool_recycle=1800,
        pool_timeout=7,
    )
    try:
        assert isinstance(engine, sa.Engine)
        pool = engine.pool  # SQLAlchemy's own QueuePool, with the settings given
        assert (pool.size(), pool._max_overflow, pool._recycle, pool._timeout) == (1, 2, 1800, 7)
        with engine.connect() as conn:
            assert _who(conn) == ("alice", "data_analysts", "tsaccess:alice/data_analysts")
            assert conn.execute(sa.text("SELECT count(*) FROM sensor_readings")).scalar() == 0
            with pytest.raises(sa.exc.DBAPIError) as err:
                conn.execute(sa.text("SELECT amount FROM financial_metrics"))
            assert isinstance(err.value.orig, tsaccess.PreflightDenied)
            assert err.value.orig.missing[0].object == "public.financial_metrics"
            assert isinstance(err.value, sa.exc.ProgrammingError)  # 42501, as the server's
            raw = conn.connection.dbapi_connection
            assert isinstance(raw, tsaccess.TsConnection) and raw.verified_tls is not None
            assert raw.verified_tls.ssl
    finally:
        engine.dispose()


def test_the_role_is_back_after_every_checkout(company, db):
    with db.admin(autocommit=True) as admin:
        admin.execute(
            sql.SQL("GRANT TEMPORARY ON DATABASE {} TO alice").format(sql.Identifier(db.name))
        )
    engine = tsaccess.create_engine(**company.params("alice"), role="data_analysts", pool_size=1)
    try:
        with engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            # a borrower leaves a mess: its own role, settings, a temp table, a prepared stmt
            conn.execute(sa.text("RESET ROLE"))
            conn.execute(sa.text("SET work_mem = '77MB'"))
            conn.execute(sa.text("SELECT set_config('application_name', 'hijacked', false)"))
            conn.execute(sa.text("CREATE TEMP TABLE scratch (x int)"))
            conn.execute(sa.text("PREPARE mine AS SELECT 1"))
            conn.commit()
            assert _who(conn)[1] == "alice"
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() == pid  # reused
            assert _who(conn) == ("alice", "data_analysts", "tsaccess:alice/data_analysts")
            row = conn.execute(
                sa.text(
                    "SELECT current_setting('work_mem'),"
                    " (SELECT count(*) FROM pg_prepared_statements),"
                    " (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())"
                )
            ).one()
            assert tuple(row) == ("4MB", 0, 0)
    finally:
        engine.dispose()


def test_the_role_is_set_again_after_a_reconnect(company, db):
    engine = tsaccess.create_engine(
        **company.params("alice"), role="data_analysts", pool_size=1, pool_pre_ping=True
    )
    try:
        with engine.connect() as conn:
            first = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with db.admin(autocommit=True) as admin:  # the server ends the pooled session
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        with engine.connect() as conn:  # pool_pre_ping notices and reconnects
            second = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            assert second != first
            assert _who(conn)[1] == "data_analysts"
            conn.invalidate()  # the application throws the connection away
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() not in (first, second)
            assert _who(conn)[1] == "data_analysts"
    finally:
        engine.dispose()


def test_a_failed_reset_discards_the_connection(company):
    engine = tsaccess.create_engine(**company.params("alice"), role="data_analysts", pool_size=1)
    try:
        with engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            conn.execute(sa.text("SET myapp.tenant = 'evil'"))  # '' after RESET ALL, not NULL
            conn.commit()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
            tenant = conn.execute(sa.text("SELECT current_setting('myapp.tenant', true)"))
            assert tenant.scalar() is None
    finally:
        engine.dispose()


def test_pandas_read_sql_and_to_sql_through_the_engine(company, db):
    with db.admin(autocommit=True) as admin:
        admin.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature) VALUES"
            " (now(), 's1', 20.5), (now(), 's1', 21.5), (now(), 's2', NULL)"
        )
        admin.execute(
            "CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO data_engineers"
        )
    reader = tsaccess.create_engine(**company.params("alice"), role="data_analysts", preflight=True)
    writer = tsaccess.create_engine(**company.params("bob"), role="data_engineers", preflight=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pandas warns for a raw DBAPI connection, not here
            df = pd.read_sql(
                "SELECT sensor_id, avg(temperature) AS avg_temp FROM sensor_readings"
                " GROUP BY sensor_id ORDER BY sensor_id",
                reader,
            )
        assert str(df["avg_temp"].dtype) == "float64"
        assert df["avg_temp"].iloc[0] == 21.0 and pd.isna(df["avg_temp"].iloc[1])
        df.to_sql("averages", writer, schema="scratch", index=False)
        with writer.connect() as conn:
            back = conn.execute(sa.text("SELECT count(*) FROM scratch.averages")).scalar()
        assert back == 2
        with pytest.raises(Exception, match="financial_metrics") as refused:  # pandas 3 wraps it
            pd.read_sql("SELECT amount FROM financial_metrics", reader)
        chain = [refused.value, refused.value.__cause__]
        orig = next(e.orig for e in chain if isinstance(e, sa.exc.DBAPIError))
        assert isinstance(orig, tsaccess.PreflightDenied)
        with pytest.raises(sa.exc.ProgrammingError) as err:  # analysts may not create tables
            df.to_sql("averages2", reader, schema="scratch", index=False)
        assert isinstance(err.value.orig, psycopg.errors.InsufficientPrivilege)
    finally:
        reader.dispose()
        writer.dispose()


def test_weak_tls_is_refused_before_any_packet(tcp_trap):
    port, trap = tcp_trap
    with pytest.raises(tsaccess.InsecureConnectionError, match="sslmode='disable'"):
        tsaccess.create_engine(host="127.0.0.1", port=port, user="u", sslmode="disable")
    with pytest.raises(tsaccess.InsecureConnectionError, match="sslmode='prefer'"):
        tsaccess.create_async_engine(f"postgresql://u@127.0.0.1:{port}/x?sslmode=prefer")
    with pytest.raises(tsaccess.TsaccessError, match="row_factory"):
        tsaccess.create_engine(host="127.0.0.1", port=port, row_factory=None)
    assert untouched(trap)


def test_missing_sqlalchemy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(ImportError, match=r"pip install 'tsaccess\[sqlalchemy\]'"):
        tsaccess.create_engine(host="127.0.0.1")


def test_async_engine_is_role_scoped_and_reset(company):
    engine = tsaccess.create_async_engine(
        **company.params("alice"), role="data_analysts", preflight=True, pool_size=1
    )
    assert isinstance(engine, AsyncEngine)

    async def scenario() -> None:
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(sa.text("SELECT current_user, pg_backend_pid()"))).one()
                assert row[0] == "data_analysts"
                with pytest.raises(sa.exc.ProgrammingError) as err:
                    await conn.execute(sa.text("SELECT amount FROM financial_metrics"))
                assert isinstance(err.value.orig, tsaccess.PreflightDenied)
                await conn.rollback()
                await conn.execute(sa.text("RESET ROLE"))
                await conn.commit()
            async with engine.connect() as conn:
                again = (await conn.execute(sa.text("SELECT current_user, pg_backend_pid()"))).one()
                assert tuple(again) == ("data_analysts", row[1])  # the same session, reset
        finally:
            await engine.dispose()

    asyncio.run(scenario())
