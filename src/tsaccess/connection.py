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

import configparser
import getpass
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from tsaccess._log import get_logger
from tsaccess.errors import InsecureConnectionError, RoleScopeError, TsaccessError
from tsaccess.tls import tls_status

__all__ = [
    "SECURE_SSLMODES",
    "ScopedPool",
    "SecureParams",
    "connect",
    "create_pool",
    "secure_params",
]

log = get_logger("tsaccess.connection")

SECURE_SSLMODES: tuple[str, ...] = ("require", "verify-ca", "verify-full")
_KNOWN_SSLMODES = (*SECURE_SSLMODES, "disable", "allow", "prefer")
_APP_NAME_MAX = 63  # NAMEDATALEN - 1


@dataclass(frozen=True, repr=False)
class SecureParams:
    """Connection parameters that passed the TLS policy.

    ``kwargs`` go to ``psycopg.connect`` unchanged; they may hold a password, so this object's
    ``repr`` shows only harmless fields.
    """

    kwargs: Mapping[str, Any]
    sslmode: str
    sslmode_source: str
    user: str

    def __repr__(self) -> str:
        host = self.kwargs.get("host", "")
        db = self.kwargs.get("dbname", "")
        return (
            f"SecureParams(user={self.user!r}, host={host!r}, dbname={db!r}, "
            f"sslmode={self.sslmode!r} from {self.sslmode_source})"
        )


def _service_file_values(service: str, servicefile: str | None) -> tuple[dict[str, str], str]:
    """The keywords of ``service`` as libpq would read them, and the file they came from."""
    candidates: list[Path] = []
    if servicefile:
        candidates.append(Path(servicefile))
    elif os.environ.get("PGSERVICEFILE"):
        candidates.append(Path(os.environ["PGSERVICEFILE"]))
    else:
        candidates.append(Path.home() / ".pg_service.conf")
    sysconf = os.environ.get("PGSYSCONFDIR", "/etc/postgresql-common")
    candidates.append(Path(sysconf) / "pg_service.conf")
    for path in candidates:
        if not path.is_file():
            continue
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise InsecureConnectionError(
                f"cannot read service file {path}: {exc.__class__.__name__}; "
                "fix its syntax so its sslmode can be checked"
            ) from None
        if parser.has_section(service):
            return dict(parser.items(service)), str(path)
    return {}, ""


def _effective(
    key: str,
    explicit: Mapping[str, Any],
    given_as_argument: Mapping[str, Any],
    service: Mapping[str, str],
    service_src: str,
    env: str,
) -> tuple[str | None, str]:
    """Value and source of ``key`` with libpq's precedence: conninfo > service > environment."""
    if explicit.get(key) not in (None, ""):
        src = "argument" if key in given_as_argument else "connection string"
        return str(explicit[key]), f"{src} {key}"
    if service.get(key):
        return service[key], f"service file {service_src}"
    if os.environ.get(env):
        return os.environ[env], f"environment variable {env}"
    return None, ""


def secure_params(conninfo: str = "", **params: Any) -> SecureParams:
    """Merge connection settings like libpq does and enforce TLS.

    Returns:
        the parameters for ``psycopg.connect`` with ``sslmode`` made explicit.

    Raises:
        InsecureConnectionError: the effective ``sslmode`` is weaker than ``require`` (or
            unknown), or GSSAPI encryption is required instead of TLS.
    """
    given = {k: v for k, v in params.items() if v is not None}
    try:
        merged = conninfo_to_dict(conninfo, **given)
    except psycopg.ProgrammingError:
        # libpq's message quotes the offending text, which may include a password.
        raise TsaccessError(
            "the connection string could not be parsed (not shown: it may contain a "
            "password); check its 'key=value' pairs or the postgresql:// URI syntax"
        ) from None
    service_name = merged.get("service") or os.environ.get("PGSERVICE")
    service: dict[str, str] = {}
    service_src = ""
    if service_name:
        servicefile = merged.get("servicefile")
        service, service_src = _service_file_values(
            str(service_name), str(servicefile) if servicefile else None
        )

    sslmode, source = _effective("sslmode", merged, given, service, service_src, "PGSSLMODE")
    if sslmode is None and os.environ.get("PGREQUIRESSL", "").startswith("1"):
        sslmode, source = "require", "environment variable PGREQUIRESSL"
    if sslmode is None:
        rootcert, _ = _effective(
            "sslrootcert", merged, given, service, service_src, "PGSSLROOTCERT"
        )
        sslmode = "verify-full" if rootcert else "require"
        source = "tsaccess default (" + ("sslrootcert given" if rootcert else "no root cert") + ")"
    if sslmode not in _KNOWN_SSLMODES:
        raise InsecureConnectionError(
            f"unknown sslmode {sslmode!r} from {source}; use one of {', '.join(SECURE_SSLMODES)}"
        )
    if sslmode not in SECURE_SSLMODES:
        raise InsecureConnectionError(
            f"sslmode={sslmode!r} from {source} allows an unencrypted connection; tsaccess "
            "only connects with sslmode=require, verify-ca or verify-full (best: verify-full "
            "with sslrootcert=<your CA certificate>). Change or remove that setting."
        )
    gss, gss_src = _effective("gssencmode", merged, given, service, service_src, "PGGSSENCMODE")
    if gss == "require":
        raise InsecureConnectionError(
            f"gssencmode=require from {gss_src} forbids TLS; tsaccess needs TLS. Remove it."
        )
    merged["sslmode"] = sslmode
    merged.setdefault("gssencmode", "disable")  # TLS, not GSSAPI encryption, is what we verify

    user, _ = _effective("user", merged, given, service, service_src, "PGUSER")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # pragma: no cover - no passwd entry
            user = ""
    return SecureParams(kwargs=merged, sslmode=sslmode, sslmode_source=source, user=user)


