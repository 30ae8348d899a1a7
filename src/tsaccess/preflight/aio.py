"""The async pre-flight connection: :class:`AsyncPreflightConnection` and its cursors.

The twin of :mod:`tsaccess.preflight.connection`: the same
:class:`~tsaccess.preflight.Checker`, state (:class:`~tsaccess.preflight.connection.
PreflightState`) and decisions, only the I/O is awaited. A verdict that needs no I/O
(:meth:`Checker.quick <tsaccess.preflight.Checker.quick>`: cached, or proven by the token scan)
is answered on the event loop; otherwise the checker's steps are driven with the connection's
own cursors (:mod:`~tsaccess.preflight.drive_async`: catalog reads, the refusal's confirmation
in a rolled-back transaction or savepoint), holding the connection's lock — reentrant for the
task holding it — so no other task uses the session between the check's statements.

Every cursor is checked and keeps its behaviour, as on the sync connection: a
``cursor_factory`` (``psycopg.AsyncClientCursor``, ``AsyncRawCursor``...), cursors built
directly on the connection, named cursors, ``executemany``, ``copy``, ``stream``, pipelines.
``on_denied`` may be a coroutine function. The default ``DENIED`` audit event is recorded by
:meth:`~tsaccess.client.aio.AsyncTsConnection.record_refusal` (the recorder's side connections
and standby handling are sync code: it runs on the connection's sync face in a worker thread).
``tsaccess.connect_async(..., preflight=True)`` and ``create_async_pool(..., preflight=True)``
create the connection (this module plugs it in when imported; ``import tsaccess`` imports it).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import AsyncIterator
from typing import Any, Literal

import psycopg
from psycopg.rows import tuple_row

from tsaccess.client.aio import (
    AsyncTsConnection,
    AsyncTsCursor,
    AsyncTsServerCursor,
    plug_async_preflight,
)
from tsaccess.preflight.checker import Checker, Verdict
from tsaccess.preflight.connection import (
    PreflightState,
    after_statement,
    checked_class,
    refusal,
    server_refused,
    statement_text,
)
from tsaccess.preflight.drive import Binding
from tsaccess.preflight.drive_async import drive_async

__all__ = [
    "AsyncPreflightConnection",
    "AsyncPreflightCursor",
    "AsyncPreflightServerCursor",
    "check_async",
    "checked_async_class",
]

_NOTHING: Any = object()


class _TaskLock(asyncio.Lock):
    """An ``asyncio.Lock`` the task holding it may take again (psycopg takes the connection's
    lock for each statement; a check holds it across several)."""

    _owner: asyncio.Task[Any] | None = None
    _depth = 0

    async def acquire(self) -> Literal[True]:
        task = asyncio.current_task()
        if task is not None and task is self._owner:
            self._depth += 1
            return True
        await super().acquire()
        self._owner, self._depth = task, 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            super().release()


class _AsyncChecks:
    """What every async pre-flight cursor does (as the sync cursors' ``_Checks``)."""

    __slots__ = ()
    connection: Any
    _preflight_binding: Binding = "server"

    async def _preflight(
        self, query: Any, params: Any, has_params: bool | None = None
    ) -> str | None:
        conn = self.connection
        if not (isinstance(conn, AsyncPreflightConnection) and conn.preflight_enabled):
            return None
        text = statement_text(conn, query)
        has_params = params is not None if has_params is None else has_params
        verdict = await conn.preflight_verdict(text, has_params, params, self._preflight_binding)
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

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = await self._preflight(query, params)
        try:
            result = await super().execute(query, params, **kwargs)  # type: ignore[misc]
        except psycopg.errors.InsufficientPrivilege:
            server_refused(self.connection)
            raise
        after_statement(self.connection, text)
        return result

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        it = iter(params_seq)
        first = next(it, _NOTHING)
        text = None
        if first is not _NOTHING:  # nothing is sent for no parameters at all
            text = await self._preflight(query, first, has_params=True)
            params_seq = itertools.chain([first], it)
        try:
            await super().executemany(query, params_seq, **kwargs)  # type: ignore[misc]
        except psycopg.errors.InsufficientPrivilege:
            server_refused(self.connection)
            raise
        after_statement(self.connection, text)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        return _CheckedCopy(self, super().copy, statement, params, kwargs)  # type: ignore[misc]

    async def stream(self, query: Any, params: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        await self._preflight(query, params)
        async for row in super().stream(query, params, **kwargs):  # type: ignore[misc]
            yield row


class _CheckedCopy:
    """``async with cur.copy(...)``: the statement is checked before ``COPY`` is sent."""

    def __init__(
        self, cur: _AsyncChecks, copy: Any, statement: Any, params: Any, kw: dict[str, Any]
    ) -> None:
        self._cur, self._copy, self._args = cur, copy, (statement, params, kw)
        self._cm: Any = None

    async def __aenter__(self) -> Any:
        statement, params, kw = self._args
        await self._cur._preflight(statement, params)
        self._cm = self._copy(statement, params, **kw)
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._cm.__aexit__(*exc)


_ACHECKED: dict[type[Any], type[Any]] = {}


def checked_async_class(cls: type[Any]) -> type[Any]:
    """:func:`~tsaccess.preflight.connection.checked_class` for async cursor classes."""
    return checked_class(cls, _AsyncChecks, _ACHECKED)


class AsyncPreflightCursor(_AsyncChecks, AsyncTsCursor):
    """An async cursor that checks every statement before sending it (see
    :class:`AsyncPreflightConnection`)."""

    __slots__ = ()


class AsyncPreflightServerCursor(_AsyncChecks, AsyncTsServerCursor):
    """A named (server-side) async cursor, checked like :class:`AsyncPreflightCursor`: its
    ``DECLARE`` is never sent for a refused statement."""

    __slots__ = ()


_ACHECKED[AsyncTsCursor] = AsyncPreflightCursor
_ACHECKED[AsyncTsServerCursor] = AsyncPreflightServerCursor


class AsyncPreflightConnection(PreflightState, AsyncTsConnection):
    """An :class:`~tsaccess.client.aio.AsyncTsConnection` whose cursors pre-flight every
    statement, as :class:`~tsaccess.preflight.PreflightConnection` does (same checker, same
    refusals confirmed by the server: :class:`~tsaccess.PreflightDenied`, a ``DENIED`` audit
    event by default, ``on_denied`` may be a coroutine function)."""

    def __init__(self, pgconn: Any, row_factory: Any = tuple_row) -> None:
        super().__init__(pgconn, row_factory)
        self.lock = _TaskLock()  # held across a check's statements

    def _checking(self, cls: type[Any]) -> type[Any]:
        return checked_async_class(cls)

    def after_connect(self, *, preflight: bool) -> None:
        self._start_preflight(preflight)

    def after_reset(self) -> None:
        self._reset_preflight()

    async def preflight_verdict(
        self, text: str, has_params: bool, params: Any = None, binding: Binding = "server"
    ) -> Verdict:
        """The verdict for ``text`` about to be sent: :meth:`Checker.quick
        <tsaccess.preflight.Checker.quick>` on the event loop, else the checker's steps driven
        on this session, holding its lock (as
        :meth:`tsaccess.preflight.PreflightConnection.preflight_verdict`)."""
        checker = self.preflight
        verdict = checker.quick(text, has_params)
        if verdict is None:
            async with self.lock:
                steps = checker.steps(text, has_params, params is not None)
                verdict = await drive_async(self, steps, params, binding)
        return verdict


plug_async_preflight(AsyncPreflightConnection)


async def check_async(conn: psycopg.AsyncConnection[Any], statement: str) -> Verdict:
    """:func:`tsaccess.preflight.check` for an async connection: the verdict for
    ``statement`` as the session's user and role, without running it (an
    :class:`AsyncPreflightConnection` uses and fills its own caches, any other connection a
    fresh :class:`~tsaccess.preflight.Checker`)."""
    if isinstance(conn, AsyncPreflightConnection):
        return await conn.preflight_verdict(statement, False)
    if not isinstance(conn, psycopg.AsyncConnection):
        raise TypeError(
            "check_async() needs an async connection (tsaccess.connect_async()); for a sync "
            "one use tsaccess.preflight.check()"
        )
    return await drive_async(conn, Checker(conn).steps(statement))
