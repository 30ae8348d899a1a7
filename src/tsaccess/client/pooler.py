"""Role scoping behind a transaction-mode pooler (PgBouncer): one transaction at a time.

Behind PgBouncer in ``pool_mode = transaction`` a client owns a server connection only for the
length of one transaction: a session-level ``SET ROLE`` (or ``application_name``, or the audit
actor) set by one client stays on the server connection and the next client's transaction runs
with it. ``connect(..., pooler="pgbouncer")`` therefore never sets session state; instead every
transaction the connection starts is opened with

    BEGIN; SELECT set_config('role', <role>, true), set_config('tsaccess.actor', ..., true), ...

in one round trip (the settings are transaction-local: ``SET LOCAL``), so each transaction runs
under its own role and actor whatever the previous client left on the server connection.
``application_name`` is sent as a startup parameter, which PgBouncer tracks per client.

Autocommit statements would run outside any such transaction: a scoped connection behind a
pooler refuses them (:class:`~tsaccess.RoleScopeError`) before sending. psycopg's automatic
prepared statements are turned off (``prepare_threshold = None``), as psycopg documents for
PgBouncer before 1.21.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import sql

from tsaccess.errors import RoleScopeError

__all__ = ["POOLERS", "autocommit_refused", "check_pooler", "scope_statement"]

POOLERS: tuple[str, ...] = ("pgbouncer",)
"""Poolers tsaccess knows how to scope connections for (transaction pooling)."""

SCOPED_SETTINGS: tuple[str, ...] = ("tsaccess.actor", "tsaccess.request_id")
"""Settings every scoped transaction sets (empty when not given), so none is inherited."""


def check_pooler(pooler: str | None) -> str | None:
    """``pooler`` normalised (None: connect straight to the server).

    Raises:
        RoleScopeError: an unknown pooler name.
    """
    if pooler is None:
        return None
    name = pooler.strip().lower()
    if name not in POOLERS:
        raise RoleScopeError(
            f"unknown pooler {pooler!r}; use pooler='pgbouncer' for a transaction-mode pooler, "
            "or leave it out when connecting straight to the server"
        )
    return name


def scope_statement(role: str | None, settings: Mapping[str, str]) -> sql.Composed:
    """The statement run right after ``BEGIN`` in every transaction of a scoped connection.

    ``role`` None keeps the login user's own privileges but still resets ``role`` to it
    (``none``), so a role left on the server connection by another client is not inherited.
    """
    parts: list[sql.Composable] = [
        sql.SQL("pg_catalog.set_config('role', {}, true)").format(sql.Literal(role or "none"))
    ]
    for name in SCOPED_SETTINGS:
        parts.append(
            sql.SQL("pg_catalog.set_config({}, {}, true)").format(
                sql.Literal(name), sql.Literal(settings.get(name, ""))
            )
        )
    return sql.SQL("SELECT ") + sql.SQL(", ").join(parts)


def autocommit_refused(user: str, role: str | None) -> RoleScopeError:
    """The error for a statement a scoped connection behind a pooler would send in autocommit."""
    who = f"user {user!r}" + (f" as role {role!r}" if role else "")
    return RoleScopeError(
        f"a connection of {who} through a transaction-mode pooler runs every statement in a "
        "transaction that starts with SET LOCAL ROLE; in autocommit it would run without its "
        "role (on a server connection another client may have left in any state). Use "
        "autocommit=False (conn.transaction() blocks), or connect straight to the server"
    )
