"""The audit trail: install (as plan steps), session tagging, DENIED events and query helpers.

Design (see ``docs/concepts.md``):

* The audit table, the per-row data schema and the functions belong to a dedicated NOLOGIN role
  (``audit.owner``) that owns nothing else. Nobody is granted INSERT/UPDATE/DELETE/TRUNCATE on
  them; auditors get SELECT on the audit table and on its ``<table>_rows`` view. Rows arrive
  only through the trigger functions and ``tsaccess_audit_denied``.
* Trigger functions are ``SECURITY DEFINER`` with ``search_path`` pinned to
  ``pg_catalog, pg_temp`` and every name qualified, so a writer's ``search_path`` cannot hijack
  them; EXECUTE is revoked from PUBLIC.
* ``username`` is ``session_user`` (the login user, e.g. ``bob``); ``effective_role`` is the
  role the session had set (``SET ROLE``), read from the ``role`` setting, which a definer
  switch does not change.
* The audited table's name is given to the trigger, so the recorded name is the hypertable's
  even where TimescaleDB clones a row trigger onto chunks.
* Statement triggers with transition tables do the work set-based. Every audited statement
  writes one row to the audit table, with its row count. Per-row mode also keeps each changed
  row, typed (a composite of the audited columns, not jsonb: converting 100,000 rows to jsonb
  costs more than inserting them), in ``<data_schema>.<table>``; the ``<audit table>_rows``
  view shows one row per changed row with ``old_data``/``new_data`` as jsonb. Where transition
  tables are refused (DELETE on a hypertable with compression enabled) a trigger without them
  is used: per-statement rows then have no row count, per-row mode uses a row trigger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from tsaccess._log import get_logger
from tsaccess._steps import AUDIT_ONLY, Step, grant_steps

if TYPE_CHECKING:
    from collections.abc import Callable

    from tsaccess.bootstrap import ApplyResult
    from tsaccess.catalog import AuditDataInfo, CatalogSnapshot, FunctionInfo
    from tsaccess.policy import Policy, Table

__all__ = [
    "ActivityBucket",
    "AuditEvent",
    "Results",
    "RoleRow",
    "RowChange",
    "SessionRow",
    "SummaryRow",
    "active_sessions",
    "activity",
    "changes",
    "history",
    "install",
    "recent",
    "record_denied",
    "roles",
    "set_actor",
    "summary",
]

log = get_logger("tsaccess.audit")

STMT_FUNCTION = "tsaccess_audit_stmt"
DENIED_FUNCTION = "tsaccess_audit_denied"
TRIGGER_PREFIX = "tsaccess_audit_"
ROW_TYPE_SUFFIX = "_row"

_COLUMNS = (
    "username, operation, table_name, description, effective_role, txid, client_addr,"
    " application_name, actor, request_id, row_count"
)
_CONTEXT = """
  eff text := coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text);
  app text := nullif(pg_catalog.current_setting('application_name'), '');
  act text := nullif(pg_catalog.current_setting('tsaccess.actor', true), '');
  req text := nullif(pg_catalog.current_setting('tsaccess.request_id', true), '');
  addr inet := pg_catalog.inet_client_addr();
  tx bigint := pg_catalog.txid_current();
  tbl text := TG_ARGV[0];"""

# The size of a transition table ({tt}) into n without reading a large one back (reading
# 100,000 rows back costs more than the rest of the audit): up to 1000 rows are counted; above
# that the planner's row estimate for a transition table is its exact size (PostgreSQL gives
# it tuplestore_tuple_count(); the test suite checks it), with count(*) as the fallback.
_SIZE = """
SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM {tt} LIMIT 1000) s;
IF n = 1000 THEN
  EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM {tt}' INTO est;
  est := est::json -> 0 -> 'Plan' ->> 'Plan Rows';
  IF est ~ '^[0-9]{{1,18}}$' THEN
    n := est::bigint;
  ELSE
    EXECUTE 'SELECT pg_catalog.count(*) FROM {tt}' INTO n;
  END IF;
