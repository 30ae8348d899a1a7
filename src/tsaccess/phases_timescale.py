"""TimescaleDB's doors as plan steps: row slices, chunk ACLs, compression, continuous aggregates.

* **Row slices**: the login user's attributes live in ``tsaccess_rls.user_attributes``, a table
  nobody but its owner can read or write; ``tsaccess_rls.attribute(name)`` (``SECURITY DEFINER``,
  ``STABLE``) returns the value for ``session_user``, which ``SET ROLE``, ``set_config`` and
  ``application_name`` cannot change. The sliced table gets row-level security with one policy
  per granted role (``column = (SELECT tsaccess_rls.attribute('...'))`` for sliced roles, ``true``
  for the others).
* **Chunks** copy the hypertable's ACL and never carry row-level security, and chunk creation
  fires no event trigger. A statement trigger ``AFTER INSERT OR UPDATE`` on the hypertable
  (``tsaccess_chunk_acl()``, owned by the table owner) revokes the sliced roles' privileges on
  every chunk that has them, in the transaction that created the chunk: before it commits, no
  other session can see the chunk. Plan repairs any chunk ACL that drifted from its hypertable's
  (less the sliced roles).
* **Compression** settings and the compression job; the audit phase switches DELETE to its
  fallback triggers before compression is enabled.
* **Continuous aggregates**: created, refreshed by a policy, granted to roles; the grant that
  TimescaleDB copies to the materialized hypertable, its chunks and the internal views is taken
  back, so readers reach the aggregate only.
"""

from __future__ import annotations

import hashlib

from psycopg import sql

from tsaccess._steps import Step, grant_steps
from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog_timescale import (
    ATTRIBUTE_FUNCTION,
    ATTRIBUTE_TABLE,
    SLICE_SCHEMA,
    ChunkInfo,
    TimescaleCatalog,
)
from tsaccess.errors import PolicyError
from tsaccess.policy import Aggregate, Policy, Table

__all__ = ["CHUNK_ACL_FUNCTION", "CHUNK_TRIGGER_PREFIX", "POLICY_PREFIX", "timescale_steps"]

CHUNK_ACL_FUNCTION = "tsaccess_chunk_acl"
CHUNK_TRIGGER_PREFIX = "tsaccess_chunk_acl_"
POLICY_PREFIX = "tsaccess_"

Grant = tuple[str, str]

ATTRIBUTE_BODY = (
    "SELECT value FROM tsaccess_rls.user_attributes"
    " WHERE username = pg_catalog.session_user() AND attribute = $1"
)

# Revoke every privilege of the roles named in TG_ARGV on the chunks of the trigger's table
# that hold one (new chunks copy the hypertable's ACL). Runs as the table owner. Only chunks
# created since shortly before this transaction began are looked at (TimescaleDB stamps a chunk
# with the wall clock when it creates it): a chunk made by this statement is always among them,
# and the check costs the same with 10 or 10,000 chunks. Older chunks are plan's and verify's.
CHUNK_ACL_BODY = """
DECLARE
  ch regclass;
  who text;
BEGIN
  FOR ch IN
    SELECT k.oid::regclass
    FROM _timescaledb_catalog.hypertable h
    JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = h.id
    JOIN pg_catalog.pg_class k
      ON k.oid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', c.schema_name, c.table_name))
    WHERE h.schema_name = TG_TABLE_SCHEMA AND h.table_name = TG_TABLE_NAME
      AND c.creation_time >= pg_catalog.transaction_timestamp() - interval '5 minutes'
      AND EXISTS (SELECT FROM pg_catalog.aclexplode(k.relacl) a
                  JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
                  WHERE g.rolname = ANY (TG_ARGV))
  LOOP
    IF who IS NULL THEN
      SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r), ', ') INTO who
      FROM pg_catalog.unnest(TG_ARGV) r;
    END IF;
    EXECUTE pg_catalog.format('REVOKE ALL ON TABLE %s FROM %s', ch, who);
  END LOOP;
  RETURN NULL;
END
"""


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _ident(c: ChunkInfo) -> sql.Identifier:
    return sql.Identifier(c.schema, c.name)


def _predict(
    have: frozenset[Grant], parent_have: set[Grant], parent_want: set[Grant]
) -> set[Grant]:
    """A child's ACL after the parent's GRANT/REVOKE steps ran (TimescaleDB copies them)."""
    return (set(have) - (parent_have - parent_want)) | (parent_want - parent_have)


