"""The SQL the audit trail creates: names, function bodies, the audit table and the rows view.

The bodies are compared with the catalog's ``prosrc`` to decide whether a function must be
replaced, so they are built exactly the same way every time (generated SQL, kept apart from the
planning logic in :mod:`tsaccess.audit.ddl`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from psycopg import sql

if TYPE_CHECKING:
    from tsaccess.catalog import AuditDataInfo
    from tsaccess.policy import Policy, Table

__all__ = [
    "COLUMNS",
    "DENIED_FUNCTION",
    "DENIED_PER_SECOND",
    "DENIED_RATE_TABLE",
    "PENDING_FUNCTION",
    "PENDING_TABLE",
    "ROW_TYPE_SUFFIX",
    "STMT_FUNCTION",
    "TRIGGER_PREFIX",
    "audit_table_ddl",
    "display_name",
    "function_sources",
    "pending_function_source",
    "qualified",
    "row_attributes",
    "row_value",
    "rows_view_sql",
    "text",
]

STMT_FUNCTION = "tsaccess_audit_stmt"
PENDING_TABLE = "tsaccess_deleted"
"""In the data schema: one row per row deleted by the current statement where transition tables
are refused (DELETE on a compressed hypertable), written by a row trigger and counted (and
removed) by the statement trigger. Nobody but the audit owner can write it."""
PENDING_FUNCTION = "tsaccess_count_deleted"
DENIED_FUNCTION = "tsaccess_audit_denied"
TRIGGER_PREFIX = "tsaccess_audit_"
ROW_TYPE_SUFFIX = "_row"

COLUMNS = (
    "username, operation, table_name, description, effective_role, txid, client_addr,"
    " application_name, actor, request_id, row_count"
)
# What a session can set is the client's word: a row that carries any of it says so.
_ASSERTED = "(act IS NOT NULL OR req IS NOT NULL OR app IS NOT NULL)"
DENIED_PER_SECOND = 10
"""DENIED rows recorded per login user and second; one more says the rest were not."""
_CONTEXT = """
  eff text := coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text);
  app text := nullif(pg_catalog.current_setting('application_name'), '');
  act text := nullif(pg_catalog.current_setting('tsaccess.actor', true), '');
  req text := nullif(pg_catalog.current_setting('tsaccess.request_id', true), '');
  addr inet := pg_catalog.inet_client_addr();
  tx bigint := pg_catalog.txid_current();
  tbl text := TG_ARGV[0];"""

# At most DENIED_PER_SECOND rows per login user and second (counted in an owner-only table),
# then one saying the rest of that second was not recorded: anyone may call the function.
_DENIED_BODY = """
  WITH seen AS (
    INSERT INTO {rate} AS r (username, second, n)
    VALUES (session_user, pg_catalog.date_trunc('second', pg_catalog.clock_timestamp()), 1)
    ON CONFLICT (username) DO UPDATE
      SET n = CASE WHEN r.second = excluded.second THEN r.n + 1 ELSE 1 END,
          second = excluded.second
      WHERE r.second <> excluded.second OR r.n <= {limit}  -- then no new row version
    RETURNING r.n)
  INSERT INTO {audit} ({columns}, client_asserted)
  SELECT session_user, 'DENIED', pg_catalog.left(table_name, 200),
         CASE WHEN seen.n > {limit} THEN 'more than {limit} DENIED events of ' || session_user
              || ' in this second: the others are not recorded'
         ELSE pg_catalog.left(reason, 500) || ': ' || pg_catalog.left(statement, 2000) END,
         coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text),
         pg_catalog.txid_current(), pg_catalog.inet_client_addr(),
         nullif(pg_catalog.current_setting('application_name'), ''),
         nullif(pg_catalog.current_setting('tsaccess.actor', true), ''),
         nullif(pg_catalog.current_setting('tsaccess.request_id', true), ''),
         NULL, true
  FROM seen WHERE seen.n <= {limit} + 1