END IF;"""


def _size(tt: str, indent: int) -> str:
    """:data:`_SIZE` for transition table ``tt``, indented to sit in a function body."""
    return textwrap.indent(_SIZE.format(tt=tt), " " * indent)


_STMT_BODY = """
DECLARE{context}
  n bigint;
  est text;
BEGIN
  IF TG_ARGV[1] = 'counted' THEN
    IF TG_OP = 'DELETE' THEN{size_old}
    ELSIF TG_OP <> 'TRUNCATE' THEN{size_new}
    END IF;
  END IF;
  INSERT INTO {audit} ({columns})
  VALUES (session_user, TG_OP, tbl,
          TG_OP || CASE WHEN n IS NULL THEN '' ELSE ' of ' || n || ' row(s)' END,
          eff, tx, addr, app, act, req, n);
  RETURN NULL;
END
"""

# Per-row mode, one function per table: the statement's audit row, then each changed row as a
# value of the table's row type (only the audited columns) in the table's data table.
_ROWS_BODY = """
DECLARE{context}
  n bigint;
  aid bigint;
  ts timestamptz := pg_catalog.now();
  est text;
  zip_limit text := pg_catalog.current_setting('tsaccess.audit_zip_rows', true);
  o_cur refcursor;
  n_cur refcursor;
  o_rec record;
  n_rec record;
BEGIN
  IF TG_LEVEL = 'ROW' THEN  -- no transition tables (DELETE on a compressed hypertable)
    INSERT INTO {audit} ({columns})
    VALUES (session_user, TG_OP, tbl, TG_OP || ' row', eff, tx, addr, app, act, req, 1)
    RETURNING id, event_time INTO aid, ts;
    INSERT INTO {data} (audit_id, event_time, old_data) VALUES (aid, ts, {old_row});
    RETURN NULL;
  END IF;
  -- the statement's audit id first, so the changed rows are written (and counted) in one pass
  aid := pg_catalog.nextval(pg_catalog.pg_get_serial_sequence({audit_literal}, 'id'));
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {data} (audit_id, event_time, new_data)
    SELECT aid, ts, {r_row} FROM tsaccess_new r;
    GET DIAGNOSTICS n = ROW_COUNT;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO {data} (audit_id, event_time, old_data)
    SELECT aid, ts, {r_row} FROM tsaccess_old r;
    GET DIAGNOSTICS n = ROW_COUNT;
  ELSE
    -- old and new rows are captured pairwise, in the same order: zip them, as two arrays up to
    -- tsaccess.audit_zip_rows rows (default 1,000,000), beyond that (an array is limited to
    -- 1 GB) by walking both transition tables in step{size_new}
    IF zip_limit IS NULL OR zip_limit !~ '^[0-9]{{1,18}}$' THEN
      zip_limit := '1000000';
    END IF;
    IF n <= zip_limit::bigint THEN
      INSERT INTO {data} (audit_id, event_time, old_data, new_data)
      SELECT aid, ts, pg_catalog.unnest(ARRAY(SELECT {r_row} FROM tsaccess_old r)),
             pg_catalog.unnest(ARRAY(SELECT {r_row} FROM tsaccess_new r));
      GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
      n := 0;
      OPEN o_cur NO SCROLL FOR SELECT {r_row} AS v FROM tsaccess_old r;
      OPEN n_cur NO SCROLL FOR SELECT {r_row} AS v FROM tsaccess_new r;
      LOOP
        FETCH o_cur INTO o_rec;
        EXIT WHEN NOT FOUND;
        FETCH n_cur INTO n_rec;
        INSERT INTO {data} (audit_id, event_time, old_data, new_data)
        VALUES (aid, ts, o_rec.v, n_rec.v);
        n := n + 1;
      END LOOP;
      CLOSE o_cur;
      CLOSE n_cur;
    END IF;
  END IF;
  INSERT INTO {audit} (id, event_time, {columns}) OVERRIDING SYSTEM VALUE
  VALUES (aid, ts, session_user, TG_OP, tbl, TG_OP || ' of ' || n || ' row(s)', eff, tx, addr,
          app, act, req, n);
  RETURN NULL;
