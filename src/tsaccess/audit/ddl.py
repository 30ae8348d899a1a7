"""The audit trail as plan steps: what :func:`tsaccess.plan.compose.plan` runs in its audit phase.

Design (see ``docs/concepts.md``):

* The audit table, the per-row data schema and the functions belong to a dedicated NOLOGIN role
  (``audit.owner``) that owns nothing else. Nobody is granted INSERT/UPDATE/DELETE/TRUNCATE on
  them; auditors get SELECT on the audit table and on its ``<table>_rows`` view. Rows arrive
  only through the trigger functions and ``tsaccess_audit_denied``.
* Trigger functions are ``SECURITY DEFINER`` with every name qualified, so a writer's
  ``search_path`` cannot hijack them (the statement and per-row ones pin none: see
  :mod:`tsaccess.audit.triggers`); EXECUTE is revoked from PUBLIC.
* ``username`` is ``session_user`` (the login user, e.g. ``bob``); ``effective_role`` is the
  role the session had set (``SET ROLE``), read from the ``role`` setting, which a definer
  switch does not change.
* The audited table's name is given to the trigger, so the recorded name is the hypertable's
  even where TimescaleDB clones a row trigger onto chunks.
* Statement triggers with transition tables do the work set-based: one audit row per
  audited statement, with its row count; per-row mode also keeps each changed row, typed (a
  composite of the audited columns, not jsonb: converting 100,000 rows to jsonb costs more than
  inserting them), in ``<data_schema>.<table>``; the ``<audit table>_rows`` view shows them as
  jsonb. Where transition tables are refused (DELETE on a hypertable with compression enabled)
  a trigger without them is used: per-statement rows then have no row count, per-row mode uses
  a row trigger.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg import sql

from tsaccess.audit.functions import (
    compiled_function_steps,
    definer_sql,
    function_steps,
    rows_flush_name,
    stmt_function,
    unused_flush_steps,
    uses_compiled,
)
from tsaccess.audit.integrity.schema import audit_owned, chain_steps
from tsaccess.audit.templates import (
    DENIED_FUNCTION,
    DENIED_RATE_TABLE,
    PENDING_FUNCTION,
    PENDING_TABLE,
    ROW_TYPE_SUFFIX,
    STMT_FUNCTION,
    TRIGGER_PREFIX,
    audit_table_ddl,
    display_name,
    function_sources,
    pending_function_source,
    qualified,
    row_attributes,
    rows_view_sql,
    text,
)
from tsaccess.audit.triggers import rows_function_source, stmt_function_source
from tsaccess.steps import Step, grant_steps

if TYPE_CHECKING:
    from tsaccess.catalog import AuditDataInfo, CatalogSnapshot
    from tsaccess.policy import Policy, Table

__all__ = ["TriggerSpec", "audit_steps"]


@dataclass(frozen=True)
class TriggerSpec:
    """One audit trigger: its table, its (definition-digest) name and its CREATE statement."""

    table: str
    name: str
    statement: sql.Composed


def _trigger_specs(
    policy: Policy, table: Table, compressed: bool, native: bool = False
) -> list[TriggerSpec]:
    if table.audit == "off":
        return []
    row_mode = table.audit == "row"
    target = qualified(policy, table.name)
    shown = display_name(policy, table.name)
    stmt_func = qualified(policy, STMT_FUNCTION)
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
        if fallback and not row_mode:  # a row trigger counts, the statement trigger records
            counter = sql.Identifier(policy.audit.data_schema, PENDING_FUNCTION)
            name = (
                f"{TRIGGER_PREFIX}cnt_"
                + hashlib.sha256("|".join([text(counter), shown]).encode()).hexdigest()[:10]
            )
            specs.append(
                TriggerSpec(
                    table.name,
                    name,
                    sql.SQL(
                        "CREATE TRIGGER {} AFTER DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}({})"
                    ).format(sql.Identifier(name), target, counter, sql.Literal(shown)),
                )
            )
        per_row = row_mode and event != "TRUNCATE"
        if fallback and not row_mode:
            func, args = sql.Identifier(policy.audit.data_schema, PENDING_FUNCTION), [shown]
        elif per_row and not (native and uses_compiled(table) and level == "STATEMENT"):
            func, args = rows_func, [shown]
        elif native:
            # the compiled function: the audit table, per row the changed rows' flush function
            func, args = stmt_func, [shown, "plain" if not referencing else "counted"]
            args.append(text(qualified(policy, policy.audit.table)))
            if per_row:  # the flush of its changed rows; its PL/pgSQL function for bulk
                args[1] = "rows"
                args.append(
                    text(sql.Identifier(policy.audit.data_schema, rows_flush_name(table.name)))
                )
                args.append(text(rows_func))
        else:
            func, args = stmt_func, [shown, "plain" if not referencing else "counted"]
        digest = hashlib.sha256(
            "|".join([event, text(func), level, referencing, *args]).encode()
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
                ).format(sql.Literal(text(ident)), sql.SQL("true" if index else "false")),
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
            steps.append(audit_owned(policy, "SCHEMA", schema_ident, f"schema {ds}"))
        # private: nobody but the owner has any privilege on it
        have = {g for g in data.acl if g[0] != data.owner}
        steps += grant_steps(schema_ident, f"schema {ds}", "SCHEMA", have, set(), "audit")
    if any(t.audit == "statement" and _compressed(t, cat, timescaledb) for t in policy.tables):
        steps += _pending_steps(policy, data)
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
            steps.append(audit_owned(policy, "TYPE", row_type, f"row type {ds}.{type_name}"))
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
            steps.append(audit_owned(policy, "TABLE", data_t, f"{ds}.{table.name}"))
        fq = sql.Identifier(ds, table.name)
        body = rows_function_source(policy, table, attrs)
        steps += function_steps(
            policy,
            sql.SQL("{}()").format(fq),
            f"{ds}.{table.name}()",
            definer_sql(fq, "()", "trigger", "plpgsql", body, pinned=False),
            body,
            data.functions.get(table.name) if data else None,
            set(),
            pinned=False,
        )
    return steps


def _compressed(table: Table, cat: CatalogSnapshot | None, timescaledb: bool) -> bool:
    """Compression is on, or will be after this plan (it is enabled after the audit phase,
    which first puts the DELETE fallback triggers in place)."""
    info = cat.tables.get(table.name) if cat else None
    return bool(info and info.compressed) or (
        timescaledb and table.hypertable and table.compression is not None
    )


def _pending_steps(policy: Policy, data: AuditDataInfo | None) -> list[Step]:
    """The table and row function that count rows deleted from compressed hypertables."""
    ds = policy.audit.data_schema
    table = sql.Identifier(ds, PENDING_TABLE)
    steps: list[Step] = []
    have = data.relations.get(("r", PENDING_TABLE)) if data else None
    if have is None:
        steps.append(
            Step(
                sql.SQL(
                    "CREATE UNLOGGED TABLE {} (txid bigint NOT NULL, table_name text NOT NULL)"
                ).format(table),
                f"create {ds}.{PENDING_TABLE} (counts rows deleted from compressed chunks)",
                "audit",
            )
        )
    if have is None or have.owner != policy.audit.owner:
        steps.append(audit_owned(policy, "TABLE", table, f"{ds}.{PENDING_TABLE}"))
    fq = sql.Identifier(ds, PENDING_FUNCTION)
    body = pending_function_source(policy)
    steps += function_steps(
        policy,
        sql.SQL("{}()").format(fq),
        f"{ds}.{PENDING_FUNCTION}()",
        definer_sql(fq, "()", "trigger", "plpgsql", body),
        body,
        data.functions.get(PENDING_FUNCTION) if data else None,
        set(),
    )
    return steps


def _denied_rate_steps(policy: Policy, data: AuditDataInfo | None) -> list[Step]:
    """The owner-only table that bounds DENIED rows per login user and second."""
    ds = policy.audit.data_schema
    table = sql.Identifier(ds, DENIED_RATE_TABLE)
    have = data.relations.get(("r", DENIED_RATE_TABLE)) if data else None
    steps: list[Step] = []
    if have is None:
        steps.append(
            Step(
                sql.SQL(
                    "CREATE UNLOGGED TABLE {} (username text PRIMARY KEY,"
                    " second timestamptz NOT NULL, n integer NOT NULL)"
                ).format(table),
                f"create {ds}.{DENIED_RATE_TABLE} (bounds DENIED rows per user and second)",
                "audit",
            )
        )
    if have is None or have.owner != policy.audit.owner:
        steps.append(audit_owned(policy, "TABLE", table, f"{ds}.{DENIED_RATE_TABLE}"))
    return steps


def _view_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    view = policy.audit.rows_view
    ident = qualified(policy, view)
    create = rows_view_sql(policy, cat.audit_data if cat else None)
    tag = "tsaccess " + hashlib.sha256(text(create).encode()).hexdigest()[:16]
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
        steps.append(audit_owned(policy, "VIEW", ident, f"view {view}"))
    return steps


def audit_steps(
    policy: Policy, cat: CatalogSnapshot | None, timescaledb: bool, native: bool = False
) -> list[Step]:
    """Steps that bring the audit objects to the policy (all of them when ``cat`` is None;
    ``native``: with the compiled trigger function, see :mod:`tsaccess.audit.functions`)."""
    unused = unused_flush_steps(policy, cat, native)
    if not policy.audited:
        return unused
    owner = sql.Identifier(policy.audit.owner)
    audit_t = qualified(policy, policy.audit.table)
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
        steps.append(audit_owned(policy, "TABLE", audit_t, f"audit table {policy.audit.table}"))
    steps += _data_steps(policy, cat, timescaledb)
    steps += _denied_rate_steps(policy, cat.audit_data if cat else None)
    steps += chain_steps(policy, cat)  # the tamper-evident chain: objects only, no trigger work

    grantees = {(r.name, "EXECUTE") for r in policy.roles}
    bodies = {STMT_FUNCTION: stmt_function_source(policy), **function_sources(policy)}
    for fname, body in bodies.items():
        fq = qualified(policy, fname)
        definer = True
        if pinned := fname == DENIED_FUNCTION:
            signature = "(statement text, reason text, table_name text DEFAULT NULL)"
            ident = sql.SQL("{}(text, text, text)").format(fq)
            create = definer_sql(fq, signature, "void", "sql", body)
            want_acl = grantees
        else:
            ident = sql.SQL("{}()").format(fq)
            body, compiled, definer = stmt_function(native, body)
            create = (
                sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger " + compiled).format(fq)
                if compiled
                else definer_sql(fq, "()", "trigger", "plpgsql", body, pinned=False)
            )
            want_acl = set()
        existing = cat.functions.get(fname) if cat else None
        steps += function_steps(
            policy, ident, fname, create, body, existing, want_acl, pinned=pinned, definer=definer
        )
    if native:
        data = cat.audit_data if cat else None
        attrs = {t.name: row_attributes(t, data) for t in policy.row_audited}
        steps += compiled_function_steps(policy, cat, attrs)

    for table in policy.tables:
        specs = _trigger_specs(policy, table, _compressed(table, cat, timescaledb), native)
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
                        sql.Identifier(name), qualified(policy, table.name)
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
                            qualified(policy, table.name), sql.Identifier(spec.name)
                        ),
                        f"re-enable audit trigger {spec.name} on {table.name}",
                        "audit",
                    )
                )
    steps += _view_steps(policy, cat)
    return [*unused, *steps]