"""
DENIED_RATE_TABLE = "tsaccess_denied_rate"
"""In the data schema: per login user, the current second and the DENIED rows recorded in it."""


def qualified(policy: Policy, name: str) -> sql.Identifier:
    """``name`` in the policy's schema."""
    return sql.Identifier(policy.schema, name)


def text(c: sql.Composable) -> str:
    """A composed SQL fragment as text (identifiers quoted as needed)."""
    return c.as_string(None)


def display_name(policy: Policy, table: str) -> str:
    """The table name recorded in audit rows: bare in ``public``, else schema-qualified."""
    return table if policy.schema == "public" else f"{policy.schema}.{table}"


def row_attributes(table: Table, data: AuditDataInfo | None) -> tuple[str, ...]:
    """The attributes of ``table``'s audit row type: the existing ones (in order, never
    dropped, so recorded history stays readable) and then newly audited columns."""
    have = data.relations.get(("c", table.name + ROW_TYPE_SUFFIX)) if data else None
    existing = have.attributes if have else ()
    return (*existing, *(c for c in table.audited_data_columns if c not in existing))


def row_value(policy: Policy, table: Table, attrs: Sequence[str], source: str) -> str:
    """``ROW(source.a, NULL, ...)::<data_schema>.<table>_row``: NULL for attributes no longer
    audited."""
    audited = set(table.audited_data_columns)
    values = [text(sql.Identifier(source, a)) if a in audited else "NULL" for a in attrs]
    row_type = sql.Identifier(policy.audit.data_schema, table.name + ROW_TYPE_SUFFIX)
    return f"ROW({', '.join(values)})::{text(row_type)}"


def function_sources(policy: Policy) -> dict[str, str]:
    """The exact ``prosrc`` of the shared audit functions but the statement trigger's (see
    :mod:`tsaccess.audit.triggers`), compared to the catalog."""
    audit = text(qualified(policy, policy.audit.table))
    return {
        DENIED_FUNCTION: _DENIED_BODY.format(
            audit=audit,
            columns=COLUMNS,
            limit=DENIED_PER_SECOND,
            rate=text(sql.Identifier(policy.audit.data_schema, DENIED_RATE_TABLE)),
        ),
    }


_DATA_COLUMNS = ("audit_id", "event_time", "old_data", "new_data")

# the view's columns: the statement's context, then the changed row
_ROWS_VIEW_COLUMNS = (
    "audit_id",
    "event_time",
    "username",
    "operation",
    "table_name",
    "effective_role",
    "txid",
    "client_addr",
    "application_name",
    "actor",
    "request_id",
    "old_data",
    "new_data",
)


def audit_table_ddl(policy: Policy) -> sql.Composed:
    """The audit table: the tutorial's columns first, then what tsaccess adds."""
    return sql.SQL(
        "CREATE TABLE {t} ("
        " id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000),"
        " event_time timestamptz NOT NULL DEFAULT pg_catalog.now(),"
        " username text NOT NULL,"
        " operation text NOT NULL,"
        " table_name text,"
        " description text,"
        " effective_role text,"
        " txid bigint,"
        " client_addr inet,"
        " application_name text,"
        " actor text,"
        " request_id text,"
        " row_count bigint,"
        " client_asserted boolean NOT NULL DEFAULT false)"
    ).format(t=qualified(policy, policy.audit.table))


def _readable(value: sql.Composable, strip: sql.Composable, source: sql.Literal) -> sql.Composed:
    """A recorded row as jsonb with only the columns the reader (``current_user``, the one who
    queries the view) may SELECT in the source table now: the audit trail never shows a value
    its reader could not read in the table itself. NULL stays NULL (a composite whose fields are
    all NULL is not NULL here: ``IS NULL`` would say it is); a row none of whose columns
    the reader may read is ``{}``; a source table that is gone shows nothing."""
    return sql.SQL(
        "CASE WHEN pg_catalog.to_jsonb({v}) IS NULL THEN NULL ELSE COALESCE(("
        "SELECT pg_catalog.jsonb_object_agg(e.key, e.value)"
        " FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb({v}){strip}) e"
        " JOIN pg_catalog.pg_attribute c ON c.attrelid = pg_catalog.to_regclass({source})"
        " AND c.attname OPERATOR(pg_catalog.=) e.key AND c.attnum > 0 AND NOT c.attisdropped"
        " WHERE pg_catalog.has_column_privilege(c.attrelid, c.attnum, 'SELECT')),"
        " '{{}}'::jsonb) END"
    ).format(v=value, strip=strip, source=source)


