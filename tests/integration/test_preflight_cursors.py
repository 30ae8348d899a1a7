"""Every cursor is checked, and keeps its behaviour: cursor_factory classes, cursors built
directly on the connection, named cursors, executemany, copy, stream, pipelines; refusals are
confirmed by the server without changing anything, disagreements let through and counted."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from structlog.testing import capture_logs

import tsaccess
from tests.helpers import apply_company

REFUSED = "SELECT amount FROM financial_metrics WHERE metric_type = %s"


@pytest.fixture
def company(db):
    return apply_company(db)


def _server_binding_fails(conn: psycopg.Connection) -> bool:
    """``SET x = $1`` is a syntax error: only a client-side binding cursor can send it."""
    try:
        conn.execute("SET work_mem = %s", ("8MB",))
    except psycopg.errors.SyntaxError:
        conn.rollback()
        return True
    return False


@pytest.mark.parametrize("factory", [psycopg.ClientCursor, psycopg.RawCursor])
def test_a_cursor_factory_is_kept_and_checked(company, factory):
    with company.connect("alice", preflight=True, cursor_factory=factory) as conn:
        cur = conn.cursor()
        assert isinstance(cur, factory)
        if factory is psycopg.ClientCursor:
            assert not _server_binding_fails(conn)  # still binds client-side
            assert cur.mogrify("SELECT %s", (1,)) == "SELECT 1"
            stmt, ok = REFUSED, "SELECT sensor_id FROM sensor_readings WHERE sensor_id = %s"
        else:  # still takes the server's $1 placeholders as written
            stmt = "SELECT amount FROM financial_metrics WHERE metric_type = $1"
            ok = "SELECT sensor_id FROM sensor_readings WHERE sensor_id = $1"
        assert cur.execute(ok, ("s",)).fetchall() == []
        conn.execute("SELECT 1")  # a transaction is open: a sent refusal would abort it
        with pytest.raises(tsaccess.PreflightDenied, match="financial_metrics"):
            cur.execute(stmt, ("revenue",))
        assert conn.info.transaction_status == TransactionStatus.INTRANS


def test_the_factory_can_be_set_after_connecting(company):
    with company.connect("alice", preflight=True) as conn:
        assert _server_binding_fails(conn)
        conn.cursor_factory = psycopg.ClientCursor
        assert not _server_binding_fails(conn)
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute(REFUSED, ("x",))


@pytest.mark.parametrize("cls", [psycopg.ClientCursor, psycopg.RawCursor, psycopg.Cursor])
def test_a_cursor_built_directly_is_checked(company, cls):
    with company.connect("alice", preflight=True) as conn:
        cur = cls(conn)
        assert isinstance(cur, cls)
        with pytest.raises(tsaccess.PreflightDenied):
            cur.execute("SELECT amount FROM financial_metrics")
        with pytest.raises(tsaccess.PreflightDenied):
            with cur.copy("COPY financial_metrics TO STDOUT"):
                pass
        cur.execute("SELECT count(*) FROM sensor_readings")
        assert cur.fetchone() == (0,)
    with company.connect("alice", preflight=True) as conn:
        if cls is psycopg.ClientCursor:
            cls(conn).execute("SET work_mem = %s", ("8MB",))  # client-side binding kept


def test_named_cursors_built_any_way_are_checked(company):
    with company.connect("alice", preflight=True) as conn:
        conn.execute("SELECT 1")
        for cur in [
            conn.cursor(name="a"),
            psycopg.ServerCursor(conn, "b"),
            psycopg.RawServerCursor(conn, "c"),
        ]:
            with pytest.raises(tsaccess.PreflightDenied):
                cur.execute("SELECT amount FROM financial_metrics")
            cur.close()
        assert conn.info.transaction_status == TransactionStatus.INTRANS  # no DECLARE sent


def test_executemany_copy_and_stream_are_checked(company):
    with company.connect("bob", preflight=True) as conn:
        cur = conn.cursor()
        rows = ((f"s{i}",) for i in range(3))  # a generator: consumed once, all rows sent
        cur.executemany("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), %s)", rows)
        assert conn.execute("SELECT count(*) FROM sensor_readings").fetchone() == (3,)
        with pytest.raises(tsaccess.PreflightDenied):
            cur.executemany(
                "INSERT INTO financial_metrics (time, metric_type) VALUES (now(), %s)",
                iter([("a",)]),
            )
        cur.executemany("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), %s)", [])
        with pytest.raises(tsaccess.PreflightDenied):
            for _ in cur.stream("SELECT amount FROM financial_metrics"):
                pass
        assert list(cur.stream("SELECT sensor_id FROM sensor_readings LIMIT 1")) == [("s0",)]
        conn.rollback()


def test_pipelines_are_checked_and_keep_working(company):
    with company.connect("alice", preflight=True) as conn:
        with conn.pipeline():
            cur = conn.execute("SELECT count(*) FROM sensor_readings")
            with pytest.raises(tsaccess.PreflightDenied):
                conn.execute("SELECT amount FROM financial_metrics")
            again = conn.execute("SELECT sensor_id FROM sensor_readings WHERE false")
        assert cur.fetchone() == (0,)
        assert again.fetchall() == []
        assert conn.info.transaction_status == TransactionStatus.INTRANS


def test_a_refusal_is_confirmed_without_touching_the_transaction(company):
    with company.connect("alice", preflight=True) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("UPDATE sensor_readings SET temperature = 0")
        # the probe's savepoint is gone and held no lock: another session may lock the table
        with company.db.admin(autocommit=True) as admin:
            admin.execute("SET lock_timeout = '2s'")
            admin.execute("BEGIN; LOCK sensor_readings IN ACCESS EXCLUSIVE MODE; ROLLBACK")
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        assert conn.execute("SELECT count(*) FROM sensor_readings").fetchone() == (0,)


def test_a_disagreement_is_let_through_counted_and_logged(company):
    """A function call PostgreSQL folds away: the analysis finds EXECUTE missing, EXPLAIN of
    the statement runs; the statement is sent."""
    stmt = "SELECT CASE WHEN false THEN pg_read_file('x') END"
    with company.connect("alice", preflight=True, autocommit=True) as conn:
        with capture_logs() as logs:
            assert conn.execute(stmt).fetchone() == (None,)
        assert conn.preflight_disagreements == 1
        events = [e for e in logs if e["event"] == "preflight disagreement"]
        assert events and "EXECUTE on function pg_read_file" in events[0]["missing"][0]
        assert "'x'" not in events[0]["statement"]  # constants are not logged


def test_a_statement_with_parameters_is_confirmed_with_them(company):
    with company.connect("alice", preflight=True) as conn:
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute(REFUSED, ("revenue",))
        verdict = tsaccess.preflight.check(
            conn, "SELECT amount FROM financial_metrics WHERE amount > $1"
        )
        assert verdict.status == "denied"  # no values: prepared and explained with NULLs
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


@pytest.mark.parametrize("autocommit", [False, True])
def test_a_confirmation_leaves_the_session_as_it_was(company, driver, autocommit):
    """For both clients, in a transaction (a savepoint) and in autocommit: the probe holds no
    lock afterwards, leaves the transaction state and the session's own prepared statements
    (psycopg deallocates them at a rollback: not at the probe's), and none of its own."""
    with driver.connect(**company.params("alice"), preflight=True, autocommit=autocommit) as conn:
        if not autocommit:
            conn.execute("SELECT 1")
        for _ in range(7):  # auto-prepared by the connection
            conn.execute("SELECT length(%s::text)", ("s",))
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("UPDATE sensor_readings SET temperature = 0")
        with pytest.raises(tsaccess.PreflightDenied):  # no values: prepared, explained with NULLs
            conn.execute("SELECT amount FROM financial_metrics WHERE amount > $1")
        with company.db.admin(autocommit=True) as admin:
            admin.execute("SET lock_timeout = '2s'")
            admin.execute("BEGIN; LOCK sensor_readings IN ACCESS EXCLUSIVE MODE; ROLLBACK")
        idle = TransactionStatus.IDLE if autocommit else TransactionStatus.INTRANS
        assert conn.info.transaction_status == idle
        rows = conn.execute(
            "SELECT name, from_sql FROM pg_prepared_statements ORDER BY 1"
        ).fetchall()
        assert rows == [("_pg3_0", False)]