END
"""

_DENIED_BODY = """
  INSERT INTO {audit} ({columns}, client_asserted)
  VALUES (session_user, 'DENIED', pg_catalog.left(table_name, 200),
          pg_catalog.left(reason, 500) || ': ' || pg_catalog.left(statement, 2000),
          coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text),
          pg_catalog.txid_current(), pg_catalog.inet_client_addr(),
          nullif(pg_catalog.current_setting('application_name'), ''),
          nullif(pg_catalog.current_setting('tsaccess.actor', true), ''),
          nullif(pg_catalog.current_setting('tsaccess.request_id', true), ''),
          NULL, true)
"""

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


def _qualified(policy: Policy, name: str) -> sql.Identifier:
    return sql.Identifier(policy.schema, name)


def _text(c: sql.Composable) -> str:
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


def _row_value(policy: Policy, table: Table, attrs: Sequence[str], source: str) -> str:
    """``ROW(source.a, NULL, ...)::<data_schema>.<table>_row``: NULL for attributes no longer
    audited."""
    audited = set(table.audited_data_columns)
    values = [_text(sql.Identifier(source, a)) if a in audited else "NULL" for a in attrs]
    row_type = sql.Identifier(policy.audit.data_schema, table.name + ROW_TYPE_SUFFIX)
    return f"ROW({', '.join(values)})::{_text(row_type)}"


def function_sources(policy: Policy) -> dict[str, str]:
    """The exact ``prosrc`` of the shared audit functions (compared to the catalog)."""
    audit = _text(_qualified(policy, policy.audit.table))
    return {
        STMT_FUNCTION: _STMT_BODY.format(
            context=_CONTEXT,
            audit=audit,
            columns=_COLUMNS,
            size_old=_size("tsaccess_old", 6),
            size_new=_size("tsaccess_new", 6),
        ),
        DENIED_FUNCTION: _DENIED_BODY.format(audit=audit, columns=_COLUMNS),
    }


def rows_function_source(policy: Policy, table: Table, attrs: Sequence[str]) -> str:
    """The exact ``prosrc`` of ``table``'s per-row trigger function."""
    audit = _text(_qualified(policy, policy.audit.table))
    return _ROWS_BODY.format(
        context=_CONTEXT,
        audit=audit,
        audit_literal=_text(sql.Literal(audit)),
        columns=_COLUMNS,
        data=_text(sql.Identifier(policy.audit.data_schema, table.name)),
        r_row=_row_value(policy, table, attrs, "r"),
        old_row=_row_value(policy, table, attrs, "old"),
        size_new=_size("tsaccess_new", 4),
    )


@dataclass(frozen=True)
class TriggerSpec:
    table: str
    name: str
    statement: sql.Composed


def _trigger_specs(policy: Policy, table: Table, compressed: bool) -> list[TriggerSpec]:
    if table.audit == "off":
        return []
    row_mode = table.audit == "row"
    target = _qualified(policy, table.name)
    shown = display_name(policy, table.name)
    stmt_func = _qualified(policy, STMT_FUNCTION)
    rows_func = sql.Identifier(policy.audit.data_schema, table.name)
    specs: list[TriggerSpec] = []
    events: list[tuple[str, str, str]] = [
        ("INSERT", "ins", "REFERENCING NEW TABLE AS tsaccess_new"),
        (
            "UPDATE",
            "upd",
            "REFERENCING OLD TABLE AS tsaccess_old NEW TABLE AS tsaccess_new"
            if row_mode
            else "REFERENCING NEW TABLE AS tsaccess_new",
        ),
        ("DELETE", "del", "REFERENCING OLD TABLE AS tsaccess_old"),
        ("TRUNCATE", "trn", ""),
    ]
    for event, short, referencing in events:
        fallback = event == "DELETE" and compressed  # transition tables refused there
        level = "ROW" if fallback and row_mode else "STATEMENT"
        if fallback:
            referencing = ""
        if row_mode and event != "TRUNCATE":
            func, args = rows_func, [shown]
        else:
            func, args = stmt_func, [shown, "plain" if fallback or not referencing else "counted"]
        digest = hashlib.sha256(
            "|".join([event, _text(func), level, referencing, *args]).encode()
        ).hexdigest()[:10]
        name = f"{TRIGGER_PREFIX}{short}_{digest}"
        stmt = sql.SQL(
            "CREATE TRIGGER {name} AFTER {event} ON {target} {referencing} FOR EACH {level}"
            " EXECUTE FUNCTION {func}({args})"
        ).format(
            name=sql.Identifier(name),
            event=sql.SQL(event),
            target=target,
            referencing=sql.SQL(referencing),
            level=sql.SQL(level),
            func=func,
            args=sql.SQL(", ").join(sql.Literal(a) for a in args),
        )
        specs.append(TriggerSpec(table.name, name, stmt))
    return specs


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
    ).format(t=_qualified(policy, policy.audit.table))