def rows_view_sql(policy: Policy, data: AuditDataInfo | None) -> sql.Composed:
    """The ``<audit table>_rows`` view: one row per changed row, for every data table (also
    those of tables no longer audited per row: their history stays readable)."""
    audit_t = qualified(policy, policy.audit.table)
    names = {t.name for t in policy.row_audited}
    if data:  # only tables shaped like tsaccess's data tables
        names |= {
            name
            for (kind, name), rel in data.relations.items()
            if kind == "r" and set(_DATA_COLUMNS) <= set(rel.attributes)
        }
    context = sql.SQL(
        "a.id, a.event_time, a.username, a.operation, {shown}::text, a.effective_role,"
        " a.txid, a.client_addr, a.application_name, a.actor, a.request_id"
    )
    parts: list[sql.Composable] = []
    for name in sorted(names):
        table = policy.table(name)
        hidden: list[str] = []
        if table is not None and table.audit == "row":
            hidden = [a for a in row_attributes(table, data) if a not in table.audited_data_columns]
        strip = (
            sql.SQL(" OPERATOR(pg_catalog.-) {}::text[]").format(sql.Literal(hidden))
            if hidden
            else sql.SQL("")
        )
        source = sql.Literal(text(qualified(policy, name)))
        parts.append(
            sql.SQL(
                "SELECT {context}, {old_data}, {new_data}"
                " FROM {data} d JOIN {audit} a ON a.id = d.audit_id"
                " AND a.event_time = d.event_time"
            ).format(
                context=context.format(shown=sql.Literal(display_name(policy, name))),
                old_data=_readable(sql.SQL("d.old_data"), strip, source),
                new_data=_readable(sql.SQL("d.new_data"), strip, source),
                data=sql.Identifier(policy.audit.data_schema, name),
                audit=audit_t,
            )
        )
    if not parts:
        parts.append(
            sql.SQL("SELECT {context}, NULL::jsonb, NULL::jsonb FROM {audit} a WHERE false").format(
                context=context.format(shown=sql.SQL("a.table_name")), audit=audit_t
            )
        )
    return sql.SQL("CREATE OR REPLACE VIEW {view} ({columns}) AS {body}").format(
        view=qualified(policy, policy.audit.rows_view),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in _ROWS_VIEW_COLUMNS),
        body=sql.SQL(" UNION ALL ").join(parts),
    )


def pending_function_source(policy: Policy) -> str:
    """DELETE on a compressed hypertable (no transition tables): as a row trigger it notes each
    deleted row in :data:`PENDING_TABLE`, as the statement trigger it counts and removes them
    and writes the statement's audit row with that exact count."""
    return _PENDING_BODY.format(
        context=_CONTEXT,
        audit=text(qualified(policy, policy.audit.table)),
        columns=COLUMNS,
        pending=text(sql.Identifier(policy.audit.data_schema, PENDING_TABLE)),
        asserted=_ASSERTED,
    )


_PENDING_BODY = """
DECLARE{context}
  n bigint;
BEGIN
  IF TG_LEVEL = 'ROW' THEN
    INSERT INTO {pending} (txid, table_name) VALUES (tx, tbl);
    RETURN NULL;
  END IF;
  DELETE FROM {pending} p WHERE p.txid = tx AND p.table_name = tbl;
  GET DIAGNOSTICS n = ROW_COUNT;
  INSERT INTO {audit} ({columns}, client_asserted)
  VALUES (session_user, TG_OP, tbl, TG_OP || ' of ' || n || ' row(s)', eff, tx, addr, app, act,
          req, n, {asserted});
  RETURN NULL;
END
"""