def _slice_steps(
    policy: Policy, cat: CatalogSnapshot | None, tsc: TimescaleCatalog | None, ts: bool
) -> list[Step]:
    steps: list[Step] = []
    sliced = sorted({r.name for r in policy.roles if r.slices})
    schema = sql.Identifier(SLICE_SCHEMA)
    owner = cat.current_user if cat else None
    if tsc is None or tsc.slice_schema is None:
        steps.append(
            Step(
                sql.SQL("CREATE SCHEMA {}").format(schema),
                f"create schema {SLICE_SCHEMA} (user attributes for row slices, private)",
                "security",
            )
        )
        have_ns: set[Grant] = set()
    else:
        owner = tsc.slice_schema[0]
        have_ns = {g for g in tsc.slice_schema[1] if g[0] != owner}
    steps += grant_steps(
        schema,
        f"schema {SLICE_SCHEMA}",
        "SCHEMA",
        have_ns,
        {(r, "USAGE") for r in sliced},
        "security",
    )
    table = sql.Identifier(SLICE_SCHEMA, ATTRIBUTE_TABLE)
    if tsc is None or not tsc.attribute_table:
        steps.append(
            Step(
                sql.SQL(
                    "CREATE TABLE {} (username text NOT NULL, attribute text NOT NULL,"
                    " value text NOT NULL, PRIMARY KEY (username, attribute))"
                ).format(table),
                f"create {SLICE_SCHEMA}.{ATTRIBUTE_TABLE} (readable by its owner only)",
                "security",
            )
        )
    want = {(u.name, k, v) for u in policy.users for k, v in u.attributes}
    have = set(tsc.attributes) if tsc else set()
    for user, attr, _ in sorted(have - want):
        if (user, attr) in {(w[0], w[1]) for w in want}:
            continue  # updated below
        steps.append(
            Step(
                sql.SQL("DELETE FROM {} WHERE username = {} AND attribute = {}").format(
                    table, sql.Literal(user), sql.Literal(attr)
                ),
                f"remove attribute {attr} of {user}",
                "security",
            )
        )
    for user, attr, value in sorted(want - have):
        steps.append(
            Step(
                sql.SQL(
                    "INSERT INTO {} VALUES ({}, {}, {}) ON CONFLICT (username, attribute)"
                    " DO UPDATE SET value = EXCLUDED.value"
                ).format(table, sql.Literal(user), sql.Literal(attr), sql.Literal(value)),
                f"set attribute {attr} of {user}",
                "security",
            )
        )
    fn = sql.Identifier(SLICE_SCHEMA, ATTRIBUTE_FUNCTION)
    existing = tsc.attribute_function if tsc else None
    if existing is None or existing[0] != ATTRIBUTE_BODY:
        steps.append(
            Step(
                sql.SQL(
                    "CREATE OR REPLACE FUNCTION {}(text) RETURNS text LANGUAGE sql STABLE"
                    " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {}"
                ).format(fn, sql.Literal(ATTRIBUTE_BODY)),
                f"create function {SLICE_SCHEMA}.{ATTRIBUTE_FUNCTION}(text): the login user's "
                "attribute",
                "security",
            )
        )
    have_fn = (
        {("PUBLIC", "EXECUTE")} if existing is None else {g for g in existing[1] if g[0] != owner}
    )
    steps += grant_steps(
        sql.SQL("{}(text)").format(fn),
        f"function {SLICE_SCHEMA}.{ATTRIBUTE_FUNCTION}",
        "FUNCTION",
        have_fn,
        {(r, "EXECUTE") for r in sliced},
        "security",
    )
    chunk_fn = sql.Identifier(policy.schema, CHUNK_ACL_FUNCTION)
    fn_info = cat.functions.get(CHUNK_ACL_FUNCTION) if cat else None
    if ts:
        if fn_info is None or fn_info.source != CHUNK_ACL_BODY or not fn_info.security_definer:
            steps.append(
                Step(
                    sql.SQL(
                        "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql"
                        " VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {}"
                    ).format(chunk_fn, sql.Literal(CHUNK_ACL_BODY)),
                    f"create function {CHUNK_ACL_FUNCTION}(): sliced roles lose new chunks",
                    "security",
                )
            )
        have_cf = (
            {("PUBLIC", "EXECUTE")}
            if fn_info is None
            else {g for g in fn_info.acl if g[0] != fn_info.owner}
        )
        steps += grant_steps(
            sql.SQL("{}()").format(chunk_fn),
            f"function {CHUNK_ACL_FUNCTION}",
            "FUNCTION",
            have_cf,
            set(),
            "security",
        )
    for t in policy.tables:
        steps += _rls_steps(policy, t, cat, tsc, ts)
    return steps


