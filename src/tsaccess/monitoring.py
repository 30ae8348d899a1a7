"""Watching the server: who is connected (with each session's TLS) and which roles exist.

The tutorial's ``pg_stat_activity`` / ``pg_roles`` queries as typed rows; not part of the audit
trail (they read live server state, not recorded events).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from tsaccess.client.results import Results, fetch

__all__ = ["RoleRow", "SessionRow", "active_sessions", "roles"]


@dataclass(frozen=True)
class SessionRow:
    """One session on the current database, with the server's TLS view of it."""

    pid: int
    username: str | None
    application_name: str | None
    client_addr: str | None
    state: str | None
    backend_start: dt.datetime | None
    query_start: dt.datetime | None
    ssl: bool | None
    tls_version: str | None
    cipher: str | None
    query: str | None


@dataclass(frozen=True)
class RoleRow:
    """One role (``pg_roles``) with its attributes and the roles it is a member of."""

    rolname: str
    rolcanlogin: bool
    rolsuper: bool
    rolinherit: bool
    rolcreaterole: bool
    rolcreatedb: bool
    member_of: list[str]


def active_sessions(conn: psycopg.Connection[Any]) -> Results[SessionRow]:
    """Sessions on this database with their TLS status (the tutorial's pg_stat_activity query)."""
    q = (
        "SELECT a.pid, a.usename::text AS username, a.application_name,"
        " host(a.client_addr) AS client_addr, a.state, a.backend_start, a.query_start,"
        " s.ssl, s.version AS tls_version, s.cipher, left(a.query, 200) AS query"
        " FROM pg_catalog.pg_stat_activity a LEFT JOIN pg_catalog.pg_stat_ssl s USING (pid)"
        " WHERE a.datname = pg_catalog.current_database() ORDER BY a.backend_start"
    )
    return fetch(conn, SessionRow, q)


def roles(conn: psycopg.Connection[Any]) -> Results[RoleRow]:
    """Roles (system roles hidden) with their attributes and memberships (the tutorial's list)."""
    q = (
        "SELECT r.rolname::text, r.rolcanlogin, r.rolsuper, r.rolinherit, r.rolcreaterole,"
        " r.rolcreatedb, coalesce(array_agg(g.rolname::text ORDER BY g.rolname)"
        "   FILTER (WHERE g.rolname IS NOT NULL), '{}') AS member_of"
        " FROM pg_catalog.pg_roles r"
        " LEFT JOIN pg_catalog.pg_auth_members m ON m.member = r.oid"
        " LEFT JOIN pg_catalog.pg_roles g ON g.oid = m.roleid"
        " WHERE r.rolname !~ '^pg_' GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1"
    )
    return fetch(conn, RoleRow, q)
