"""The async client as an application uses it (``asyncio.run``, ``await``): what the shared
sync/async tests (the ``driver`` fixture) do not show — the default DENIED event, the actor on
audit rows, a pool under concurrent tasks, the sync face leaving the session as it was."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

import tsaccess
from tests.helpers import apply_company
from tsaccess import audit


@pytest.fixture
def company(db):
    return apply_company(db)


def test_connect_async_scopes_refuses_and_records(company):
    async def scenario() -> tuple[str, str, bool]:
        with pytest.raises(tsaccess.InsecureConnectionError, match="sslmode='disable'"):
            await tsaccess.connect_async(**{**company.params("alice"), "sslmode": "disable"})
        conn = await tsaccess.connect_async(
            **company.params("alice"), role="data_analysts", preflight=True
        )
        async with conn:
            assert isinstance(conn, tsaccess.AsyncTsConnection)
            assert isinstance(conn, psycopg.AsyncConnection)
            cur = await conn.execute("SELECT session_user, current_user")
            who = await cur.fetchone()
            status = await conn.tls_status()
            with pytest.raises(tsaccess.PreflightDenied) as err:  # never sent
                await conn.execute("SELECT amount FROM financial_metrics")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert err.value.role == "data_analysts"
            cur = await conn.execute("SELECT count(*) FROM sensor_readings")
            assert await cur.fetchone() == (0,)
        return who[0], who[1], status.ssl

    assert asyncio.run(scenario()) == ("alice", "data_analysts", True)
    with company.connect("eve") as conn:  # the auditor: a DENIED event, recorded by default
        events = audit.recent(conn)
    assert [(e.username, e.operation) for e in events] == [("alice", "DENIED")]
    assert "financial_metrics" in (events[0].table_name or "")


def test_async_pool_hands_out_scoped_connections_and_resets_them(company):
    async def scenario() -> set[tuple[str, str, str]]:
        pool = await tsaccess.create_async_pool(
            **company.params("bob"), role="data_engineers", min_size=2, max_size=2
        )
        seen: set[tuple[str, str, str]] = set()

        async def borrower(n: int) -> None:
            for _ in range(15):
                async with pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT current_user, current_setting('work_mem'),"
                        " coalesce(current_setting('tsaccess.actor', true), '')"
                    )
                    row = await cur.fetchone()
                    seen.add(row)
                    await conn.set_actor(f"task-{n}")  # forgotten on return
                    await conn.execute("RESET ROLE")
                    await conn.execute("SET work_mem = '64MB'")
                    await conn.commit()

        async with pool:
            assert isinstance(pool, tsaccess.AsyncScopedPool) and pool.role == "data_engineers"
            await asyncio.gather(*(borrower(n) for n in range(4)))
        return seen

    assert asyncio.run(scenario()) == {("data_engineers", "4MB", "")}


def test_actor_tags_audit_rows_from_async_code(company):
    async def scenario() -> None:
        async with await tsaccess.connect_async(
            **company.params("bob"), role="data_engineers"
        ) as conn:
            await conn.set_actor("api:bob", "req-7")
            await conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')")
            await conn.commit()

    asyncio.run(scenario())
    with company.connect("eve") as conn:
        events = audit.recent(conn)
    assert [(e.username, e.operation, e.actor, e.request_id) for e in events] == [
        ("bob", "INSERT", "api:bob", "req-7")
    ]


def test_the_sync_face_leaves_the_async_session_as_it_was(company):
    """Pre-flight's catalog reads run on the sync face: the async connection's own prepared
    statements, notice handlers and transaction are untouched."""

    async def scenario() -> list[str]:
        notices: list[str] = []
        conn = await tsaccess.connect_async(**company.params("alice"), preflight=True)
        async with conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            for _ in range(7):  # auto-prepared by the async connection as _pg3_0
                await conn.execute(
                    "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s", ("s",)
                )
            conn.preflight.invalidate()  # the next check reads the catalog on the sync face
            await conn.execute("SELECT sensor_id FROM sensor_readings WHERE location = %s", ("x",))
            with pytest.raises(tsaccess.PreflightDenied):
                await conn.execute("DELETE FROM sensor_readings")
            await conn.execute("DO $$ BEGIN RAISE NOTICE 'still mine'; END $$")
            cur = await conn.execute(
                "SELECT name FROM pg_prepared_statements WHERE NOT from_sql ORDER BY 1"
            )
            names = [r[0] for r in await cur.fetchall()]
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert notices == ["still mine"]
        return names

    assert asyncio.run(scenario()) == ["_pg3_0"]
