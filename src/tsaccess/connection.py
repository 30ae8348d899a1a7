"""TLS-only, role-scoped connections and pools.

``connect()`` and ``create_pool()`` accept what ``psycopg.connect`` accepts (a conninfo string or
URI plus libpq keywords) and add three guarantees:

* the effective ``sslmode`` is ``require``, ``verify-ca`` or ``verify-full``, whichever source
  set it (argument, conninfo, URI, ``PGSSLMODE``, ``PGREQUIRESSL``, service file); anything
  weaker raises :class:`~tsaccess.InsecureConnectionError` before a packet is sent, and the
  session is confirmed encrypted by the server after connecting;
* ``role=`` scopes the session to a group role with ``SET ROLE`` (a convenience that narrows
  privileges, *not* a security boundary: the session can ``RESET ROLE``; the login user is the
  boundary), and ``application_name`` names the login user and role;
* pooled connections are reset when handed back (role, settings, temporary objects, prepared
  statements of the borrower, locks, listeners, client-side flags) so nothing leaks to the next
  borrower; a reset that fails discards the connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from tsaccess._log import get_logger
from tsaccess.errors import InsecureConnectionError, RoleScopeError, TsaccessError
from tsaccess.params import SECURE_SSLMODES, SecureParams, secure_params, without_login
from tsaccess.tls import TlsStatus, tls_status

__all__ = [
    "SECURE_SSLMODES",
    "ScopedPool",
    "SecureParams",
    "TsConnection",
    "connect",
    "create_pool",
    "plug_denied_recorder",
    "plug_preflight",
    "secure_params",
    "without_login",
]

log = get_logger("tsaccess.connection")

_APP_NAME_MAX = 63  # NAMEDATALEN - 1


class TsConnection(psycopg.Connection[Any]):
    """A ``psycopg.Connection`` opened by tsaccess: TLS verified, scoped, with typed state.

    :func:`connect` and :func:`create_pool` create it (or a subclass given as
    ``connection_class``) and fill in its state. Subclasses extend it through two hooks,
    :meth:`after_connect` and :meth:`after_reset` (pre-flight does:
    :class:`tsaccess.preflight.PreflightConnection`). The password is not kept on the
    connection: :meth:`open_side` reconnects through a closure made by :func:`connect`.
    """

    login_user: str = ""
    """The login user (``session_user``): the security boundary."""
    role: str | None = None
    """The group role the session was scoped to with ``SET ROLE`` (None: the login user's own
    privileges)."""
    verified_tls: TlsStatus | None = None
    """The server's TLS report taken when the session was verified."""
    _opener: Callable[[bool], TsConnection] | None = None

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

    def open_side(self, *, autocommit: bool = True) -> TsConnection:
        """A second connection with this one's parameters and login, not scoped to a role.

        For work that must not share this session's transaction (a DENIED audit event that has
        to survive the caller's rollback).

        Raises:
            TsaccessError: the connection was not opened by :func:`connect` / a tsaccess pool.
        """
        if self._opener is None:
            raise TsaccessError(
                "this connection was not opened by tsaccess.connect() or create_pool(): "
                "it cannot open a side connection"
            )
        return self._opener(autocommit)

    def _init_state(self, secure: SecureParams, role: str | None, status: TlsStatus) -> None:
        self.login_user = self.info.user
        self.role = role
        self.verified_tls = status
        self._opener = _opener(secure)


def _opener(secure: SecureParams) -> Callable[[bool], TsConnection]:
    """How to open a side connection: the parameters stay in this closure, not on a
    connection's attributes (and never in a ``repr``)."""
    kwargs = dict(secure.kwargs)

    def open_side(autocommit: bool) -> TsConnection:
        return connect(**kwargs, autocommit=autocommit)

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