def rows_view_sql(policy: Policy, data: AuditDataInfo | None) -> sql.Composed:
    """The ``<audit table>_rows`` view: one row per changed row, for every data table (also
    those of tables no longer audited per row: their history stays readable)."""
    audit_t = _qualified(policy, policy.audit.table)
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
        parts.append(
            sql.SQL(
                "SELECT {context}, pg_catalog.to_jsonb(d.old_data){strip},"
                " pg_catalog.to_jsonb(d.new_data){strip}"
                " FROM {data} d JOIN {audit} a ON a.id = d.audit_id"
                " AND a.event_time = d.event_time"
            ).format(
                context=context.format(shown=sql.Literal(display_name(policy, name))),
                strip=strip,
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
        view=_qualified(policy, policy.audit.rows_view),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in _ROWS_VIEW_COLUMNS),
        body=sql.SQL(" UNION ALL ").join(parts),
    )


def _body_sql(body: str) -> sql.Composable:
    # dollar-quoted for readable scripts, unless a (policy-controlled) name could close it
    return (
        sql.SQL("$tsaccess$" + body + "$tsaccess$")
        if "$tsaccess$" not in body
        else sql.Literal(body)
    )


def _function_steps(
    policy: Policy,
    ident: sql.Composable,
    label: str,
    create: sql.Composed,
    body: str,
    existing: FunctionInfo | None,
    want_acl: set[tuple[str, str]],
) -> list[Step]:
    """Create/replace a definer function when its source or settings differ, give it to the
    audit owner and make its EXECUTE privileges exactly ``want_acl``."""
    steps: list[Step] = []
    ok = (
        existing is not None
        and existing.source == body
        and existing.security_definer
        and existing.config == ("search_path=pg_catalog, pg_temp",)
    )
    if not ok:
        steps.append(Step(create, f"create or replace audit function {label}", "audit"))
    if existing is None or existing.owner != policy.audit.owner:
        steps.append(_owned(policy, "FUNCTION", ident, label))
    have = {g for g in (existing.acl if existing else frozenset()) if g[0] != policy.audit.owner}
    if existing is None:
        have = {("PUBLIC", "EXECUTE")}  # functions are born executable by PUBLIC
    steps += grant_steps(ident, label, "FUNCTION", have, want_acl, "audit")
    return steps


def _definer(
    fq: sql.Composable, signature: str, returns: str, lang: str, body: str
) -> sql.Composed:
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {f}"
        + signature
        + " RETURNS "
        + returns
        + " LANGUAGE "
        + lang
        + " VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {body}"
    ).format(f=fq, body=_body_sql(body))


def _owned(policy: Policy, kind: str, ident: sql.Composable, label: str) -> Step:
    return Step(
        sql.SQL("ALTER " + kind + " {} OWNER TO {}").format(
            ident, sql.Identifier(policy.audit.owner)
        ),
        f"{label} owned by {policy.audit.owner}",
        "audit",
    )


