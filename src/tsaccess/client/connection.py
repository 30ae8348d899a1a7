"""TLS-only, role-scoped connections (the pools built on them: :mod:`tsaccess.client.pool`).

``connect()`` and ``create_pool()`` accept what ``psycopg.connect`` accepts (a conninfo string or
URI plus libpq keywords) and add three guarantees:

* the effective ``sslmode`` is ``require``, ``verify-ca`` or ``verify-full``, whichever source
  set it (argument, conninfo, URI, ``PGSSLMODE``, ``PGREQUIRESSL``, service file); anything
  weaker raises :class:`~tsaccess.InsecureConnectionError` before a packet is sent, and the
  session is confirmed encrypted by the server after connecting;
* ``role=`` scopes the session to a group role with ``SET ROLE`` (a convenience that narrows
  privileges, *not* a security boundary: the session can ``RESET ROLE``; the login user is the
  boundary), and ``application_name`` names the login user and role;
* pooled connections are reset when handed back, in one round trip (role, settings, temporary
  objects, every prepared statement — psycopg's own included —, locks, listeners) and on the
  client (flags, factories, adapters, handlers, psycopg's statement cache: see
  :mod:`tsaccess.client.reset`) so nothing leaks to the next borrower; a reset that fails discards
  the connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Self

import psycopg
from psycopg.rows import tuple_row

from tsaccess._log import get_logger
from tsaccess.client.base import TsSession, note_query
from tsaccess.client.params import (
    SECURE_SSLMODES,
    SecureParams,
    secure_params,
    without_login,
)
from tsaccess.client.session import (
    Opening,
    Query,
    Script,
    actor_statement,
    drive,
    no_tls_error,
    open_script,
    prepare,
)
from tsaccess.client.tls import TlsStatus
from tsaccess.client.trust import libpq_verification, warn_if_unverified
from tsaccess.errors import TsaccessError

__all__ = [
    "SECURE_SSLMODES",
    "SecureParams",
    "TsConnection",
    "TsCursor",
    "TsServerCursor",
    "connect",
    "plug_denied_recorder",
    "plug_preflight",
    "run_script",
    "secure_params",
    "without_login",
]

log = get_logger("tsaccess.client.connection")


class TsCursor(psycopg.Cursor[Any]):
    """The default cursor of a :class:`TsConnection`: notes the custom settings a statement may
    create, so a pool can hand the next borrower a connection where they read NULL."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        note_query(self.connection, query)
        return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        note_query(self.connection, query)
        super().executemany(query, params_seq, **kwargs)


class TsServerCursor(psycopg.ServerCursor[Any]):
    """:class:`TsCursor` for named (server-side) cursors."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        note_query(self.connection, query)
        return super().execute(query, params, **kwargs)


class TsConnection(TsSession, psycopg.Connection[Any]):
    """A ``psycopg.Connection`` opened by tsaccess: TLS verified, scoped, with typed state.

    :func:`connect` and :func:`tsaccess.create_pool` create it (or a subclass given as
    ``connection_class``) and fill in its state (:class:`~tsaccess.client.base.TsSession`,
    shared with :class:`~tsaccess.client.aio.AsyncTsConnection`). Subclasses extend it through
    two hooks, :meth:`after_connect` and :meth:`after_reset` (pre-flight does:
    :class:`tsaccess.preflight.PreflightConnection`). The password is not kept on the
    connection: :meth:`open_side` reconnects through a closure made by :func:`connect`.
    """

    _opener: Callable[..., TsConnection] | None = None

    def __init__(self, pgconn: Any, row_factory: Any = tuple_row) -> None:
        super().__init__(pgconn, row_factory)
        self.cursor_factory = TsCursor
        self.server_cursor_factory = TsServerCursor
        self._init_session()

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """``psycopg.Connection.connect``; a server that does not offer TLS raises
        :class:`~tsaccess.InsecureConnectionError` (the libpq error as its ``__cause__``)."""
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.OperationalError as exc:
            insecure = no_tls_error(exc)
            if insecure is not None:
                raise insecure from exc
            raise

    def record_refusal(self, statement: str, reason: str, tables: Sequence[str] = ()) -> bool:
        """Record a refused statement as a ``DENIED`` audit event, if the audit trail can.

        The recorder is :func:`tsaccess.audit.record_denied` (``import tsaccess`` plugs it in:
        this layer does not import the audit rooms). Returns False when nothing was recorded
        (no recorder, the audit trail is not installed, the user may not write it).
        """
        if _denied_recorder is None:
            return False
        return _denied_recorder(self, statement, reason, tuple(tables))

    def open_side(
        self, *, autocommit: bool = True, target_session_attrs: str | None = None
    ) -> TsConnection:
        """A second connection with this one's parameters and login, not scoped to a role.

        For work that must not share this session's transaction (a DENIED audit event that has
        to survive the caller's rollback). ``target_session_attrs`` overrides the one of the
        original parameters (``"read-write"``: the primary of the same host list).

        Raises:
            TsaccessError: the connection was not opened by :func:`connect` / a tsaccess pool.
        """
        if self._opener is None:
            raise TsaccessError(
                "this connection was not opened by tsaccess.connect() or create_pool(): "
                "it cannot open a side connection"
            )
        if target_session_attrs is None:
            return self._opener(autocommit)
        return self._opener(autocommit, target_session_attrs=target_session_attrs)

    def set_actor(self, actor: str | None, request_id: str | None = None) -> None:
        """Tag this session's audit rows with an actor and request id (see
        :func:`tsaccess.audit.set_actor`): behind a pooler in every transaction, starting
        with the current one; else for the session."""
        self.set_scoped_settings(actor, request_id)
        statement = actor_statement(local=self.pooler is not None)
        if (
            self.pooler is None
            or self.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        ):
            with psycopg.Cursor(self, row_factory=tuple_row) as cur:
                cur.execute(statement, (actor or "", request_id or ""))

    def _open_session(self, opening: Opening, preflight: bool) -> None:
        """Verify TLS, scope the session, fill in its state, call :meth:`after_connect`."""
        script = open_script(
            self.info.user,
            opening.role,
            opening.app_name(self.info.user),
            opening.pooler,
            bool(self.pgconn.ssl_in_use),
            libpq_verification(self.pgconn),
        )
        status: TlsStatus = run_script(self, script)
        self._init_state(opening.secure, opening.role, status, opening.pooler)
        self._opener = _opener(opening.secure, opening.pooler)
        self.after_connect(preflight=preflight)


def run_script(conn: psycopg.Connection[Any], script: Script) -> Any:
    """Run a :data:`~tsaccess.client.session.Script` on ``conn`` in autocommit (whatever its
    factories: a plain tuple cursor), then put autocommit back."""
    autocommit = conn.autocommit
    conn.autocommit = True
    cur = psycopg.Cursor(conn, row_factory=tuple_row)

    def execute(q: Query) -> Any:
        cur.execute(q.statement, q.params, prepare=False)
        return cur.fetchone() if q.fetch and cur.description is not None else None

    try:
        return drive(script, execute)
    finally:
        cur.close()
        if not conn.closed:
            conn.autocommit = autocommit


def _opener(secure: SecureParams, pooler: str | None = None) -> Callable[..., TsConnection]:
    """How to open a side connection: the parameters stay in this closure, not on a
    connection's attributes (and never in a ``repr``)."""
    kwargs = dict(secure.kwargs)

    def open_side(autocommit: bool, **overrides: Any) -> TsConnection:
        return connect(**{**kwargs, **overrides}, autocommit=autocommit, pooler=pooler)

    return open_side