def _apply_scope(conn: psycopg.Connection[Any], role: str | None, app_name: str) -> None:
    """``SET ROLE`` and ``application_name`` on an idle connection, committed."""
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        if role:
            row = conn.execute(
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
        try:
            conn.execute(_scope_sql(role, app_name))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise RoleScopeError(
                f"login user {conn.info.user!r} may not SET ROLE {role!r} "
                f"({exc.diag.message_primary}); grant the role WITH SET in the policy"
            ) from exc
    finally:
        conn.autocommit = autocommit


def connect(
    conninfo: str = "",
    *,
    role: str | None = None,
    autocommit: bool = False,
    preflight: bool = False,
    connection_class: type[TsConnection] | None = None,
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
        params: any libpq keyword (``host``, ``port``, ``dbname``, ``user``, ``password``,
            ``sslmode``, ``sslrootcert``, ``application_name``...).

    Returns:
        the open connection (a :class:`TsConnection`;
        a :class:`~tsaccess.preflight.PreflightConnection` with ``preflight=True``).

    Raises:
        InsecureConnectionError: TLS would not be, or is not, in use.
        RoleScopeError: ``role`` does not exist or the user is not a member.
    """
    secure = secure_params(conninfo, **params)
    cls = _connection_class(preflight, connection_class)
    conn = cls.connect(**secure.kwargs, autocommit=autocommit)
    try:
        status = _verify_tls(conn)
        app = _app_name(secure.kwargs.get("application_name"), conn.info.user, role)
        _apply_scope(conn, role, app)
        conn._init_state(secure, role, status)
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


_RESET_SQL = (
    "SELECT coalesce(pg_catalog.array_agg(name), '{}')"
    " FROM pg_catalog.pg_prepared_statements WHERE name !~ '^_pg3_';"
    " RESET ROLE; RESET SESSION AUTHORIZATION; RESET ALL; DISCARD TEMP; DISCARD SEQUENCES;"
    " UNLISTEN *; CLOSE ALL; SELECT pg_catalog.pg_advisory_unlock_all()"
)


class ScopedPool(ConnectionPool[TsConnection]):
    """A ``psycopg_pool.ConnectionPool`` of :class:`TsConnection` for one login user and
    optional role.

    Connections are TLS-verified and scoped when created, checked on borrow, and reset when
    handed back. Create it with :func:`create_pool`.
    """

    user: str
    """The login user of every connection."""
    role: str | None
    """The group role every connection is scoped to."""


def _make_reset(
    role: str | None, app_name: str, autocommit: bool
) -> Callable[[TsConnection], None]:
    batch = sql.SQL("; ").join([sql.SQL(_RESET_SQL), _scope_sql(role, app_name)])

    def reset(conn: TsConnection) -> None:
        conn.autocommit = True
        with psycopg.Cursor(conn, row_factory=psycopg.rows.tuple_row) as cur:  # no pre-flight
            cur.execute(batch)  # one round trip: clean up, then scope again
            leftovers: list[str] = (cur.fetchone() or [[]])[0]
            for name in leftovers:  # statements the borrower PREPAREd by hand
                cur.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
        conn.autocommit = autocommit
        conn.read_only = None
        conn.isolation_level = None
        conn.deferrable = None
        conn.row_factory = psycopg.rows.tuple_row
        conn.after_reset()

    return reset


def create_pool(
    conninfo: str = "",
    *,
    min_size: int = 1,
    max_size: int | None = None,
    role: str | None = None,
    open: bool = True,
    name: str | None = None,
    autocommit: bool = False,
    preflight: bool = False,
    timeout: float = 30.0,
    **params: Any,
) -> ScopedPool:
    """A pool of TLS-verified connections for one login user, optionally scoped to ``role``.

    Parameters are validated (TLS policy) before any connection is attempted. Each connection is
    checked on borrow (``ConnectionPool.check_connection``) and reset on return; a connection
    whose reset fails is discarded.

    Args:
        conninfo, params: as in :func:`connect`.
        min_size, max_size, open, name, timeout: as in ``psycopg_pool.ConnectionPool``.
        role: group role to ``SET ROLE`` on every connection.
        autocommit: the state every borrower gets.
        preflight: check statements before sending them.

    Returns:
        the pool (opened, unless ``open=False``); its connections are :class:`TsConnection`
        (:class:`~tsaccess.preflight.PreflightConnection` with ``preflight=True``).
    """
    secure = secure_params(conninfo, **params)
    base_app = secure.kwargs.get("application_name")

    def configure(conn: TsConnection) -> None:
        status = _verify_tls(conn)
        _apply_scope(conn, role, _app_name(base_app, conn.info.user, role))
        conn._init_state(secure, role, status)
        conn.after_connect(preflight=preflight)
        conn.autocommit = autocommit

    resets: dict[str, Callable[[TsConnection], None]] = {}

    def reset(conn: TsConnection) -> None:
        fn = resets.get(conn.info.user)  # one login user per pool: built once
        if fn is None:
            app = _app_name(base_app, conn.info.user, role)
            fn = resets[conn.info.user] = _make_reset(role, app, autocommit)
        fn(conn)

    pool = ScopedPool(
        "",
        kwargs=dict(secure.kwargs),
        connection_class=_connection_class(preflight),
        min_size=min_size,
        max_size=max_size,
        open=False,
        configure=configure,
        check=ConnectionPool.check_connection,
        reset=reset,
        name=name or _app_name("tsaccess-pool", secure.user, role),
        timeout=timeout,
    )
    pool.user = secure.user
    pool.role = role
    if open:
        pool.open(wait=True, timeout=timeout)
    return pool
