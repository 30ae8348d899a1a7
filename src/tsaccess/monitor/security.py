"""Live security state: privileged roles and sessions with their TLS (one query each).

Both read views any role may read; ``pg_monitor`` (``pg_read_all_stats``) is what makes other
users' sessions show their TLS state and address instead of NULLs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import Any

import psycopg

from tsaccess.client.session import UNVERIFIED_MARK

__all__ = ["PRIVILEGED_ATTRIBUTES", "privileged_roles", "readable_data", "sessions"]

PRIVILEGED_ATTRIBUTES = ("superuser", "bypassrls", "createrole", "replication")
"""The role attributes counted by ``tsaccess_privileged_roles`` (label ``attribute``)."""

_PRIVILEGED_SQL = (
    "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolreplication"
    " FROM pg_catalog.pg_roles r"
    # the bootstrap superuser (oid 10) made by initdb is every cluster's; pg_* are predefined
    " WHERE r.oid <> 10 AND r.rolname !~ '^pg_'"
    " AND (r.rolsuper OR r.rolbypassrls OR r.rolcreaterole OR r.rolreplication)"
)


def privileged_roles(
    conn: psycopg.Connection[Any], expected: Collection[str] = (), named: Collection[str] = ()
) -> dict[str, tuple[str, ...]]:
    """Attribute -> the roles that have it (sorted), but the bootstrap superuser and
    ``expected`` (the administrators you know of).

    A role the policy names (``named``) counts too, except for BYPASSRLS: the policy gives that
    one itself (writers of sliced tables) and the drift counts it when it differs; the policy
    never gives SUPERUSER, CREATEROLE or REPLICATION."""
    out: dict[str, list[str]] = {a: [] for a in PRIVILEGED_ATTRIBUTES}
    for name, *flags in conn.execute(_PRIVILEGED_SQL).fetchall():
        if name in expected:
            continue
        for attribute, on in zip(PRIVILEGED_ATTRIBUTES, flags, strict=True):
            if on and not (attribute == "bypassrls" and name in named):
                out[attribute].append(name)
    return {a: tuple(sorted(v)) for a, v in out.items()}


# tls: the server's view (pg_stat_ssl); a Unix-socket session has client_port -1; NULL ssl: the
# reader may not see the session's details (no pg_read_all_stats). verified: a client
# certificate the server checked (client_dn), or a tsaccess client's own report that it did not
# verify the server (its application_name ends with UNVERIFIED_MARK); else unknown: the server
# cannot know whether a client checked its certificate.
_SESSIONS_SQL = (
    "SELECT a.usename::text,"
    " CASE WHEN s.ssl IS NULL THEN 'unknown' WHEN s.ssl THEN 'true'"
    "  WHEN a.client_port = -1 THEN 'local' ELSE 'false' END,"
    " CASE WHEN s.client_dn IS NOT NULL THEN 'client_cert'"
    "  WHEN pg_catalog.right(a.application_name, %s) = %s THEN 'false'"
    "  ELSE 'unknown' END,"
    " pg_catalog.count(*)"
    " FROM pg_catalog.pg_stat_activity a LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = a.pid"
    " WHERE a.backend_type = 'client backend' AND a.datname = pg_catalog.current_database()"
    " GROUP BY 1, 2, 3"
)


def sessions(conn: psycopg.Connection[Any]) -> Counter[tuple[str, str, str]]:
    """(user, tls, verified) -> client sessions on this database now."""
    rows = conn.execute(_SESSIONS_SQL, (len(UNVERIFIED_MARK), UNVERIFIED_MARK)).fetchall()
    return Counter({(str(u or ""), str(t), str(v)): int(n) for u, t, v, n in rows})


def readable_data(conn: psycopg.Connection[Any], schema: str, tables: list[str]) -> list[str]:
    """Which of ``tables`` (in ``schema``) the connected role may read a column of: none, for
    the policy's monitoring user."""
    rows = conn.execute(
        "SELECT c.relname::text FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)"
        " AND pg_catalog.has_any_column_privilege(c.oid, 'SELECT') ORDER BY 1",
        (schema, tables),
    ).fetchall()
    return [str(r[0]) for r in rows]