def _time_partitioning(
    ident: sql.Identifier, label: str, timescaledb: bool, *, index: bool = True
) -> list[Step]:
    """Audit data grows by time: a hypertable with TimescaleDB (retention by chunk), else a
    BRIN index on ``event_time``. ``index=False`` (per-row data, written in bulk): no index at
    all, which keeps ingest cheap; queries go through the audit table's time filter."""
    if timescaledb:
        return [
            Step(
                sql.SQL(
                    "SELECT create_hypertable({}::regclass, by_range('event_time',"
                    " INTERVAL '7 days'), create_default_indexes => {})"
                ).format(sql.Literal(_text(ident)), sql.SQL("true" if index else "false")),
                f"make {label} a hypertable on event_time",
                "audit",
            )
        ]
    if not index:
        return []
    return [
        Step(
            sql.SQL("CREATE INDEX ON {} USING brin (event_time)").format(ident),
            f"index {label} (BRIN on event_time)",
            "audit",
        )
    ]


def _data_steps(policy: Policy, cat: CatalogSnapshot | None, timescaledb: bool) -> list[Step]:
    """The private data schema and, per table audited per row, its row type and data table."""
    data = cat.audit_data if cat else None
    ds = policy.audit.data_schema
    schema_ident = sql.Identifier(ds)
    steps: list[Step] = []
    if data is None or not data.exists:
        steps.append(
            Step(
                sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                    schema_ident, sql.Identifier(policy.audit.owner)
                ),
                f"create schema {ds} for per-row audit data (private to {policy.audit.owner})",
                "audit",
            )
        )
    else:
        if data.owner != policy.audit.owner:
            steps.append(_owned(policy, "SCHEMA", schema_ident, f"schema {ds}"))
        # private: nobody but the owner has any privilege on it
        have = {g for g in data.acl if g[0] != data.owner}
        steps += grant_steps(schema_ident, f"schema {ds}", "SCHEMA", have, set(), "audit")
    for table in policy.row_audited:
        type_name = table.name + ROW_TYPE_SUFFIX
        row_type = sql.Identifier(ds, type_name)
        have_type = data.relations.get(("c", type_name)) if data else None
        attrs = row_attributes(table, data)
        columns = {c.name: c for c in table.columns}
        if have_type is None:
            steps.append(
                Step(
                    sql.SQL("CREATE TYPE {} AS ({})").format(
                        row_type,
                        sql.SQL(", ").join(
                            sql.SQL("{} {}").format(sql.Identifier(a), sql.SQL(columns[a].type))
                            for a in attrs
                        ),
                    ),
                    f"create row type {ds}.{type_name} (the audited columns of {table.name})",
                    "audit",
                )
            )
        else:
            for a in attrs[len(have_type.attributes) :]:
                steps.append(
                    Step(
                        sql.SQL("ALTER TYPE {} ADD ATTRIBUTE {} {}").format(
                            row_type, sql.Identifier(a), sql.SQL(columns[a].type)
                        ),
                        f"audit column {table.name}.{a} per row",
                        "audit",
                    )
                )
        if have_type is None or have_type.owner != policy.audit.owner:
            steps.append(_owned(policy, "TYPE", row_type, f"row type {ds}.{type_name}"))
        data_t = sql.Identifier(ds, table.name)
        have_table = data.relations.get(("r", table.name)) if data else None
        if have_table is None:
            steps.append(
                Step(
                    sql.SQL(
                        "CREATE TABLE {t} (audit_id bigint NOT NULL, event_time timestamptz"
                        " NOT NULL, old_data {rt}, new_data {rt})"
                    ).format(t=data_t, rt=row_type),
                    f"create {ds}.{table.name} for {table.name}'s changed rows",
                    "audit",
                )
            )
            steps += _time_partitioning(data_t, f"{ds}.{table.name}", timescaledb, index=False)
        if have_table is None or have_table.owner != policy.audit.owner:
            steps.append(_owned(policy, "TABLE", data_t, f"{ds}.{table.name}"))
        fq = sql.Identifier(ds, table.name)
        body = rows_function_source(policy, table, attrs)
        steps += _function_steps(
            policy,
            sql.SQL("{}()").format(fq),
            f"{ds}.{table.name}()",
            _definer(fq, "()", "trigger", "plpgsql", body),
            body,
            data.functions.get(table.name) if data else None,
            set(),
        )
    return steps


