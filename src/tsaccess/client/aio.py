"""Async connections: :func:`connect_async` and :class:`AsyncTsConnection`, with the guarantees
of :func:`tsaccess.connect` — TLS policy before any packet, the server's TLS report, role scope,
``application_name``, the transaction-pooler scope, audit tagging — from the same code.

Like psycopg's ``AsyncConnection`` beside ``Connection``, this is a thin face: every decision
and statement comes from :mod:`tsaccess.client.session` and the shared state and transaction
start from :class:`~tsaccess.client.base.TsSession`; this module only awaits the I/O.

Work that tsaccess does with synchronous code on a live session — the pre-flight checker's
catalog reads, a ``DENIED`` audit event — runs on the connection's *sync face*
(:meth:`AsyncTsConnection.sync_face`: a :class:`~tsaccess.client.connection.TsConnection` over
the same libpq connection) in a worker thread, while the async connection's lock is held, so
the event loop never blocks and no other task uses the session meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

import psycopg
from psycopg.rows import tuple_row

from tsaccess._log import get_logger
from tsaccess.client.base import TsSession, note_query
from tsaccess.client.connection import TsConnection, _opener
from tsaccess.client.params import SecureParams
from tsaccess.client.session import (
    Opening,
    Query,
    Script,
    actor_statement,
    no_tls_error,
    open_script,
    prepare,
)
from tsaccess.client.tls import TLS_STATUS_SQL, TlsStatus, tls_from_row
from tsaccess.client.trust import libpq_verification, warn_if_unverified
from tsaccess.errors import TsaccessError

__all__ = [
    "AsyncTsConnection",
    "AsyncTsCursor",
    "AsyncTsServerCursor",
    "connect_async",
    "drive_async",
    "plug_async_preflight",
    "run_script_async",
]

log = get_logger("tsaccess.client.aio")

T = TypeVar("T")


class AsyncTsCursor(psycopg.AsyncCursor[Any]):
    """The default cursor of an :class:`AsyncTsConnection` (as
    :class:`~tsaccess.client.connection.TsCursor`)."""

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        note_query(self.connection, query)
        return await super().execute(query, params, **kwargs)

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        note_query(self.connection, query)
        await super().executemany(query, params_seq, **kwargs)


class AsyncTsServerCursor(psycopg.AsyncServerCursor[Any]):
    """:class:`AsyncTsCursor` for named (server-side) cursors."""

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        note_query(self.connection, query)
        return await super().execute(query, params, **kwargs)


class _SyncFace(TsConnection):
    """A sync connection over an async connection's libpq connection, for tsaccess's own sync
    work on that session. Used only while the async connection's lock is held; it never
    closes the session (the async connection owns it)."""

    def __init__(self, pgconn: Any) -> None:
        # psycopg points libpq's notice and notify callbacks at the newest wrapper: keep the
        # async connection's
        notice, notify = pgconn.notice_handler, pgconn.notify_handler
        super().__init__(pgconn)
        pgconn.notice_handler, pgconn.notify_handler = notice, notify
        # its own prepared statements would clash with the async connection's names (_pg3_N)
        self.prepare_threshold = None

    def close(self) -> None:
        """Nothing: the async connection owns the session."""

    def __del__(self, *args: Any) -> None:
        """No "deleted while still open" warning: the async connection owns the session."""

    def mirror(self, conn: AsyncTsConnection) -> None:
        """Take the async connection's state (role, actor, transaction settings...)."""
        self.login_user, self.role, self.verified_tls = (
            conn.login_user,
            conn.role,
            conn.verified_tls,
        )
        self.pooler, self.actor, self.request_id = conn.pooler, conn.actor, conn.request_id
        self.hosts, self._tx_scope, self._opener = conn.hosts, conn._tx_scope, conn._sync_opener
        self._autocommit = conn._autocommit
        self._isolation_level, self._read_only = conn._isolation_level, conn._read_only
        self._deferrable, self._begin_statement = conn._deferrable, conn._begin_statement


