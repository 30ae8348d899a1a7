"""Reading the audit trail: recent events, a table's history, changed rows, summaries.

Every helper returns :class:`~tsaccess.audit.Results` of typed rows (HTML in Jupyter,
``to_pandas()``, ``to_text()``) and reads as the connection's user: auditors see the audit
table, nobody else does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tsaccess.catalog import timescaledb_state
from tsaccess.client.results import Results, column_names, fetch

__all__ = [
    "ActivityBucket",
    "AuditEvent",
    "RowChange",
    "SummaryRow",
    "activity",
    "changes",
    "history",
    "recent",
    "summary",
]


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit table: one audited statement (or one DENIED event)."""

    id: int
    event_time: dt.datetime
    username: str
    """The login user (``session_user``), verified by the server."""
    operation: str
    """``INSERT``, ``UPDATE``, ``DELETE``, ``TRUNCATE`` or ``DENIED``."""
    table_name: str | None
    """The audited table (the hypertable, never a chunk); bare in ``public``."""
    description: str | None
    effective_role: str | None
    """The role the session had set (``SET ROLE``), else the login user."""
    txid: int | None
    client_addr: str | None
    application_name: str | None
    actor: str | None
    """Client-asserted end user (:func:`tsaccess.audit.set_actor`)."""
    request_id: str | None
    """Client-asserted request id (:func:`tsaccess.audit.set_actor`)."""
    row_count: int | None
    """Rows the statement changed (None where the trigger cannot count them)."""
    client_asserted: bool
    """True for events the client wrote (DENIED), not a trigger."""


@dataclass(frozen=True)
class RowChange:
    """One changed row of a table audited per row, with its statement's context."""

    audit_id: int
    """The statement's row in the audit table."""
    event_time: dt.datetime
    username: str
    operation: str
    table_name: str
    effective_role: str | None
    txid: int | None
    client_addr: str | None
    application_name: str | None
    actor: str | None
    request_id: str | None
    old_data: dict[str, Any] | None
    """The row before (UPDATE, DELETE): audited columns only."""
    new_data: dict[str, Any] | None
    """The row after (INSERT, UPDATE): audited columns only."""


@dataclass(frozen=True)
class SummaryRow:
    """Events of one login user, operation and table (:func:`summary`)."""

    username: str
    operation: str
    table_name: str | None
    events: int
    rows: int | None
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True)
class ActivityBucket:
    """Events of one time bucket, login user and operation (:func:`activity`)."""

    bucket: dt.datetime
    username: str
    operation: str
    events: int
    rows: int | None


def _audit_table(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def recent(
    conn: psycopg.Connection[Any],
    limit: int = 20,
    *,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[AuditEvent]:
    """The latest audit events, newest first.

    Returns:
        at most ``limit`` :class:`AuditEvent` rows.
    """
    q = sql.SQL("SELECT {} FROM {} ORDER BY event_time DESC, id DESC LIMIT %s").format(
        sql.SQL(", ").join(sql.Identifier(n) for n in column_names(AuditEvent)),
        _audit_table(schema, table),
    )
    return fetch(conn, AuditEvent, q, (limit,))


def history(
    conn: psycopg.Connection[Any],
    table_name: str,
    *,
    since: dt.datetime | None = None,
    user: str | None = None,
    limit: int = 1000,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[AuditEvent]:
    """Events on one audited table (optionally since a time and by one login user)."""
    q = sql.SQL(
        "SELECT {} FROM {} WHERE table_name = %s AND (%s::timestamptz IS NULL OR event_time >= %s)"
        " AND (%s::text IS NULL OR username = %s) ORDER BY event_time, id LIMIT %s"
    ).format(
        sql.SQL(", ").join(sql.Identifier(n) for n in column_names(AuditEvent)),
        _audit_table(schema, table),
    )
    return fetch(conn, AuditEvent, q, (table_name, since, since, user, user, limit))


def changes(
    conn: psycopg.Connection[Any],
    table_name: str | None = None,
    *,
    since: dt.datetime | dt.timedelta | None = None,
    user: str | None = None,
    limit: int = 100,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[RowChange]:
    """Changed rows of tables audited per row (``audit = "row"``), newest first, with their
    old/new data; optionally for one table, since a time, by one login user."""
    since_ts = dt.datetime.now(dt.UTC) - since if isinstance(since, dt.timedelta) else since
    q = sql.SQL(
        "SELECT {} FROM {} WHERE (%s::text IS NULL OR table_name = %s)"
        " AND (%s::timestamptz IS NULL OR event_time >= %s)"
        " AND (%s::text IS NULL OR username = %s) ORDER BY event_time DESC, audit_id DESC LIMIT %s"
    ).format(
        sql.SQL(", ").join(sql.Identifier(n) for n in column_names(RowChange)),
        _audit_table(schema, f"{table}_rows"),
    )
    params = (table_name, table_name, since_ts, since_ts, user, user, limit)
    return fetch(conn, RowChange, q, params)


def summary(
    conn: psycopg.Connection[Any],
    since: dt.datetime | dt.timedelta | None = None,
    *,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[SummaryRow]:
    """Events per user, operation and table with first and last time (the tutorial's summary)."""
    since_ts = dt.datetime.now(dt.UTC) - since if isinstance(since, dt.timedelta) else since
    q = sql.SQL(
        "SELECT username, operation, table_name, count(*) AS events, sum(row_count)::bigint AS rows,"
        " min(event_time) AS first_seen, max(event_time) AS last_seen FROM {}"
        " WHERE %s::timestamptz IS NULL OR event_time >= %s"
        " GROUP BY username, operation, table_name ORDER BY username, operation, table_name"
    ).format(_audit_table(schema, table))
    return fetch(conn, SummaryRow, q, (since_ts, since_ts))


def activity(
    conn: psycopg.Connection[Any],
    bucket: dt.timedelta = dt.timedelta(hours=1),
    since: dt.datetime | dt.timedelta | None = dt.timedelta(days=1),
    *,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[ActivityBucket]:
    """Events per time bucket, user and operation (``time_bucket`` with TimescaleDB, else
    ``date_bin``)."""
    since_ts = dt.datetime.now(dt.UTC) - since if isinstance(since, dt.timedelta) else since
    func = (
        sql.SQL("time_bucket(%s::interval, event_time)")
        if timescaledb_state(conn).created
        else sql.SQL("date_bin(%s::interval, event_time, TIMESTAMPTZ '2000-01-01')")
    )
    q = sql.SQL(
        "SELECT {f} AS bucket, username, operation, count(*) AS events,"
        " sum(row_count)::bigint AS rows FROM {t}"
        " WHERE %s::timestamptz IS NULL OR event_time >= %s"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ).format(f=func, t=_audit_table(schema, table))
    return fetch(conn, ActivityBucket, q, (bucket, since_ts, since_ts))
