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

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self

import psycopg
from psycopg import generators, pq, sql
from psycopg.rows import tuple_row

from tsaccess._log import get_logger
from tsaccess.client.hosts import check_host_list
from tsaccess.client.params import (
    SECURE_SSLMODES,
    SecureParams,
    secure_params,
    split_connection_kwargs,
    without_login,
)
from tsaccess.client.pooler import autocommit_refused, check_pooler, scope_statement
from tsaccess.client.reset import ClientState, custom_names_in, maybe_sets
from tsaccess.client.tls import TlsStatus, tls_status
from tsaccess.errors import InsecureConnectionError, RoleScopeError, TsaccessError

__all__ = [
    "SECURE_SSLMODES",
    "SecureParams",
    "TsConnection",
    "TsCursor",
    "TsServerCursor",
    "connect",
    "plug_denied_recorder",
    "plug_preflight",
    "secure_params",
    "without_login",
]

if TYPE_CHECKING:
    from psycopg.abc import PQGen, QueryNoTemplate  # QueryNoTemplate: psycopg 3.3+

log = get_logger("tsaccess.client.connection")

_APP_NAME_MAX = 63  # NAMEDATALEN - 1


def _query_text(conn: psycopg.Connection[Any], query: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes | bytearray | memoryview):
        return bytes(query).decode("utf-8", "replace")
    if isinstance(query, sql.Composable):
        return query.as_string(conn)
    return str(query)


class TsCursor(psycopg.Cursor[Any]):
    """The default cursor of a :class:`TsConnection`: notes the custom settings a statement may
    create, so a pool can hand the next borrower a connection where they read NULL."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        _note(self.connection, query)
        return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        _note(self.connection, query)
        super().executemany(query, params_seq, **kwargs)


class TsServerCursor(psycopg.ServerCursor[Any]):
    """:class:`TsCursor` for named (server-side) cursors."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        _note(self.connection, query)
        return super().execute(query, params, **kwargs)


def _note(conn: psycopg.Connection[Any], query: Any) -> None:
    # only a pooled connection (configured by create_pool) is handed to another borrower:
    # a plain connection skips the text scan on every statement
    if isinstance(conn, TsConnection) and conn._client_state is not None:
        conn.note_custom_settings(_query_text(conn, query))