def _view_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    view = policy.audit.rows_view
    ident = _qualified(policy, view)
    create = rows_view_sql(policy, cat.audit_data if cat else None)
    tag = "tsaccess " + hashlib.sha256(_text(create).encode()).hexdigest()[:16]
    have = cat.tables.get(view) if cat else None
    steps: list[Step] = []
    if have is None or have.comment != tag:
        steps.append(
            Step(create, f"create or replace view {view} (one row per changed row)", "audit")
        )
        steps.append(
            Step(
                sql.SQL("COMMENT ON VIEW {} IS {}").format(ident, sql.Literal(tag)),
                f"mark {view} as tsaccess's (definition digest)",
                "audit",
            )
        )
    if have is None or have.owner != policy.audit.owner:
        steps.append(_owned(policy, "VIEW", ident, f"view {view}"))
    return steps


def audit_steps(policy: Policy, cat: CatalogSnapshot | None, timescaledb: bool) -> list[Step]:
    """Steps that bring the audit objects to the policy (all of them when ``cat`` is None)."""
    if not policy.audited:
        return []
    owner = sql.Identifier(policy.audit.owner)
    audit_t = _qualified(policy, policy.audit.table)
    steps: list[Step] = []
    role = cat.roles.get(policy.audit.owner) if cat else None
    if role is None:
        steps.append(
            Step(
                sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(owner),
                f"create audit owner role {policy.audit.owner} (NOLOGIN)",
                "audit",
            )
        )
    elif role.login or role.superuser:
        steps.append(
            Step(
                sql.SQL("ALTER ROLE {} NOLOGIN NOSUPERUSER").format(owner),
                f"make audit owner {policy.audit.owner} NOLOGIN",
                "audit",
            )
        )
    info = cat.tables.get(policy.audit.table) if cat else None
    if info is None:
        steps.append(
            Step(audit_table_ddl(policy), f"create audit table {policy.audit.table}", "audit")
        )
        steps += _time_partitioning(audit_t, policy.audit.table, timescaledb)
    if info is None or info.owner != policy.audit.owner:
        steps.append(_owned(policy, "TABLE", audit_t, f"audit table {policy.audit.table}"))
    steps += _data_steps(policy, cat, timescaledb)

    grantees = {(r.name, "EXECUTE") for r in policy.roles}
    for fname, body in function_sources(policy).items():
        fq = _qualified(policy, fname)
        if fname == DENIED_FUNCTION:
            signature = "(statement text, reason text, table_name text DEFAULT NULL)"
            ident = sql.SQL("{}(text, text, text)").format(fq)
            create = _definer(fq, signature, "void", "sql", body)
            want_acl = grantees
        else:
            ident = sql.SQL("{}()").format(fq)
            create = _definer(fq, "()", "trigger", "plpgsql", body)
            want_acl = set()
        existing = cat.functions.get(fname) if cat else None
        steps += _function_steps(policy, ident, fname, create, body, existing, want_acl)

    for table in policy.tables:
        tinfo = cat.tables.get(table.name) if cat else None
        specs = _trigger_specs(policy, table, bool(tinfo and tinfo.compressed))
        wanted = {s.name for s in specs}
        existing_trg = {
            name: trg
            for (tname, name), trg in (cat.triggers.items() if cat else ())
            if tname == table.name and name.startswith(TRIGGER_PREFIX)
        }
        for name in sorted(set(existing_trg) - wanted):
            steps.append(
                Step(
                    sql.SQL("DROP TRIGGER {} ON {}").format(
                        sql.Identifier(name), _qualified(policy, table.name)
                    ),
                    f"drop outdated audit trigger {name} on {table.name}",
                    "audit",
                )
            )
        for spec in specs:
            trg = existing_trg.get(spec.name)
            if trg is None:
                steps.append(
                    Step(
                        spec.statement,
                        f"audit {table.audit}-level on {table.name} ({spec.name})",
                        "audit",
                    )
                )
            elif not trg.enabled:
                steps.append(
                    Step(
                        sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(
                            _qualified(policy, table.name), sql.Identifier(spec.name)
                        ),
                        f"re-enable audit trigger {spec.name} on {table.name}",
                        "audit",
                    )
                )
    steps += _view_steps(policy, cat)
    return steps


