"""The async pre-flight connection, as ``test_preflight_cursors`` for the sync one: every async
cursor is checked and keeps its behaviour, refusals are confirmed by the server on the async
connection's own cursors (parameters bound as the cursor binds them), and a check holds the
session: no other task's statement lands between its statements. (The confirmation's
transaction or savepoint, for both clients: ``test_preflight_cursors``.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from structlog.testing import capture_logs

import tsaccess
from tests.helpers import apply_company
from tsaccess.preflight.aio import check_async

REFUSED = "SELECT amount FROM financial_metrics WHERE metric_type = %s"


@pytest.fixture
def company(db):
    return apply_company(db)


def _run(company: Any, user: str, body: Callable[[Any], Awaitable[Any]], **kw: Any) -> Any:
    async def scenario() -> Any:
        conn = await tsaccess.connect_async(**company.params(user), preflight=True, **kw)
        async with conn:
            return await body(conn)

    return asyncio.run(scenario())


@pytest.mark.parametrize("factory", [psycopg.AsyncClientCursor, psycopg.AsyncRawCursor])
def test_a_cursor_factory_is_kept_and_checked(company, factory):
    async def body(conn: Any) -> None:
        cur = conn.cursor()
        assert isinstance(cur, factory)
        if factory is psycopg.AsyncClientCursor:
            await cur.execute("SET work_mem = %s", ("8MB",))  # still binds client-side
            stmt, ok = REFUSED, "SELECT sensor_id FROM sensor_readings WHERE sensor_id = %s"
        else:  # still takes the server's $1 placeholders as written
            stmt = "SELECT amount FROM financial_metrics WHERE metric_type = $1"
            ok = "SELECT sensor_id FROM sensor_readings WHERE sensor_id = $1"
        await cur.execute(ok, ("s",))
        assert await cur.fetchall() == []
        with pytest.raises(tsaccess.PreflightDenied, match="financial_metrics"):
            await cur.execute(stmt, ("revenue",))  # confirmed with the value, bound the same way
        assert conn.info.transaction_status == TransactionStatus.INTRANS

    _run(company, "alice", body, cursor_factory=factory)


@pytest.mark.parametrize(
    "cls", [psycopg.AsyncClientCursor, psycopg.AsyncRawCursor, psycopg.AsyncCursor]
)
def test_a_cursor_built_directly_is_checked(company, cls):
    async def body(conn: Any) -> None:
        cur = cls(conn)
        assert isinstance(cur, cls)
        with pytest.raises(tsaccess.PreflightDenied):
            await cur.execute("SELECT amount FROM financial_metrics")
        with pytest.raises(tsaccess.PreflightDenied):
            async with cur.copy("COPY financial_metrics TO STDOUT"):
                pass
        await cur.execute("SELECT count(*) FROM sensor_readings")
        assert await cur.fetchone() == (0,)

    _run(company, "alice", body)


def test_named_cursors_built_any_way_are_checked(company):
    async def body(conn: Any) -> None:
        await conn.execute("SELECT 1")
        for cur in [
            conn.cursor(name="a"),
            psycopg.AsyncServerCursor(conn, "b"),
            psycopg.AsyncRawServerCursor(conn, "c"),
        ]:
            with pytest.raises(tsaccess.PreflightDenied):
                await cur.execute("SELECT amount FROM financial_metrics")
            await cur.close()
        assert conn.info.transaction_status == TransactionStatus.INTRANS  # no DECLARE sent

    _run(company, "alice", body)


def test_executemany_copy_and_stream_are_checked(company):
    async def body(conn: Any) -> None:
        cur = conn.cursor()
        rows = ((f"s{i}",) for i in range(3))  # a generator: consumed once, all rows sent
        await cur.executemany(
            "INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), %s)", rows
        )
        await cur.execute("SELECT count(*) FROM sensor_readings")
        assert await cur.fetchone() == (3,)
        with pytest.raises(tsaccess.PreflightDenied):
            await cur.executemany(
                "INSERT INTO financial_metrics (time, metric_type) VALUES (now(), %s)",
                iter([("a",)]),
            )
        with pytest.raises(tsaccess.PreflightDenied):
            async for _ in cur.stream("SELECT amount FROM financial_metrics"):
                pass
        got = [r async for r in cur.stream("SELECT sensor_id FROM sensor_readings LIMIT 1")]
        assert got == [("s0",)]
        await conn.rollback()

    _run(company, "bob", body)


def test_pipelines_are_checked_and_keep_working(company):
    async def body(conn: Any) -> None:
        async with conn.pipeline():
            cur = await conn.execute("SELECT count(*) FROM sensor_readings")
            with pytest.raises(tsaccess.PreflightDenied):
                await conn.execute("SELECT amount FROM financial_metrics")
            again = await conn.execute("SELECT sensor_id FROM sensor_readings WHERE false")
        assert await cur.fetchone() == (0,)
        assert await again.fetchall() == []
        assert conn.info.transaction_status == TransactionStatus.INTRANS

    _run(company, "alice", body)


def test_a_disagreement_is_let_through_counted_and_logged(company):
    """A function call PostgreSQL folds away: the analysis finds EXECUTE missing, EXPLAIN of
    the statement runs; the statement is sent."""

    async def body(conn: Any) -> None:
        with capture_logs() as logs:
            cur = await conn.execute("SELECT CASE WHEN false THEN pg_read_file('x') END")
            assert await cur.fetchone() == (None,)
        assert conn.preflight_disagreements == 1
        events = [e for e in logs if e["event"] == "preflight disagreement"]
        assert events and "EXECUTE on function pg_read_file" in events[0]["missing"][0]

    _run(company, "alice", body, autocommit=True)


def test_a_check_holds_the_session_against_other_tasks(company):
    """A refusal confirmed in a savepoint is several statements: another task's COMMIT on the
    same connection waits for the check (had it landed between them, the savepoint would be
    gone and the transaction committed mid-probe)."""

    async def body(conn: Any) -> list[str]:
        await conn.execute("SELECT 1")
        order: list[str] = []

        conn.on_denied = lambda stmt, verdict: order.append("refused")  # the check is done

        async def refused() -> None:
            with pytest.raises(tsaccess.PreflightDenied):
                await conn.execute("UPDATE sensor_readings SET temperature = 0")

        async def commit() -> None:
            await asyncio.sleep(0)  # the check has started
            await conn.commit()
            order.append("committed")

        await asyncio.gather(refused(), commit())
        assert conn.info.transaction_status == TransactionStatus.IDLE
        return order

    assert _run(company, "alice", body) == ["refused", "committed"]


def test_check_async_on_a_plain_async_connection(company):
    async def scenario() -> tuple[str, str]:
        conn = await tsaccess.connect_async(**company.params("alice"))
        async with conn:
            a = await check_async(conn, "SELECT amount FROM financial_metrics")
            b = await check_async(conn, "SELECT * FROM sensor_readings")
            assert conn.info.transaction_status == TransactionStatus.IDLE
        return a.status, b.status

    assert asyncio.run(scenario()) == ("denied", "allowed")
