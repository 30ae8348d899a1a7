"""What may I read and write? The session's effective privileges, table by table, down to
columns and row-level security policies — as pre-flight sees them.

``tsaccess.my_access(conn)`` answers for the session's current user and role (after
``SET ROLE``, for that role), with inheritance, PUBLIC grants and NOINHERIT taken into account by
the server's own ``has_*_privilege`` functions. TimescaleDB chunks are left out (a chunk is
granted as its hypertable was when the chunk was created; column grants are not copied to
chunks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from tsaccess._render import html_table, text_table
from tsaccess.client.results import Results
from tsaccess.preflight.snapshot import catalog_rows

__all__ = ["AccessReport", "TableAccess", "my_access"]

_PRIVS = ("select", "insert", "update", "delete", "truncate")

_ACCESS_SQL = """
WITH me AS (
  SELECT r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
)
SELECT n.nspname, c.relname,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
            WHEN 'm' THEN 'materialized view' ELSE 'foreign table' END,
       pg_catalog.has_table_privilege(c.oid, 'SELECT'),
       pg_catalog.has_table_privilege(c.oid, 'INSERT'),
       pg_catalog.has_table_privilege(c.oid, 'UPDATE'),
       pg_catalog.has_table_privilege(c.oid, 'DELETE'),
       pg_catalog.has_table_privilege(c.oid, 'TRUNCATE'),
       cols.sel, cols.ins, cols.upd, cols.n,
       c.relrowsecurity
         AND NOT (SELECT rolbypassrls FROM me)
         AND (c.relforcerowsecurity OR NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')),
       (SELECT pg_catalog.array_agg(pg_catalog.format('%s %s%s: %s',
                 p.polname,
                 CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                      WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                 CASE WHEN p.polpermissive THEN '' ELSE ' (restrictive)' END,
                 coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                          'WITH CHECK ' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
               ) ORDER BY p.polname)
          FROM pg_catalog.pg_policy p
         WHERE p.polrelid = c.oid
           AND (p.polroles = '{0}'
                OR EXISTS (SELECT FROM pg_catalog.unnest(p.polroles) AS pr(oid)
                            WHERE pg_catalog.pg_has_role(pr.oid, 'USAGE'))))
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL (
    SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
             FILTER (WHERE pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')) AS sel,
           pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
             FILTER (WHERE pg_catalog.has_column_privilege(c.oid, a.attnum, 'INSERT')) AS ins,
           pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
             FILTER (WHERE pg_catalog.has_column_privilege(c.oid, a.attnum, 'UPDATE')) AS upd,
           count(*) AS n
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) cols
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname !~ '^pg_' AND n.nspname !~ '^_timescaledb' AND n.nspname <> 'information_schema'
   AND NOT c.relispartition
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d  -- an extension's own views and tables
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
   AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
   AND (pg_catalog.has_any_column_privilege(c.oid, 'SELECT, INSERT, UPDATE')
        OR pg_catalog.has_table_privilege(c.oid, 'DELETE, TRUNCATE'))
 ORDER BY 1, 2
"""


@dataclass(frozen=True)
class TableAccess:
    """What the session may do with one table (or view)."""

    schema: str
    table: str
    kind: str
    select: str
    """``all columns``, the columns it may read, or empty."""
    insert: str
    update: str
    delete: bool
    truncate: bool
    row_filter: str
    """Row-level security: the policies that decide which rows it sees or writes, ``no rows``
    when RLS applies and no policy is for it, empty when RLS does not apply."""


def _columns(table_level: bool, cols: list[str] | None, all_cols: int) -> str:
    if table_level or (cols and len(cols) == all_cols):
        return "all columns"
    return ", ".join(cols or [])


class AccessReport(Results[TableAccess]):
    """:func:`my_access`'s answer: one :class:`TableAccess` per table; prints as a table,
    renders as HTML in a notebook, converts with ``to_pandas()``."""

    def __init__(self, rows: list[TableAccess], user: str, role: str) -> None:
        super().__init__(rows, [f for f in TableAccess.__dataclass_fields__])
        self.user = user
        """The login user (``session_user``)."""
        self.role = role
        """The role whose privileges these are (``current_user``)."""

    def _title(self) -> str:
        who = self.user if self.role == self.user else f"{self.user} as role {self.role}"
        return f"Access of {who}: {len(self)} tables"

    def __str__(self) -> str:
        return self._title() + "\n" + self.to_text()

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        rows = [[getattr(r, f) for f in self.columns] for r in self]
        return f"<p><b>{self._title()}</b></p>" + html_table(self.columns, rows)

    def to_text(self) -> str:
        return text_table(self.columns, [[getattr(r, f) for f in self.columns] for r in self])


def my_access(conn: psycopg.Connection[Any]) -> AccessReport:
    """What this session's user (and role, after ``SET ROLE``) may read and write: every table
    and view it has any privilege on, the columns where not all, and the row-level security
    policies that slice the rows.

    One catalog query; nothing is changed. A table with no privilege at all is not listed.
    """
    rows = catalog_rows(conn, _ACCESS_SQL)
    ident = catalog_rows(conn, "SELECT session_user::text, current_user::text")[0]
    out = []
    for r in rows:
        schema, table, kind, sel, ins, upd, dele, trunc, scols, icols, ucols, n, rls, pols = r
        out.append(
            TableAccess(
                schema,
                table,
                kind,
                _columns(sel, scols, n),
                _columns(ins, icols, n),
                _columns(upd, ucols, n),
                bool(dele),
                bool(trunc),
                ("; ".join(pols) if pols else "no rows (no policy for this role)") if rls else "",
            )
        )
    return AccessReport(out, ident[0], ident[1])