def _rls_steps(
    policy: Policy, t: Table, cat: CatalogSnapshot | None, tsc: TimescaleCatalog | None, ts: bool
) -> list[Step]:
    target = sql.Identifier(policy.schema, t.name)
    sliced = policy.sliced_roles(t.name)
    enabled = bool(tsc and tsc.rls.get(t.name))
    have = {p for p in (tsc.policies.get(t.name, frozenset()) if tsc else ())}
    ours = {p for p in have if p.startswith(POLICY_PREFIX)}
    steps: list[Step] = []
    want: dict[str, sql.Composed] = {}
    if sliced:
        for r in policy.roles:
            if not r.privileges_on(t.name):
                continue
            s = r.slice_of(t.name)
            cond = (
                sql.SQL("{} = (SELECT {}({}))").format(
                    sql.Identifier(s.column),
                    sql.Identifier(SLICE_SCHEMA, ATTRIBUTE_FUNCTION),
                    sql.Literal(s.attribute),
                )
                if s
                else sql.SQL("true")
            )
            name = POLICY_PREFIX + _digest(r.name, cond.as_string(None))
            want[name] = sql.SQL(
                "CREATE POLICY {} ON {} FOR ALL TO {} USING ({}) WITH CHECK ({})"
            ).format(sql.Identifier(name), target, sql.Identifier(r.name), cond, cond)
    for name in sorted(ours - set(want)):
        steps.append(
            Step(
                sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(name), target),
                f"drop outdated row policy {name} on {t.name}",
                "security",
            )
        )
    if sliced and not enabled:
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target),
                f"enable row-level security on {t.name} (slices for {', '.join(sliced)})",
                "security",
            )
        )
    if not sliced and enabled and ours:
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(target),
                f"disable row-level security on {t.name} (no slices left)",
                "security",
            )
        )
    for name in sorted(set(want) - ours):
        steps.append(Step(want[name], f"row policy {name} on {t.name}", "security"))
    # the chunk trigger: only on hypertables with slices
    trig = {
        n
        for (tn, n) in (cat.triggers if cat else {})
        if tn == t.name and n.startswith(CHUNK_TRIGGER_PREFIX)
    }
    want_trig: dict[str, sql.Composed] = {}
    if sliced and t.hypertable and ts:
        name = CHUNK_TRIGGER_PREFIX + _digest(*sliced)
        want_trig[name] = sql.SQL(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE ON {} FOR EACH STATEMENT"
            " EXECUTE FUNCTION {}({})"
        ).format(
            sql.Identifier(name),
            target,
            sql.Identifier(policy.schema, CHUNK_ACL_FUNCTION),
            sql.SQL(", ").join(sql.Literal(r) for r in sliced),
        )
    for name in sorted(trig - set(want_trig)):
        steps.append(
            Step(
                sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), target),
                f"drop outdated chunk ACL trigger {name} on {t.name}",
                "security",
            )
        )
    for name in sorted(set(want_trig) - trig):
        steps.append(
            Step(
                want_trig[name],
                f"new chunks of {t.name} lose the privileges of {', '.join(sliced)}",
                "security",
            )
        )
    return steps


def _table_want(policy: Policy, table: str, *, chunk: bool) -> set[Grant]:
    sliced = set(policy.sliced_roles(table)) if chunk else set()
    return {
        (r.name, str(p))
        for r in policy.roles
        if r.name not in sliced
        for p in r.privileges_on(table)
    }


def _chunk_acl_steps(
    policy: Policy, cat: CatalogSnapshot | None, tsc: TimescaleCatalog
) -> list[Step]:
    """Chunks get their hypertable's privileges less the sliced roles'; an aggregate's
    internal relations get none (readers go through the aggregate)."""
    steps: list[Step] = []
    for c in tsc.chunks:
        info = cat.tables.get(c.parent) if cat else None
        parent_have = {g for g in (info.acl if info else ()) if info and g[0] != info.owner}
        if c.kind == "chunk":
            if policy.table(c.parent) is None:
                continue
            parent_want = _table_want(policy, c.parent, chunk=False)
            want = _table_want(policy, c.parent, chunk=True)
            label = f"chunk {c.schema}.{c.name} of {c.parent}"
        else:
            if policy.aggregate(c.parent) is None:
                continue
            parent_want = _table_want(policy, c.parent, chunk=False)
            want = set()
            label = f"{c.schema}.{c.name} (inside aggregate {c.parent})"
        have = _predict(c.acl, parent_have, parent_want)
        steps += grant_steps(_ident(c), label, "TABLE", have, want, "security")
    return steps