class AsyncTsConnection(TsSession, psycopg.AsyncConnection[Any]):
    """A ``psycopg.AsyncConnection`` opened by tsaccess: TLS verified, scoped, with the typed
    state of :class:`~tsaccess.client.base.TsSession` (shared with
    :class:`~tsaccess.client.connection.TsConnection`).

    :func:`connect_async` and :func:`tsaccess.create_async_pool` create it (or a subclass);
    pre-flight extends it (:class:`tsaccess.preflight.aio.AsyncPreflightConnection`). The
    password is not kept on the connection.
    """

    _opener: Callable[..., Awaitable[AsyncTsConnection]] | None = None
    _sync_opener: Callable[..., TsConnection] | None = None
    _face: _SyncFace | None = None

    def __init__(self, pgconn: Any, row_factory: Any = tuple_row) -> None:
        super().__init__(pgconn, row_factory)
        self.cursor_factory = AsyncTsCursor
        self.server_cursor_factory = AsyncTsServerCursor
        self._init_session()

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """``psycopg.AsyncConnection.connect``; a server that does not offer TLS raises
        :class:`~tsaccess.InsecureConnectionError` (the libpq error as its ``__cause__``)."""
        try:
            return await super().connect(conninfo, **kwargs)
        except psycopg.OperationalError as exc:
            insecure = no_tls_error(exc)
            if insecure is not None:
                raise insecure from exc
            raise

    def sync_face(self) -> TsConnection:
        """This session as a sync :class:`~tsaccess.client.connection.TsConnection` (the same
        libpq connection, state mirrored). Use it only through :meth:`run_sync`."""
        face = self._face
        if face is None:
            face = self._face = _SyncFace(self.pgconn)
        face.mirror(self)
        return face

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(sync_face, *args)`` in a worker thread, holding this connection's lock (no
        other task uses the session meanwhile, the event loop does not block)."""
        async with self.lock:
            face = self.sync_face()
            return await asyncio.to_thread(fn, face, *args)

    async def record_refusal(self, statement: str, reason: str, tables: Sequence[str] = ()) -> bool:
        """Record a refused statement as a ``DENIED`` audit event, if the audit trail can (as
        :meth:`tsaccess.TsConnection.record_refusal`, on :meth:`sync_face`)."""
        return await self.run_sync(TsConnection.record_refusal, statement, reason, tuple(tables))

    async def open_side(
        self, *, autocommit: bool = True, target_session_attrs: str | None = None
    ) -> AsyncTsConnection:
        """A second connection with this one's parameters and login, not scoped to a role
        (as :meth:`tsaccess.TsConnection.open_side`)."""
        if self._opener is None:
            raise TsaccessError(
                "this connection was not opened by tsaccess.connect_async() or "
                "create_async_pool(): it cannot open a side connection"
            )
        if target_session_attrs is None:
            return await self._opener(autocommit)
        return await self._opener(autocommit, target_session_attrs=target_session_attrs)

    async def tls_status(self) -> TlsStatus:
        """The server's report of this session's encryption (as :func:`tsaccess.tls_status`)."""
        was_idle = self.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        async with psycopg.AsyncCursor(self, row_factory=tuple_row) as cur:
            await cur.execute(TLS_STATUS_SQL)
            row = await cur.fetchone()
        if was_idle and not self.autocommit:
            await self.rollback()  # leave the connection as we found it
        return tls_from_row(row, bool(self.pgconn.ssl_in_use), self.verified_tls)

    async def set_actor(self, actor: str | None, request_id: str | None = None) -> None:
        """Tag this session's audit rows with an actor and request id (as
        :func:`tsaccess.audit.set_actor`)."""
        self.set_scoped_settings(actor, request_id)
        statement = actor_statement(local=self.pooler is not None)
        intrans = self.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        if self.pooler is None or intrans:
            async with psycopg.AsyncCursor(self, row_factory=tuple_row) as cur:
                await cur.execute(statement, (actor or "", request_id or ""))

    async def _open_session(self, opening: Opening, preflight: bool) -> None:
        """Verify TLS, scope the session, fill in its state, call :meth:`after_connect`."""
        script = open_script(
            self.info.user,
            opening.role,
            opening.app_name(self.info.user),
            opening.pooler,
            bool(self.pgconn.ssl_in_use),
            libpq_verification(self.pgconn),
        )
        status: TlsStatus = await run_script_async(self, script)
        self._init_state(opening.secure, opening.role, status, opening.pooler)
        self._opener = _async_opener(opening.secure, opening.pooler)
        self._sync_opener = _opener(opening.secure, opening.pooler)
        self.after_connect(preflight=preflight)


async def drive_async(script: Script, execute: Callable[[Query], Awaitable[Any]]) -> Any:
    """Run ``script`` with ``execute`` (async): :func:`tsaccess.client.session.drive`'s twin."""
    try:
        query = next(script)
        while True:
            try:
                result = await execute(query)
            except psycopg.Error as exc:
                query = script.throw(exc)
            else:
                query = script.send(result)
    except StopIteration as stop:
        return stop.value


