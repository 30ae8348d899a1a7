"""Who sees which recorded column through the per-row audit view, tried for real.

The rule (``docs/concepts.md``, "Who reads per-row audit data"): the ``<audit table>_rows``
view shows a reader only the columns of a changed row that the reader may SELECT in the source
table. :func:`row_data_visibility` proves it without depending on recorded history: inside a
transaction that is always rolled back, the admin (a superuser) records one probe row per table
audited per row, with every audited column present, and reads it back through the view as each
user (``SET LOCAL ROLE``), so the view's own filter answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from tsaccess.audit.templates import ROW_TYPE_SUFFIX, display_name, qualified
from tsaccess.policy import Policy

__all__ = ["Visibility", "row_data_visibility", "visibility_catalog"]

Visibility = dict[tuple[str, str, str], tuple[bool | None, str]]
"""(user, table, column) -> (seen through the view, why not / the error); None: not tried."""


def visibility_catalog(
    admin: psycopg.Connection[Any], policy: Policy, users: Sequence[str]
) -> dict[tuple[str, str, str], bool]:
    """What the catalog says: SELECT on the view and on the source column, per user."""
    pairs = [(t.name, c) for t in policy.row_audited for c in t.audited_data_columns]
    if not pairs or not users:
        return {}
    rows = admin.execute(
        "SELECT u, t, c, coalesce(pg_catalog.has_table_privilege(u,"
        " pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text)), 'SELECT'),"
        " false) AND coalesce((SELECT pg_catalog.has_column_privilege(u, a.attrelid, a.attnum,"
        " 'SELECT') FROM pg_catalog.pg_attribute a WHERE a.attrelid = pg_catalog.to_regclass("
        "pg_catalog.format('%%I.%%I', %s::text, t)) AND a.attname = c AND NOT a.attisdropped),"
        " false)"
        " FROM unnest(%s::text[]) u, unnest(%s::text[], %s::text[]) AS tc(t, c)"
        " WHERE EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = u)",
        (
            policy.schema,
            policy.audit.rows_view,
            policy.schema,
            list(users),
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        ),
    ).fetchall()
    return {(r[0], r[1], r[2]): bool(r[3]) for r in rows}


def row_data_visibility(
    admin: psycopg.Connection[Any], policy: Policy, users: Sequence[str]
) -> Visibility:
    """For each user, table audited per row and audited column: whether the view shows it."""
    out: Visibility = {}
    tables = policy.row_audited
    if not tables or not users:
        return out
    if not admin.autocommit:
        admin.rollback()
    view = qualified(policy, policy.audit.rows_view)
    try:
        with admin.transaction(force_rollback=True):
            probes: dict[str, int] = {}
            for i, t in enumerate(tables):
                aid = -1 - i  # real ids are positive; all of this is rolled back
                admin.execute(
                    sql.SQL(
                        "INSERT INTO {audit} (id, event_time, username, operation, table_name,"
                        " description) OVERRIDING SYSTEM VALUE VALUES (%s, pg_catalog.now(),"
                        " current_user, 'VERIFY', %s, 'tsaccess verify probe (rolled back)')"
                    ).format(audit=qualified(policy, policy.audit.table)),
                    (aid, display_name(policy, t.name)),
                )
                admin.execute(
                    sql.SQL(
                        "INSERT INTO {data} (audit_id, event_time, new_data) VALUES"
                        " (%s, pg_catalog.now(), pg_catalog.jsonb_populate_record(NULL::{rt},"
                        " '{{}}'))"
                    ).format(
                        data=sql.Identifier(policy.audit.data_schema, t.name),
                        rt=sql.Identifier(policy.audit.data_schema, t.name + ROW_TYPE_SUFFIX),
                    ),
                    (aid,),
                )
                probes[t.name] = aid
            for user in users:
                for t in tables:
                    keys: set[str] = set()
                    why = ""
                    try:
                        with admin.transaction():  # a savepoint: a refusal undoes SET ROLE
                            admin.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(user)))
                            row = admin.execute(
                                sql.SQL("SELECT new_data FROM {} WHERE audit_id = %s").format(view),
                                (probes[t.name],),
                            ).fetchone()
                            admin.execute("RESET ROLE")
                        keys = set(row[0]) if row and row[0] else set()
                    except psycopg.errors.InsufficientPrivilege as exc:
                        why = f"42501 {exc.diag.message_primary}"
                    for c in t.audited_data_columns:
                        out[(user, t.name, c)] = (c in keys, why or ("" if c in keys else "hidden"))
    except psycopg.Error as exc:
        if admin.broken:
            raise
        why = (
            f"not tried ({exc.sqlstate} {exc.diag.message_primary}): the check records a probe "
            "row in a rolled-back transaction and needs a superuser admin"
        )
        for user in users:
            for t in tables:
                for c in t.audited_data_columns:
                    out[(user, t.name, c)] = (None, why)
    return out