def _compression_steps(policy: Policy, t: Table, tsc: TimescaleCatalog) -> list[Step]:
    comp = t.compression
    if comp is None:
        return []
    target = sql.Identifier(policy.schema, t.name)
    steps: list[Step] = []
    seg = sql.Literal(", ".join(sql.Identifier(c).as_string(None) for c in comp.segment_by))
    order_items = []
    for o in comp.order_by:
        col, *rest = o.split()
        order_items.append(
            " ".join([sql.Identifier(col).as_string(None), *(w.upper() for w in rest)])
        )
    order = sql.Literal(", ".join(order_items))
    live = tsc.compression.get(t.name)
    want_order = tuple(_normal_order(o) for o in comp.order_by)
    if live is None:
        steps.append(
            Step(
                sql.SQL(
                    "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = {}"
                    ", timescaledb.compress_orderby = {})"
                ).format(target, seg, order),
                f"compress {t.name} (segment by {', '.join(comp.segment_by) or '-'}, order by "
                f"{', '.join(comp.order_by) or 'default'})",
                "schema",
            )
        )
    elif live[0] != comp.segment_by or (comp.order_by and live[1] != want_order):
        steps.append(
            Step(
                sql.SQL(
                    "ALTER TABLE {} SET (timescaledb.compress_segmentby = {},"
                    " timescaledb.compress_orderby = {})"
                ).format(target, seg, order),
                f"change compression settings of {t.name}",
                "schema",
            )
        )
    jobs = tsc.jobs_for(t.name, "policy_compression")
    have_after = {str(j.config.get("compress_after")) for j in jobs}
    if jobs and (comp.after is None or have_after != {_interval_text(comp.after)}):
        steps.append(
            Step(
                sql.SQL("SELECT remove_compression_policy({}::regclass)").format(
                    sql.Literal(target.as_string(None))
                ),
                f"remove the compression job of {t.name}",
                "schema",
            )
        )
        jobs = ()
    if comp.after is not None and not jobs:
        steps.append(
            Step(
                sql.SQL("SELECT add_compression_policy({}::regclass, INTERVAL {})").format(
                    sql.Literal(target.as_string(None)), sql.Literal(comp.after)
                ),
                f"compress chunks of {t.name} older than {comp.after} (job)",
                "schema",
            )
        )
    return steps


def _normal_order(item: str) -> str:
    col, *rest = item.split()
    words = [w.upper() for w in rest]
    desc = "DESC" in words
    out = col + (" DESC" if desc else "")
    if "NULLS" in words:
        nf = words[words.index("NULLS") + 1] == "FIRST"
        if nf != desc:
            out += " NULLS FIRST" if nf else " NULLS LAST"
    return out


def _interval_text(v: str) -> str:
    """How PostgreSQL prints a simple interval (``7 days``, ``01:00:00``, ``1 mon``)."""
    n_text, unit = v.split()[0], v.split()[-1].lower().rstrip("s")
    n = int(n_text)
    if unit == "week":
        n, unit = n * 7, "day"
    if unit in ("hour", "minute", "second"):
        secs = n * {"hour": 3600, "minute": 60, "second": 1}[unit]
        return f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
    word = {"day": "day", "month": "mon", "year": "year"}[unit]
    return f"{n} {word}{'' if n == 1 else 's'}"


def _aggregate_sql(policy: Policy, a: Aggregate) -> sql.Composed:
    src = policy.table(a.source)
    assert src is not None and src.time_column
    cols: list[sql.Composable] = [
        sql.SQL("time_bucket(INTERVAL {}, {}) AS {}").format(
            sql.Literal(a.bucket), sql.Identifier(src.time_column), sql.Identifier(a.bucket_column)
        ),
        *(sql.Identifier(g) for g in a.group_by),
        *(
            sql.SQL("{}({}) AS {}").format(
                sql.SQL(x.function),
                sql.SQL("*") if x.column == "*" else sql.Identifier(x.column),
                sql.Identifier(x.name),
            )
            for x in a.columns
        ),
    ]
    return sql.SQL(
        "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous,"
        " timescaledb.materialized_only = {}) AS SELECT {} FROM {} GROUP BY {} WITH NO DATA"
    ).format(
        sql.Identifier(policy.schema, a.name),
        sql.SQL("false" if a.real_time else "true"),
        sql.SQL(", ").join(cols),
        sql.Identifier(policy.schema, a.source),
        sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(1 + len(a.group_by))),
    )


