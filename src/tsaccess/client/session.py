"""What the sync and async connections share: every decision and statement of a tsaccess session,
computed once. :class:`~tsaccess.client.connection.TsConnection` and
:class:`~tsaccess.client.aio.AsyncTsConnection` only do the I/O (psycopg's model: one logic,
two faces).

* :func:`prepare` checks a connect call before a packet is sent: the TLS policy
  (:func:`~tsaccess.client.params.secure_params`), the host list, the pooler, autocommit behind
  a pooler; it splits psycopg's arguments from libpq's and makes the startup parameters.
* :func:`open_script` is what runs right after connecting — the server's TLS report
  (``pg_stat_ssl``) and its check, the role membership check, ``SET ROLE`` and
  ``application_name`` — written once as a generator that yields :class:`Query` objects and
  receives each one's first row. :func:`drive` runs a script on a sync connection;
  :func:`tsaccess.client.aio.drive_async` on an async one.
* The statements both faces send (:func:`scope_sql`, :func:`actor_statement`) and the
  errors they raise (:func:`no_tls_error`, :func:`login_refused`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tsaccess.client.hosts import check_host_list
from tsaccess.client.params import (
    SecureParams,
    secure_params,
    server_verification,
    split_connection_kwargs,
)
from tsaccess.client.pooler import autocommit_refused, check_pooler
from tsaccess.client.reset import ResetPlan
from tsaccess.client.tls import TLS_STATUS_SQL, tls_from_row
from tsaccess.errors import InsecureConnectionError, RoleScopeError, TsaccessError

__all__ = [
    "MEMBERSHIP_SQL",
    "Opening",
    "Query",
    "Script",
    "actor_statement",
    "app_name",
    "check_after_seconds",
    "drive",
    "hosts_of",
    "login_refused",
    "no_tls_error",
    "open_script",
    "pool_kwargs",
    "prepare",
    "scope_sql",
]

APP_NAME_MAX = 63  # NAMEDATALEN - 1

MEMBERSHIP_SQL = (
    "SELECT pg_catalog.pg_has_role(session_user, oid, 'MEMBER')"
    " FROM pg_catalog.pg_roles WHERE rolname = %s"
)


@dataclass(frozen=True)
class Query:
    """One statement of a :data:`Script`; the script receives its first row (or None)."""

    statement: str | sql.SQL | sql.Composed
    params: tuple[Any, ...] | None = None
    fetch: bool = True


Script = Generator[Query, Any, Any]
"""A sequence of statements and the decisions between them, without I/O: it yields a
:class:`Query`, is sent the query's first row, and has psycopg's error thrown in when the query
fails. Its return value is the script's result."""


def drive(script: Script, execute: Callable[[Query], Any]) -> Any:
    """Run ``script`` with ``execute`` (sync): the one loop of every sync face."""
    try:
        query = next(script)
        while True:
            try:
                result = execute(query)
            except psycopg.Error as exc:
                query = script.throw(exc)
            else:
                query = script.send(result)
    except StopIteration as stop:
        return stop.value


UNVERIFIED_MARK = " (unverified server)"
"""The end of a tsaccess session's ``application_name`` when libpq does not verify the server's
certificate: the client's own report, the one thing the server (``pg_stat_activity``, the
``tsaccess monitor`` exporter) can know of it."""


def app_name(base: str | None, user: str, role: str | None, *, unverified: bool = False) -> str:
    """``application_name`` of a tsaccess session: ``<base or tsaccess>:<user>[/<role>]``, then
    :data:`UNVERIFIED_MARK` when the server's certificate is not verified."""
    name = f"{base or 'tsaccess'}:{user}" + (f"/{role}" if role else "")
    mark = UNVERIFIED_MARK if unverified else ""
    room = APP_NAME_MAX - len(mark.encode("utf-8"))
    return name.encode("utf-8")[:room].decode("utf-8", errors="ignore") + mark