def install(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    on_step: Callable[[int, Step], None] | None = None,
) -> ApplyResult:
    """Install, or bring up to date, only the audit trail of ``policy``, in one transaction.

    The audit part of :func:`tsaccess.bootstrap.apply`: the audit owner role, the audit table,
    the per-row data schema, the definer functions, the triggers on every audited table, the
    ``<audit table>_rows`` view and the audit grants. The tables and group roles must exist
    already (created by ``tsaccess apply`` or by your own migrations); a missing one raises
    :class:`~tsaccess.PolicyError` naming it, before anything runs. Preview with
    ``tsaccess.bootstrap.plan(conn, policy, phases=("audit",))``.
    """
    from tsaccess.bootstrap import apply

    return apply(conn, policy, on_step=on_step, phases=AUDIT_ONLY)


# -- the audit-aware client -------------------------------------------------------------------


def set_actor(
    conn: psycopg.Connection[Any], actor: str | None, request_id: str | None = None
) -> None:
    """Tag this session's audit rows with an application-level actor and request id.

    The values are client-asserted (the application says who its end user is): audit rows store
    them in ``actor`` / ``request_id`` next to the server-verified ``username``. Pooled
    connections forget them on return.
    """
    conn.execute(
        "SELECT pg_catalog.set_config('tsaccess.actor', %s, false),"
        " pg_catalog.set_config('tsaccess.request_id', %s, false)",
        (actor or "", request_id or ""),
    )


def record_denied(
    conn: psycopg.Connection[Any],
    statement: str,
    reason: str,
    *,
    table_name: str | None = None,
    schema: str = "public",
) -> bool:
    """Record a refused statement as a ``DENIED`` audit event, in its own transaction.

    Uses ``conn`` when it is idle; otherwise (a transaction is open or failed) a second
    connection with the same parameters, so the event survives the caller's rollback. The event
    is client-asserted (``client_asserted = true``). Returns False, and logs, when the event
    could not be recorded (e.g. the user may not execute the function).
    """
    stmt = sql.SQL("SELECT {}(%s, %s, %s)").format(sql.Identifier(schema, DENIED_FUNCTION))
    args = (statement, reason, table_name)
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with conn.transaction():
                conn.execute(stmt, args)
        else:
            from tsaccess.connection import connect

            params = getattr(conn, "_tsaccess_params", None)
            if params is None:
                log.warning(
                    "denied event not recorded: connection is busy and was not "
                    "opened by tsaccess.connect",
                    db_user=conn.info.user,
                )
                return False
            with connect(**params, autocommit=True) as side:
                side.execute(stmt, args)
    except psycopg.Error as exc:
        log.warning(
            "denied event not recorded", db_user=conn.info.user, error=exc.__class__.__name__
        )
        return False
    return True


# -- query helpers ----------------------------------------------------------------------------

R = TypeVar("R")


class Results(Sequence[R], Generic[R]):
    """A typed list of rows that renders as an HTML table in Jupyter and converts to pandas."""

    def __init__(self, rows: Sequence[R], columns: Sequence[str]) -> None:
        self._rows = list(rows)
        self.columns = tuple(columns)

    def __getitem__(self, i: Any) -> Any:
        return self._rows[i]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[R]:
        return iter(self._rows)

    def __repr__(self) -> str:
        return f"<Results {len(self)} rows: {', '.join(self.columns)}>"

    def as_dicts(self) -> list[dict[str, Any]]:
        return [
            asdict(r) if hasattr(r, "__dataclass_fields__") else dict(r)  # type: ignore[call-overload]
            for r in self._rows
        ]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (needs the optional ``pandas`` extra)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install 'tsaccess[pandas]'") from None
        return pd.DataFrame(self.as_dicts(), columns=list(self.columns))

    def to_text(self) -> str:
        from tsaccess._render import text_table

        return text_table(self.columns, [list(d.values()) for d in self.as_dicts()])

    def _repr_html_(self) -> str:
        from tsaccess._render import html_table

        return html_table(self.columns, [list(d.values()) for d in self.as_dicts()])