def _app_name(base: str | None, user: str, role: str | None) -> str:
    name = f"{base or 'tsaccess'}:{user}" + (f"/{role}" if role else "")
    encoded = name.encode("utf-8")[:_APP_NAME_MAX]
    return encoded.decode("utf-8", errors="ignore")


def _verify_tls(conn: psycopg.Connection[Any]) -> None:
    """Close ``conn`` and raise unless both libpq and the server report an encrypted session."""
    status = tls_status(conn)
    conn._tsaccess_tls = status  # type: ignore[attr-defined]  # tls_status() falls back to it
    if not (conn.pgconn.ssl_in_use and status.ssl):
        conn.close()
        raise InsecureConnectionError(
            "the server reports this session as NOT encrypted although TLS was required; "
            "check the server's ssl settings and pg_hba.conf (use hostssl lines)"
        )


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
    connection_class: type[psycopg.Connection[Any]] | None = None,
    **params: Any,
) -> psycopg.Connection[Any]:
    """Open a TLS-verified connection, optionally scoped to a group role.

    Args:
        conninfo: a libpq connection string or ``postgresql://`` URI (may be empty: PG*
            variables and service files still apply, as in libpq).
        role: a group role the login user belongs to; the session runs ``SET ROLE``.
        autocommit: as in ``psycopg.connect``.
        preflight: check every statement's privileges before sending it (see
            :mod:`tsaccess.preflight`).
        connection_class: a ``psycopg.Connection`` subclass to instantiate.
        params: any libpq keyword (``host``, ``port``, ``dbname``, ``user``, ``password``,
            ``sslmode``, ``sslrootcert``, ``application_name``...).

    Raises:
        InsecureConnectionError: TLS would not be, or is not, in use.
        RoleScopeError: ``role`` does not exist or the user is not a member.
    """
    secure = secure_params(conninfo, **params)
    cls = connection_class or _default_class(preflight)
    conn = cls.connect(**secure.kwargs, autocommit=autocommit)
    try:
        _verify_tls(conn)
        app = _app_name(secure.kwargs.get("application_name"), conn.info.user, role)
        _apply_scope(conn, role, app)
        _after_connect(conn, secure, role, preflight)
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


def _default_class(preflight: bool) -> type[psycopg.Connection[Any]]:
    if preflight:
        from tsaccess.preflight import PreflightConnection

        return PreflightConnection
    return psycopg.Connection


def _after_connect(
    conn: psycopg.Connection[Any], secure: SecureParams, role: str | None, preflight: bool
) -> None:
    """Remember how this connection was made (a DENIED event may need a side connection) and
    hand the parameters to connection classes that need them (pre-flight)."""
    conn._tsaccess_params = dict(secure.kwargs)  # type: ignore[attr-defined]
    conn._tsaccess_role = role  # type: ignore[attr-defined]
    setup = getattr(conn, "_tsaccess_setup", None)
    if setup is not None:
        setup(secure, role, preflight)


_RESET_SQL = (
    "SELECT coalesce(pg_catalog.array_agg(name), '{}')"
    " FROM pg_catalog.pg_prepared_statements WHERE name !~ '^_pg3_';"
    " RESET ROLE; RESET SESSION AUTHORIZATION; RESET ALL; DISCARD TEMP; DISCARD SEQUENCES;"
    " UNLISTEN *; CLOSE ALL; SELECT pg_catalog.pg_advisory_unlock_all()"
)


class ScopedPool(ConnectionPool[psycopg.Connection[Any]]):
    """A ``psycopg_pool.ConnectionPool`` for one login user and optional role.

    Connections are TLS-verified and scoped when created, checked on borrow, and reset when
    handed back. Create it with :func:`create_pool`.
    """

    user: str
    role: str | None


def _make_reset(
    role: str | None, app_name: str, autocommit: bool
) -> Callable[[psycopg.Connection[Any]], None]:
    batch = sql.SQL("; ").join([sql.SQL(_RESET_SQL), _scope_sql(role, app_name)])

    def reset(conn: psycopg.Connection[Any]) -> None:
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
        reset_hook = getattr(conn, "_tsaccess_reset", None)
        if reset_hook is not None:
            reset_hook()

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
    """
    secure = secure_params(conninfo, **params)
    base_app = secure.kwargs.get("application_name")

    def configure(conn: psycopg.Connection[Any]) -> None:
        _verify_tls(conn)
        _apply_scope(conn, role, _app_name(base_app, conn.info.user, role))
        _after_connect(conn, secure, role, preflight)
        conn.autocommit = autocommit

    resets: dict[str, Callable[[psycopg.Connection[Any]], None]] = {}

    def reset(conn: psycopg.Connection[Any]) -> None:
        fn = resets.get(conn.info.user)  # one login user per pool: built once
        if fn is None:
            app = _app_name(base_app, conn.info.user, role)
            fn = resets[conn.info.user] = _make_reset(role, app, autocommit)
        fn(conn)

    pool = ScopedPool(
        "",
        kwargs=dict(secure.kwargs),
        connection_class=_default_class(preflight),
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