def _aggregate_steps(
    policy: Policy, cat: CatalogSnapshot | None, tsc: TimescaleCatalog | None
) -> list[Step]:
    steps: list[Step] = []
    for a in policy.aggregates:
        ident = sql.Identifier(policy.schema, a.name)
        live = tsc.aggregates.get(a.name) if tsc else None
        info = cat.tables.get(a.name) if cat else None
        if live is None:
            if info is not None:
                raise PolicyError(
                    f"{policy.schema}.{a.name} exists but is not a continuous aggregate; "
                    "rename one of them",
                    path=f"aggregates.{a.name}",
                    source=policy.source,
                )
            steps.append(
                Step(_aggregate_sql(policy, a), f"create continuous aggregate {a.name}", "schema")
            )
        elif live.materialized_only == a.real_time:
            steps.append(
                Step(
                    sql.SQL(
                        "ALTER MATERIALIZED VIEW {} SET (timescaledb.materialized_only = {})"
                    ).format(ident, sql.SQL("false" if a.real_time else "true")),
                    f"{'real-time' if a.real_time else 'materialized-only'} reads of {a.name}",
                    "schema",
                )
            )
        jobs = tsc.jobs_for(a.name, "policy_refresh_continuous_aggregate") if tsc and live else ()
        if not jobs:
            steps.append(
                Step(
                    sql.SQL(
                        "SELECT add_continuous_aggregate_policy({}::regclass, start_offset =>"
                        " INTERVAL {}, end_offset => INTERVAL {}, schedule_interval => INTERVAL {})"
                    ).format(
                        sql.Literal(ident.as_string(None)),
                        sql.Literal(a.refresh_start),
                        sql.Literal(a.refresh_end),
                        sql.Literal(a.refresh_every),
                    ),
                    f"refresh {a.name} every {a.refresh_every} (job)",
                    "schema",
                )
            )
        have = {g for g in (info.acl if info else ()) if info and g[0] != info.owner}
        want = _table_want(policy, a.name, chunk=False)
        steps += grant_steps(ident, f"aggregate {a.name}", "TABLE", have, want, "security")
        if live is None and want:
            steps.append(_internal_revoke(policy, a, sorted({g[0] for g in want})))
    return steps


def _internal_revoke(policy: Policy, a: Aggregate, roles: list[str]) -> Step:
    """For an aggregate made by this plan (its internal names are not known yet): take back
    the grant TimescaleDB copied to its materialized hypertable and internal views."""
    who = ", ".join(sql.Identifier(r).as_string(None) for r in roles)
    body = (
        "DECLARE r regclass; BEGIN FOR r IN"
        " SELECT pg_catalog.format('%I.%I', h.schema_name, h.table_name)::regclass"
        " FROM _timescaledb_catalog.continuous_agg ca"
        " JOIN _timescaledb_catalog.hypertable h ON h.id = ca.mat_hypertable_id"
        f" WHERE ca.user_view_schema = {sql.Literal(policy.schema).as_string(None)}"
        f" AND ca.user_view_name = {sql.Literal(a.name).as_string(None)}"
        " UNION ALL SELECT pg_catalog.format('%I.%I', v.s, v.n)::regclass"
        " FROM _timescaledb_catalog.continuous_agg ca, LATERAL (VALUES"
        " (ca.direct_view_schema, ca.direct_view_name),"
        " (ca.partial_view_schema, ca.partial_view_name)) v(s, n)"
        f" WHERE ca.user_view_schema = {sql.Literal(policy.schema).as_string(None)}"
        f" AND ca.user_view_name = {sql.Literal(a.name).as_string(None)}"
        f" LOOP EXECUTE 'REVOKE ALL ON TABLE ' || r::text || {sql.Literal(' FROM ' + who).as_string(None)};"
        " END LOOP; END"
    )
    return Step(
        sql.SQL("DO {}").format(sql.Literal(body)),
        f"readers of {a.name} get the aggregate only (not its materialized hypertable or "
        "internal views)",
        "security",
    )