def scope_sql(role: str | None, application_name: str) -> sql.Composed:
    """``SET ROLE`` (when given) and ``application_name``, in one batch."""
    parts: list[sql.Composable] = []
    if role:
        parts.append(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    parts.append(
        sql.SQL("SELECT pg_catalog.set_config('application_name', {}, false)").format(
            sql.Literal(application_name)
        )
    )
    return sql.SQL("; ").join(parts)


def open_script(
    user: str,
    role: str | None,
    application_name: str,
    pooler: str | None,
    ssl_in_use: bool,
    verification: str | None,
) -> Script:
    """Verify and scope a new session; returns the server's :class:`TlsStatus`, with whether
    libpq verified the server (``verification``: how, None when it did not).

    Raises:
        InsecureConnectionError: libpq or the server reports the session as not encrypted.
        RoleScopeError: ``role`` does not exist, the user is not a member, or may not
            ``SET ROLE`` to it.
    """
    row = yield Query(TLS_STATUS_SQL)
    status = dataclasses.replace(
        tls_from_row(row, ssl_in_use, None),
        verified=verification is not None,
        verification=verification or "",
    )
    if not (ssl_in_use and status.ssl):
        raise InsecureConnectionError(
            "the server reports this session as NOT encrypted although TLS was required; "
            "check the server's ssl settings and pg_hba.conf (use hostssl lines)"
        )
    if role:
        row = yield Query(MEMBERSHIP_SQL, (role,))
        if row is None:
            raise RoleScopeError(
                f"role {role!r} does not exist; check the name (it is case-sensitive) "
                "or create it in the policy"
            )
        if not row[0]:
            raise RoleScopeError(
                f"login user {user!r} is not a member of role {role!r}; "
                "grant the role to the user in the policy, or connect without role="
            )
    if pooler is not None:
        return status  # scoped per transaction: tsaccess.client.pooler
    try:
        yield Query(scope_sql(role, application_name), fetch=False)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise RoleScopeError(
            f"login user {user!r} may not SET ROLE {role!r} "
            f"({exc.diag.message_primary}); grant the role WITH SET in the policy"
        ) from exc
    return status


@dataclass(frozen=True, repr=False)
class Opening:
    """A connect call that passed every check made before a packet is sent."""

    secure: SecureParams
    role: str | None
    pooler: str | None
    autocommit: bool
    python: Mapping[str, Any] = field(default_factory=dict)
    """psycopg's connection arguments (``row_factory``, ``cursor_factory``, ...)."""

    @property
    def base_app(self) -> str | None:
        value = self.secure.kwargs.get("application_name")
        return str(value) if value is not None else None

    def app_name(self, user: str) -> str:
        unverified = server_verification(self.secure.sslmode, self.secure.sslrootcert) is None
        return app_name(self.base_app, user, self.role, unverified=unverified)

    def connect_kwargs(self, *, pooled: bool = False) -> dict[str, Any]:
        """The arguments of ``Connection.connect`` (password included: never log them).

        Behind a pooler ``application_name`` is a startup parameter (PgBouncer tracks it per
        client); a session-level ``set_config`` would stay on the shared server connection.
        So it is for a pool's connections (``pooled``): ``RESET ALL`` then restores it, and the
        reset need not set it again.
        """
        kwargs = dict(self.secure.kwargs)
        if self.pooler is not None or pooled:
            kwargs["application_name"] = self.app_name(self.secure.user)
        return {**kwargs, **self.python}

    def reset_plan(self, user: str, custom: Sequence[str]) -> ResetPlan:
        """The reset of a pool's connections opened with :meth:`connect_kwargs` (``pooled``)
        for login ``user``."""
        return ResetPlan(
            self.role, self.app_name(user), custom, startup_app_name=self.app_name(self.secure.user)
        )

    def __repr__(self) -> str:
        return f"Opening({self.secure!r}, role={self.role!r}, pooler={self.pooler!r})"


def prepare(
    conninfo: str,
    params: Mapping[str, Any],
    *,
    role: str | None = None,
    autocommit: bool = False,
    pooler: str | None = None,
) -> Opening:
    """Check a connect call (or a pool's) before any packet is sent.

    Raises:
        InsecureConnectionError: TLS would not be used.
        RoleScopeError: an unknown pooler, or autocommit behind one.
        TsaccessError: an unknown connection parameter, a malformed host list.
    """
    libpq, python = split_connection_kwargs(params)
    secure = secure_params(conninfo, **libpq)
    check_host_list(secure.kwargs)
    pooler = check_pooler(pooler)
    if pooler is not None and autocommit:
        raise autocommit_refused(secure.user, role)
    return Opening(secure, role, pooler, autocommit, python)


def check_after_seconds(value: Any) -> float:
    """A pool's ``check_after`` (seconds, >= 0), or :class:`TsaccessError`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise TsaccessError(
            f"check_after={value!r}: give the seconds after a reset during which a borrow "
            "skips the check round trip (a number >= 0; 0 checks every borrow)"
        )
    return float(value)


def pool_kwargs(kwargs: Mapping[str, Any] | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """A pool's connection arguments: ``kwargs`` (as psycopg_pool's) and ``params`` merged."""
    merged = dict(kwargs or {})
    if "autocommit" in merged:
        raise TsaccessError("give autocommit=... to the pool itself, not in kwargs")
    overlap = sorted(set(merged) & set(params))
    if overlap:
        raise TsaccessError(
            f"{', '.join(overlap)} given both in kwargs and as a keyword argument; give it once"
        )
    return {**merged, **params}


def hosts_of(kwargs: Mapping[str, Any], host: str, port: int | str) -> tuple[str, ...]:
    """The ``host:port`` entries of the parameters (a host list has several)."""
    hosts = str(kwargs.get("host") or kwargs.get("hostaddr") or host).split(",")
    ports = str(kwargs.get("port") or port).split(",")
    if len(ports) != len(hosts):
        ports = [ports[0]] * len(hosts)
    return tuple(f"{h}:{p}" for h, p in zip(hosts, ports, strict=True))


_NO_TLS = re.compile(r"server does not support SSL")  # libpq's message (fe-connect.c)


def no_tls_error(exc: psycopg.OperationalError) -> InsecureConnectionError | None:
    """The error for a server that does not offer TLS (libpq's error as the cause), else None."""
    if not _NO_TLS.search(str(exc)):
        return None
    return InsecureConnectionError(
        "the server does not offer TLS, and tsaccess connects with TLS only; "
        "enable it on the server (ssl = on, ssl_cert_file, ssl_key_file) and accept "
        "logins on hostssl lines of pg_hba.conf"
    )


# libpq / server messages of a login that retrying will not fix
_LOGIN_REFUSED = re.compile(
    r"authentication failed|pg_hba\.conf|does not exist|not permitted to log in"
    r"|certificate verify failed|does not match host name|SSL"
)


def login_refused(exc: psycopg.OperationalError) -> bool:
    """A failed first connection of a pool that retrying will not fix (a refused login)."""
    return bool(_LOGIN_REFUSED.search(str(exc)))


def actor_statement(*, local: bool) -> str:
    """The statement that tags a session's (``local``: a transaction's) audit rows with an
    actor and a request id (parameters: actor, request id)."""
    scope = "true" if local else "false"
    return (
        f"SELECT pg_catalog.set_config('tsaccess.actor', %s, {scope}),"
        f" pg_catalog.set_config('tsaccess.request_id', %s, {scope})"
    )