@dataclass(frozen=True)
class AuditEvent:
    id: int
    event_time: dt.datetime
    username: str
    operation: str
    table_name: str | None
    description: str | None
    effective_role: str | None
    txid: int | None
    client_addr: str | None
    application_name: str | None
    actor: str | None
    request_id: str | None
    row_count: int | None
    client_asserted: bool


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
    username: str
    operation: str
    table_name: str | None
    events: int
    rows: int | None
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True)
class ActivityBucket:
    bucket: dt.datetime
    username: str
    operation: str
    events: int
    rows: int | None


@dataclass(frozen=True)
class SessionRow:
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
    rolname: str
    rolcanlogin: bool
    rolsuper: bool
    rolinherit: bool
    rolcreaterole: bool
    rolcreatedb: bool
    member_of: list[str]


def _names(cls: type[Any]) -> list[str]:
    return [f.name for f in fields(cls)]


def _fetch(
    conn: psycopg.Connection[Any], cls: type[R], query: Any, params: Any = None
) -> Results[R]:
    """Run a helper's query and return its rows as ``cls`` instances."""
    with conn.cursor(row_factory=class_row(cls)) as cur:
        rows = cur.execute(query, params).fetchall()
    return Results(rows, _names(cls))


def _audit_table(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def recent(
    conn: psycopg.Connection[Any],
    limit: int = 20,
    *,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[AuditEvent]:
    """The latest audit events, newest first."""
    q = sql.SQL("SELECT {} FROM {} ORDER BY event_time DESC, id DESC LIMIT %s").format(
        sql.SQL(", ").join(sql.Identifier(n) for n in _names(AuditEvent)),
        _audit_table(schema, table),
    )
    return _fetch(conn, AuditEvent, q, (limit,))


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
        sql.SQL(", ").join(sql.Identifier(n) for n in _names(AuditEvent)),
        _audit_table(schema, table),
    )
    return _fetch(conn, AuditEvent, q, (table_name, since, since, user, user, limit))


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
        sql.SQL(", ").join(sql.Identifier(n) for n in _names(RowChange)),
        _audit_table(schema, f"{table}_rows"),
    )
    params = (table_name, table_name, since_ts, since_ts, user, user, limit)
    return _fetch(conn, RowChange, q, params)


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
    return _fetch(conn, SummaryRow, q, (since_ts, since_ts))


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
    has_ts = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    func = (
        sql.SQL("time_bucket(%s::interval, event_time)")
        if has_ts and has_ts[0]
        else sql.SQL("date_bin(%s::interval, event_time, TIMESTAMPTZ '2000-01-01')")
    )
    q = sql.SQL(
        "SELECT {f} AS bucket, username, operation, count(*) AS events,"
        " sum(row_count)::bigint AS rows FROM {t}"
        " WHERE %s::timestamptz IS NULL OR event_time >= %s"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ).format(f=func, t=_audit_table(schema, table))
    return _fetch(conn, ActivityBucket, q, (bucket, since_ts, since_ts))


def active_sessions(conn: psycopg.Connection[Any]) -> Results[SessionRow]:
    """Sessions on this database with their TLS status (the tutorial's pg_stat_activity query)."""
    q = (
        "SELECT a.pid, a.usename::text AS username, a.application_name,"
        " host(a.client_addr) AS client_addr, a.state, a.backend_start, a.query_start,"
        " s.ssl, s.version AS tls_version, s.cipher, left(a.query, 200) AS query"
        " FROM pg_catalog.pg_stat_activity a LEFT JOIN pg_catalog.pg_stat_ssl s USING (pid)"
        " WHERE a.datname = pg_catalog.current_database() ORDER BY a.backend_start"
    )
    return _fetch(conn, SessionRow, q)


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
    return _fetch(conn, RoleRow, q)