def _bypass_steps(policy: Policy, tsc: TimescaleCatalog | None) -> list[Step]:
    """COPY FROM is refused on a table with row-level security for anyone subject to it:
    users in no sliced role who may INSERT into a sliced table get BYPASSRLS; the policy's
    other users never have it (it would bypass every row-level security policy)."""
    sliced_tables = {s.table for r in policy.roles for s in r.slices}
    steps: list[Step] = []
    for u in policy.users:
        roles = [policy.role(r) for r in u.roles]
        in_slice = any(r is not None and r.slices for r in roles)
        writes = any(
            r is not None and "INSERT" in r.privileges_on(t) for r in roles for t in sliced_tables
        )
        want = writes and not in_slice
        have = bool(tsc and tsc.bypassrls.get(u.name))
        if tsc is not None and u.name not in tsc.bypassrls and not want:
            continue  # created by this plan without BYPASSRLS
        if have != want:
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} {}").format(
                        sql.Identifier(u.name), sql.SQL("BYPASSRLS" if want else "NOBYPASSRLS")
                    ),
                    f"{u.name}: {'BYPASSRLS (COPY into sliced tables)' if want else 'NOBYPASSRLS'}",
                    "security",
                )
            )
    return steps


def _leaking_views(policy: Policy, tsc: TimescaleCatalog) -> dict[str, set[str]]:
    """Views (and aggregates outside the policy) that read a sliced table with their owner's
    rights somewhere on the way (not ``security_invoker``): view -> the sliced tables."""
    sliced = {s.table for r in policy.roles for s in r.slices}
    memo: dict[str, set[tuple[str, bool]]] = {}

    def reach(view: str, seen: frozenset[str]) -> set[tuple[str, bool]]:
        if view in memo:
            return memo[view]
        invoker, sources = tsc.view_sources[view]
        out: set[tuple[str, bool]] = set()
        for src in sources:
            if src in sliced:
                out.add((src, not invoker))
            elif src in tsc.view_sources and src not in seen:
                out |= {(t, d or not invoker) for t, d in reach(src, seen | {view})}
        memo[view] = out
        return out

    leaks: dict[str, set[str]] = {}
    for view in sorted(tsc.view_sources):
        if policy.aggregate(view) is not None or view == policy.audit.rows_view:
            continue
        tables = {t for t, definer in reach(view, frozenset()) if definer}
        if tables:
            leaks[view] = tables
    return leaks


def _view_steps(
    policy: Policy, cat: CatalogSnapshot | None, tsc: TimescaleCatalog, warnings: list[str]
) -> list[Step]:
    steps: list[Step] = []
    for view, tables in _leaking_views(policy, tsc).items():
        roles = {r for t in tables for r in policy.sliced_roles(t)} | {"PUBLIC"}
        info = cat.tables.get(view) if cat else None
        have = {g for g in (info.acl if info else ()) if info and g[0] != info.owner}
        warnings.append(
            f"view {view} reads {', '.join(sorted(tables))} with its owner's rights (not "
            "security_invoker), around the row slices: the sliced roles and PUBLIC get no "
            f"privilege on it (ALTER VIEW {view} SET (security_invoker = true) lets readers "
            "see their slice through it)"
        )
        steps += grant_steps(
            sql.Identifier(policy.schema, view),
            f"view {view} (reads sliced {', '.join(sorted(tables))} as its owner)",
            "TABLE",
            have,
            {g for g in have if g[0] not in roles},
            "security",
        )
    return steps


def timescale_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    tsc: TimescaleCatalog | None,
    timescaledb: bool,
    warnings: list[str],
) -> list[Step]:
    """Steps for slices, compression, aggregates and chunk ACLs (``tsc`` None: empty database)."""
    steps: list[Step] = []
    if any(r.slices for r in policy.roles) or (tsc and tsc.slice_schema is not None):
        steps += _slice_steps(policy, cat, tsc, timescaledb)
    if tsc is not None:
        steps += _view_steps(policy, cat, tsc, warnings)
    for t in policy.tables:
        others = sorted(
            p
            for p in (tsc.policies.get(t.name, ()) if tsc else ())
            if not p.startswith(POLICY_PREFIX)
        )
        if others:
            warnings.append(
                f"table {t.name} has row policies tsaccess does not manage: {', '.join(others)}"
                " (permissive policies widen every slice; left alone)"
            )
    if timescaledb:
        live = tsc or TimescaleCatalog()
        for t in policy.tables:
            if t.hypertable:
                steps += _compression_steps(policy, t, live)
            elif t.name in live.compression:
                warnings.append(f"table {t.name} is compressed but the policy does not say so")
        steps += _aggregate_steps(policy, cat, tsc)
        steps += _chunk_acl_steps(policy, cat, live)
    steps += _bypass_steps(policy, tsc)
    return steps