class TsConnection(psycopg.Connection[Any]):
    """A ``psycopg.Connection`` opened by tsaccess: TLS verified, scoped, with typed state.

    :func:`connect` and :func:`tsaccess.create_pool` create it (or a subclass given as
    ``connection_class``) and fill in its state. Subclasses extend it through two hooks,
    :meth:`after_connect` and :meth:`after_reset` (pre-flight does:
    :class:`tsaccess.preflight.PreflightConnection`). The password is not kept on the
    connection: :meth:`open_side` reconnects through a closure made by :func:`connect`.
    """

    def __init__(self, pgconn: Any, row_factory: Any = tuple_row) -> None:
        super().__init__(pgconn, row_factory)
        self.cursor_factory = TsCursor
        self.server_cursor_factory = TsServerCursor
        self.custom_seen: set[str] = set()
        """Custom settings statements on this connection may have created (since the last
        pool reset): the reset checks them and discards the connection if one exists."""
        self.custom_unknown = False
        """A statement called ``set_config`` with a name that is not a literal."""

    def note_custom_settings(self, text: str) -> None:
        """Note the custom settings ``text`` may create (called by :class:`TsCursor`)."""
        if maybe_sets(text):  # any case, or escapes that could spell set_config
            names, unknown = custom_names_in(text)
            self.custom_seen |= names
            self.custom_unknown |= unknown

    login_user: str = ""
    """The login user (``session_user``): the security boundary."""
    role: str | None = None
    """The group role the session was scoped to with ``SET ROLE`` (None: the login user's own
    privileges)."""
    verified_tls: TlsStatus | None = None
    """The server's TLS report taken when the session was verified."""
    _opener: Callable[..., TsConnection] | None = None
    pooler: str | None = None
    """The transaction-mode pooler this connection goes through (``"pgbouncer"``), or None.
    With a pooler, role and audit actor are set per transaction (see :mod:`tsaccess.client.pooler`)."""
    actor: str | None = None
    """The audit actor set with :func:`tsaccess.audit.set_actor` (client-asserted)."""
    request_id: str | None = None
    """The audit request id set with :func:`tsaccess.audit.set_actor`."""
    hosts: tuple[str, ...] = ()
    """The ``host:port`` entries of the parameters the connection was opened with (a host
    list has several; the session is on ``info.host`` / ``info.port``)."""
    _tx_scope: bytes | None = None
    _unscoped: int = 0
    _client_state: ClientState | None = None

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """``psycopg.Connection.connect``; a server that does not offer TLS raises
        :class:`~tsaccess.InsecureConnectionError` (the libpq error as its ``__cause__``)."""
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.OperationalError as exc:
            if _NO_TLS.search(str(exc)):
                raise InsecureConnectionError(
                    "the server does not offer TLS, and tsaccess connects with TLS only; "
                    "enable it on the server (ssl = on, ssl_cert_file, ssl_key_file) and accept "
                    "logins on hostssl lines of pg_hba.conf"
                ) from exc
            raise

    def after_connect(self, *, preflight: bool) -> None:
        """Hook: the connection is verified and scoped (``preflight``: as asked of
        :func:`connect`). The default does nothing."""

    def after_reset(self) -> None:
        """Hook: a pool reset the connection for its next borrower. The default does nothing."""

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

    def _init_state(
        self,
        secure: SecureParams,
        role: str | None,
        status: TlsStatus,
        pooler: str | None = None,
    ) -> None:
        self.login_user = self.info.user
        self.role = role
        self.verified_tls = status
        self._opener = _opener(secure, pooler)
        self.pooler = pooler
        self.hosts = _hosts(secure.kwargs, self)
        if pooler is not None:
            self.prepare_threshold = None  # psycopg's advice for PgBouncer < 1.21
            self.set_scoped_settings()

    def set_scoped_settings(self, actor: str | None = None, request_id: str | None = None) -> None:
        """Behind a pooler: the actor and request id every following transaction sets locally
        (see :mod:`tsaccess.client.pooler`). Without a pooler it only records them."""
        self.actor, self.request_id = actor, request_id
        if self.pooler is None:
            return
        settings = {"tsaccess.actor": actor or "", "tsaccess.request_id": request_id or ""}
        self._tx_scope = scope_statement(self.role, settings).as_bytes(self)

    @contextmanager
    def _unscoped_block(self) -> Iterator[None]:
        """Let tsaccess itself send a harmless statement in autocommit (pool checks)."""
        self._unscoped += 1
        try:
            yield
        finally:
            self._unscoped -= 1

    def _start_query(self) -> PQGen[None]:
        if self._tx_scope is not None and self._autocommit and not self._unscoped:
            raise autocommit_refused(self.login_user, self.role)
        return (yield from super()._start_query())

    def _exec_command(
        self, command: QueryNoTemplate, result_format: pq.Format = pq.Format.TEXT
    ) -> PQGen[pq.abc.PGresult | None]:
        scope = self._tx_scope
        if (
            scope is None
            or not isinstance(command, bytes)
            or command != self._get_tx_start_command()
        ):
            return (yield from super()._exec_command(command, result_format))
        if self._pipeline is not None:
            res = yield from super()._exec_command(command, result_format)
            yield from super()._exec_command(scope)
            return res
        # BEGIN and the transaction-local role and settings in one round trip
        self._check_connection_ok()
        self.pgconn.send_query(command + b"; " + scope)
        results: list[pq.abc.PGresult] = yield from generators.execute(self.pgconn)
        for res in results:
            if res.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                if self.pgconn.transaction_status != pq.TransactionStatus.IDLE:
                    yield from super()._exec_command(b"ROLLBACK")
                raise psycopg.errors.error_from_result(res, encoding=self.pgconn._encoding)
        return results[0]


def _hosts(kwargs: dict[str, Any] | Any, conn: psycopg.Connection[Any]) -> tuple[str, ...]:
    hosts = str(kwargs.get("host") or kwargs.get("hostaddr") or conn.info.host).split(",")
    ports = str(kwargs.get("port") or conn.info.port).split(",")
    if len(ports) != len(hosts):
        ports = [ports[0]] * len(hosts)
    return tuple(f"{h}:{p}" for h, p in zip(hosts, ports, strict=True))