async def run_script_async(conn: psycopg.AsyncConnection[Any], script: Script) -> Any:
    """:func:`tsaccess.client.connection.run_script`'s twin: a script in autocommit, on a plain
    tuple cursor."""
    autocommit = conn.autocommit
    await conn.set_autocommit(True)
    cur = psycopg.AsyncCursor(conn, row_factory=tuple_row)

    async def execute(q: Query) -> Any:
        await cur.execute(q.statement, q.params, prepare=False)
        return await cur.fetchone() if q.fetch and cur.description is not None else None

    try:
        return await drive_async(script, execute)
    finally:
        await cur.close()
        if not conn.closed:
            await conn.set_autocommit(autocommit)


def _async_opener(
    secure: SecureParams, pooler: str | None = None
) -> Callable[..., Awaitable[AsyncTsConnection]]:
    kwargs = dict(secure.kwargs)

    async def open_side(autocommit: bool, **overrides: Any) -> AsyncTsConnection:
        return await connect_async(**{**kwargs, **overrides}, autocommit=autocommit, pooler=pooler)

    return open_side


_preflight_class: type[AsyncTsConnection] | None = None


def plug_async_preflight(cls: type[AsyncTsConnection]) -> None:
    """Register the class :func:`connect_async` uses with ``preflight=True`` (called by
    :mod:`tsaccess.preflight.aio` when imported: this layer never imports pre-flight)."""
    global _preflight_class
    _preflight_class = cls


def async_connection_class(
    preflight: bool, given: type[AsyncTsConnection] | None = None
) -> type[AsyncTsConnection]:
    if given is not None:
        return given
    if not preflight:
        return AsyncTsConnection
    if _preflight_class is None:  # pragma: no cover - tsaccess/__init__ plugs it in
        raise TsaccessError("pre-flight is not available: import tsaccess.preflight.aio")
    return _preflight_class


async def connect_async(
    conninfo: str = "",
    *,
    role: str | None = None,
    autocommit: bool = False,
    preflight: bool = False,
    connection_class: type[AsyncTsConnection] | None = None,
    pooler: str | None = None,
    **params: Any,
) -> AsyncTsConnection:
    """Open a TLS-verified async connection, optionally scoped to a group role.

    The arguments, guarantees and errors are those of :func:`tsaccess.connect`; every check
    made before a packet is sent runs before the first ``await`` returns control.

    Returns:
        the open connection (an :class:`AsyncTsConnection`; an
        :class:`~tsaccess.preflight.aio.AsyncPreflightConnection` with ``preflight=True``).
    """
    opening = prepare(conninfo, params, role=role, autocommit=autocommit, pooler=pooler)
    warn_if_unverified(opening.secure, stacklevel=2)  # once per target: never silent
    cls = async_connection_class(preflight, connection_class)
    conn = await cls.connect(**opening.connect_kwargs(), autocommit=autocommit)
    try:
        await conn._open_session(opening, preflight)
    except BaseException:
        await conn.close()
        raise
    log.debug(
        "connected",
        db_user=conn.info.user,
        role=role,
        host=conn.info.host,
        dbname=conn.info.dbname,
        sslmode=opening.secure.sslmode,
        client="async",
    )
    return conn
