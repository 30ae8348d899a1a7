"""The I/O of a check on an asynchronous connection: :mod:`~tsaccess.preflight.drive`'s twin.

The same requests of :meth:`tsaccess.preflight.Checker.steps` (a catalog :class:`Query`, a
:class:`Probe`), answered with the ``psycopg.AsyncConnection``'s own cursors on the event loop:
no worker thread, no second connection object over the session. A probe runs as on a
synchronous connection, in a transaction rolled back at once (``BEGIN ... ROLLBACK`` when the
session is idle, a savepoint inside the caller's transaction, through psycopg's
``AsyncConnection.transaction`` so pipelines and the transaction-pooler scope work), with the
caller's cursor class binding its parameters, and the session's prepared statements kept
(:func:`~tsaccess.preflight.drive.own_prepared`).
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from tsaccess.preflight.drive import (
    Binding,
    Probe,
    ProbeResult,
    Query,
    Request,
    internal,
    own_prepared,
)

__all__ = ["catalog_rows_async", "drive_async", "run_probe_async"]

T = TypeVar("T")

_CURSORS: dict[Binding, type[psycopg.AsyncCursor[Any]]] = {
    "server": psycopg.AsyncCursor,
    "client": psycopg.AsyncClientCursor,
    "raw": psycopg.AsyncRawCursor,
}


async def catalog_rows_async(
    conn: psycopg.AsyncConnection[Any], query: Any, params: Any = None
) -> list[tuple[Any, ...]]:
    """:func:`~tsaccess.preflight.snapshot.catalog_rows`'s twin: a catalog query past the
    pre-flight cursor, leaving the transaction state as found."""
    was_idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with internal():
        async with psycopg.AsyncCursor(conn, row_factory=tuple_row) as cur:
            await cur.execute(query, params)
            rows = await cur.fetchall()
        if was_idle and not conn.autocommit:
            await conn.rollback()
    return rows


async def run_probe_async(
    conn: psycopg.AsyncConnection[Any],
    probe: Probe,
    params: Any = None,
    binding: Binding = "server",
) -> ProbeResult:
    """:func:`~tsaccess.preflight.drive.run_probe`'s twin."""
    direct = (
        conn.autocommit
        and not probe.setup
        and probe.generic < 0
        and conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        and conn._pipeline is None
    )
    row: tuple[Any, ...] = ()
    stage = "setup"
    try:
        with internal():
            async with AsyncExitStack() as stack:
                if not direct:
                    await stack.enter_async_context(conn.transaction(force_rollback=True))
                cur = await stack.enter_async_context(_CURSORS[binding](conn))
                for text in probe.setup:
                    await cur.execute(text, prepare=False)
                if probe.checks is not None:
                    await cur.execute(probe.checks, prepare=False)
                    row = tuple(await cur.fetchone() or ())
                stage = "statement"
                if probe.statement is None or (
                    row and probe.explain_if and all(row[i] for i in probe.explain_if)
                ):
                    return ProbeResult(None, checks=row)
                if probe.generic >= 0:
                    found = await _generic(conn, cur, probe)
                    return ProbeResult(found.sqlstate, found.message, checks=row, ran=True)
                args = params if probe.with_params else None
                await cur.execute(probe.statement, args, prepare=False)
    except psycopg.Error as exc:
        message = str(exc).split("\n", 1)[0]
        return ProbeResult(exc.sqlstate, message, stage == "setup", row, stage == "statement")
    return ProbeResult(None, checks=row, ran=True)


async def _generic(
    conn: psycopg.AsyncConnection[Any], cur: psycopg.AsyncCursor[Any], probe: Probe
) -> ProbeResult:
    """``EXPLAIN`` of a query whose parameters have no values (see :class:`Probe`)."""
    name = sql.Identifier("tsaccess_preflight_probe")
    statement = probe.statement or ""
    query = sql.SQL(statement) if isinstance(statement, str) else statement
    await cur.execute(sql.SQL("PREPARE {} AS ").format(name) + query, prepare=False)
    explain = sql.SQL("EXPLAIN EXECUTE {}").format(name)
    if probe.generic:
        explain += sql.SQL("({})").format(sql.SQL(", ").join([sql.NULL] * probe.generic))
    result = ProbeResult(None)
    try:
        async with conn.transaction():
            await cur.execute(explain, prepare=False)
    except psycopg.Error as exc:
        result = ProbeResult(exc.sqlstate, str(exc).split("\n", 1)[0])
    await cur.execute(sql.SQL("DEALLOCATE {}").format(name), prepare=False)
    return result


async def drive_async(
    conn: psycopg.AsyncConnection[Any],
    gen: Generator[Request, Any, T],
    params: Any = None,
    binding: Binding = "server",
) -> T:
    """Run a checker's generator to its verdict, answering its requests on ``conn``."""
    try:
        request = next(gen)
        with own_prepared(conn):
            while True:
                if isinstance(request, Query):
                    answer: Any = await catalog_rows_async(conn, request.sql, request.params)
                else:
                    answer = await run_probe_async(conn, request, params, binding)
                request = gen.send(answer)
    except StopIteration as stop:
        result: T = stop.value
        return result