def _opener(secure: SecureParams, pooler: str | None = None) -> Callable[..., TsConnection]:
    """How to open a side connection: the parameters stay in this closure, not on a
    connection's attributes (and never in a ``repr``)."""
    kwargs = dict(secure.kwargs)

    def open_side(autocommit: bool, **overrides: Any) -> TsConnection:
        return connect(**{**kwargs, **overrides}, autocommit=autocommit, pooler=pooler)

    return open_side


_NO_TLS = re.compile(r"server does not support SSL")  # libpq's message (fe-connect.c)

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


def _app_name(base: str | None, user: str, role: str | None) -> str:
    name = f"{base or 'tsaccess'}:{user}" + (f"/{role}" if role else "")
    encoded = name.encode("utf-8")[:_APP_NAME_MAX]
    return encoded.decode("utf-8", errors="ignore")


def _verify_tls(conn: psycopg.Connection[Any]) -> TlsStatus:
    """Close ``conn`` and raise unless both libpq and the server report an encrypted session."""
    status = tls_status(conn)
    if not (conn.pgconn.ssl_in_use and status.ssl):
        conn.close()
        raise InsecureConnectionError(
            "the server reports this session as NOT encrypted although TLS was required; "
            "check the server's ssl settings and pg_hba.conf (use hostssl lines)"
        )
    return status


def _scope_sql(role: str | None, app_name: str) -> sql.Composed:
    parts: list[sql.Composable] = []
    if role:
        parts.append(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    parts.append(
        sql.SQL("SELECT pg_catalog.set_config('application_name', {}, false)").format(
            sql.Literal(app_name)
        )
    )
    return sql.SQL("; ").join(parts)


def _apply_scope(
    conn: psycopg.Connection[Any], role: str | None, app_name: str, pooler: str | None = None
) -> None:
    """``SET ROLE`` and ``application_name`` on an idle connection, committed (behind a
    ``pooler``: only the membership check; the role is set per transaction)."""
    autocommit = conn.autocommit
    conn.autocommit = True
    cur = psycopg.Cursor(conn, row_factory=tuple_row)  # whatever the connection's factories
    try:
        if role:
            row = cur.execute(
                "SELECT pg_catalog.pg_has_role(session_user, oid, 'MEMBER')"
                " FROM pg_catalog.pg_roles WHERE rolname = %s",
                (role,),
            ).fetchone()
            if row is None:
                raise RoleScopeError(
                    f"role {role!r} does not exist; check the name (it is case-sensitive) "
                    "or create it in the policy"
                )
            if not row[0]:
                raise RoleScopeError(
                    f"login user {conn.info.user!r} is not a member of role {role!r}; "
                    "grant the role to the user in the policy, or connect without role="
                )
        if pooler is not None:
            return  # scoped per transaction: tsaccess.client.pooler
        try:
            cur.execute(_scope_sql(role, app_name))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise RoleScopeError(
                f"login user {conn.info.user!r} may not SET ROLE {role!r} "
                f"({exc.diag.message_primary}); grant the role WITH SET in the policy"
            ) from exc
    finally:
        cur.close()
        conn.autocommit = autocommit


def _startup_params(secure: SecureParams, role: str | None, pooler: str | None) -> dict[str, Any]:
    """Behind a pooler ``application_name`` is a startup parameter (PgBouncer tracks it per
    client); a session-level ``set_config`` would stay on the shared server connection."""
    kwargs = dict(secure.kwargs)
    if pooler is not None:
        kwargs["application_name"] = _app_name(kwargs.get("application_name"), secure.user, role)
    return kwargs


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
    libpq, python = split_connection_kwargs(params)
    secure = secure_params(conninfo, **libpq)
    check_host_list(secure.kwargs)
    pooler = check_pooler(pooler)
    if pooler is not None and autocommit:
        raise autocommit_refused(secure.user, role)
    cls = _connection_class(preflight, connection_class)
    conn = cls.connect(**_startup_params(secure, role, pooler), autocommit=autocommit, **python)
    try:
        status = _verify_tls(conn)
        app = _app_name(secure.kwargs.get("application_name"), conn.info.user, role)
        _apply_scope(conn, role, app, pooler)
        conn._init_state(secure, role, status, pooler)
        conn.after_connect(preflight=preflight)
    except BaseException:
        conn.close()
        raise
    log.debug(
        "connected",
        db_user=conn.info.user,
        role=role,
        host=conn.info.host,
        dbname=conn.info.dbname,
        sslmode=secure.sslmode,
    )
    return conn
