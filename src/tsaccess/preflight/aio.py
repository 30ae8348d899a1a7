"""The async pre-flight connection: :class:`AsyncPreflightConnection` and its cursors.

A thin I/O face over the same :class:`~tsaccess.preflight.Checker` and the same decisions as
:mod:`tsaccess.preflight.connection` (:func:`~tsaccess.preflight.connection.checked_text`,
:func:`~tsaccess.preflight.connection.refusal`,
:func:`~tsaccess.preflight.connection.after_statement`): a verdict already in the checker's
caches is answered on the event loop with no I/O; otherwise the checker runs in a worker thread
on the connection's sync face (:meth:`tsaccess.client.aio.AsyncTsConnection.run_sync`, holding
the connection's lock), and so does the ``DENIED`` audit event of a refusal.
``tsaccess.connect_async(..., preflight=True)`` and ``create_async_pool(..., preflight=True)``
create it (this module plugs it in when imported; ``import tsaccess`` imports it).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from tsaccess.client.aio import (
    AsyncTsConnection,
    AsyncTsCursor,
    AsyncTsServerCursor,
    plug_async_preflight,
)
from tsaccess.client.connection import TsConnection
from tsaccess.preflight.checker import Checker, Verdict
from tsaccess.preflight.connection import (
    PreflightState,
    after_statement,
    checked_text,
    refusal,
    server_refused,
)

__all__ = [
    "AsyncPreflightConnection",
    "AsyncPreflightCursor",
    "AsyncPreflightServerCursor",
    "check_async",
]


def _check_on(conn: TsConnection, checker: Checker, text: str, has_params: bool) -> Verdict:
    return checker.check(text, has_params=has_params)


async def _verdict(conn: AsyncPreflightConnection, text: str, has_params: bool) -> Verdict:
    v = conn.preflight.cached_verdict(text, has_params=has_params)
    if v is None:
        v = await conn.run_sync(_check_on, conn.preflight, text, has_params)
    return v


async def _preflight(connection: Any, query: Any, has_params: bool) -> str | None:
    checked = checked_text(connection, query)
    if checked is None or not isinstance(connection, AsyncPreflightConnection):
        return None
    conn, text = connection, checked[1]
    verdict = await _verdict(conn, text, has_params)
    if verdict.status == "denied":
        error, reason, tables = refusal(conn, text, verdict)
        if conn.on_denied is not None:
            result = conn.on_denied(text, verdict)
            if inspect.isawaitable(result):
                await result
        elif conn.record_denied:
            await conn.record_refusal(text, reason, tables)
        raise error
    return text


class AsyncPreflightCursor(AsyncTsCursor):
    """An async cursor that checks every statement before sending it (see
    :class:`AsyncPreflightConnection`)."""

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = await _preflight(self.connection, query, params is not None)
        try:
            result = await super().execute(query, params, **kwargs)
        except psycopg.errors.InsufficientPrivilege:
            server_refused(self.connection)
            raise
        after_statement(self.connection, text)
        return result

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        await _preflight(self.connection, query, True)
        await super().executemany(query, params_seq, **kwargs)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        return _CheckedCopy(self, statement, params, kwargs)

    async def stream(self, query: Any, params: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        await _preflight(self.connection, query, params is not None)
        async for row in super().stream(query, params, **kwargs):
            yield row


class _CheckedCopy:
    """``async with cur.copy(...)``: the statement is checked before ``COPY`` is sent."""

    def __init__(self, cur: AsyncPreflightCursor, statement: Any, params: Any, kw: Any) -> None:
        self._cur, self._args = cur, (statement, params, kw)
        self._cm: Any = None

    async def __aenter__(self) -> Any:
        statement, params, kw = self._args
        await _preflight(self._cur.connection, statement, params is not None)
        self._cm = psycopg.AsyncCursor.copy(self._cur, statement, params, **kw)
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._cm.__aexit__(*exc)


class AsyncPreflightServerCursor(AsyncTsServerCursor):
    """A named (server-side) async cursor, checked like :class:`AsyncPreflightCursor`."""

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        await _preflight(self.connection, query, params is not None)
        try:
            return await super().execute(query, params, **kwargs)
        except psycopg.errors.InsufficientPrivilege:
            server_refused(self.connection)
            raise


class AsyncPreflightConnection(PreflightState, AsyncTsConnection):
    """An :class:`~tsaccess.client.aio.AsyncTsConnection` whose cursors pre-flight every
    statement, as :class:`~tsaccess.preflight.PreflightConnection` does (same checker, same
    refusals: :class:`~tsaccess.PreflightDenied`, a ``DENIED`` audit event by default,
    ``on_denied`` may be a coroutine function)."""

    def after_connect(self, *, preflight: bool) -> None:
        self._start_preflight(self.sync_face(), preflight)
        self.cursor_factory = AsyncPreflightCursor
        self.server_cursor_factory = AsyncPreflightServerCursor

    def after_reset(self) -> None:
        self._reset_preflight()


plug_async_preflight(AsyncPreflightConnection)


async def check_async(conn: psycopg.AsyncConnection[Any], statement: str) -> Verdict:
    """:func:`tsaccess.preflight.check` for an async connection opened by tsaccess: the
    verdict for ``statement`` as the session's user and role, without running it."""
    if isinstance(conn, AsyncPreflightConnection):
        return await _verdict(conn, statement, False)
    if not isinstance(conn, AsyncTsConnection):
        raise TypeError("check_async() needs a connection opened by tsaccess.connect_async()")
    return await conn.run_sync(lambda face: Checker(face).check(statement))