_preflight_class: type[TsConnection] | None = None
_denied_recorder: Callable[[TsConnection, str, str, tuple[str, ...]], bool] | None = None


def plug_denied_recorder(fn: Callable[[TsConnection, str, str, tuple[str, ...]], bool]) -> None:
    """Register what :meth:`TsConnection.record_refusal` calls (``tsaccess.audit`` does, when
    imported): ``fn(conn, statement, reason, tables) -> recorded``."""
    global _denied_recorder
    _denied_recorder = fn


def plug_preflight(cls: type[TsConnection]) -> None:
    """Register the connection class :func:`connect` uses with ``preflight=True``.

    Called by :mod:`tsaccess.preflight.connection` when it is imported (``import tsaccess``
    imports it): the connection layer never imports pre-flight.
    """
    global _preflight_class
    _preflight_class = cls


def _connection_class(
    preflight: bool, given: type[TsConnection] | None = None
) -> type[TsConnection]:
    if given is not None:
        return given
    if not preflight:
        return TsConnection
    if _preflight_class is None:  # pragma: no cover - tsaccess/__init__ plugs it in
        raise TsaccessError("pre-flight is not available: import tsaccess.preflight")
    return _preflight_class


def connect(
    conninfo: str = "",
    *,
    role: str | None = None,
    autocommit: bool = False,
    preflight: bool = False,
    connection_class: type[TsConnection] | None = None,
    pooler: str | None = None,
    **params: Any,
) -> TsConnection:
    """Open a TLS-verified connection, optionally scoped to a group role.

    Args:
        conninfo: a libpq connection string or ``postgresql://`` URI (may be empty: PG*
            variables and service files still apply, as in libpq).
        role: a group role the login user belongs to; the session runs ``SET ROLE``.
        autocommit: as in ``psycopg.connect``.
        preflight: check every statement's privileges before sending it (see
            :mod:`tsaccess.preflight`).
        connection_class: a :class:`TsConnection` subclass to instantiate.
        pooler: ``"pgbouncer"`` when ``conninfo`` points at a transaction-mode pooler: role
            and audit actor are then set in every transaction instead of the session,
            autocommit is refused, prepared statements are off (see :mod:`tsaccess.client.pooler`).
        params: any libpq keyword (``host``, ``port``, ``dbname``, ``user``, ``password``,
            ``sslmode``, ``sslrootcert``, ``application_name``...), and psycopg's connection
            arguments ``row_factory``, ``cursor_factory``, ``prepare_threshold``, ``context``.

    Returns:
        the open connection (a :class:`TsConnection`;
        a :class:`~tsaccess.preflight.PreflightConnection` with ``preflight=True``).

    Raises:
        InsecureConnectionError: TLS would not be, or is not, in use (a Unix-domain socket, a
            weak ``sslmode``, a server without TLS...).
        RoleScopeError: ``role`` does not exist or the user is not a member (or, behind a
            ``pooler``, autocommit was asked for).
        TsaccessError: an unknown connection parameter.
    """
    opening = prepare(conninfo, params, role=role, autocommit=autocommit, pooler=pooler)
    warn_if_unverified(opening.secure, stacklevel=2)  # once per target: never silent
    cls = _connection_class(preflight, connection_class)
    conn = cls.connect(**opening.connect_kwargs(), autocommit=autocommit)
    try:
        conn._open_session(opening, preflight)
    except BaseException:
        conn.close()
        raise
    log.debug(
        "connected",
        db_user=conn.info.user,
        role=role,
        host=conn.info.host,
        dbname=conn.info.dbname,
        sslmode=opening.secure.sslmode,
    )
    return conn
