"""TimescaleDB's doors as plan steps: chunk ACLs, compression, continuous aggregates.

* **Chunks** copy the hypertable's ACL (and never carry row-level security): every chunk of a
  policy hypertable (and every compressed chunk, and the internal compressed hypertable) gets
  the hypertable's SELECT grants less those of the roles that see only a slice of its rows —
  no write privilege, so every write goes through the hypertable and its audit triggers
  (:mod:`tsaccess.plan.phases.chunks` closes new chunks as they are created) — and no column
  privilege (a column GRANT on a hypertable is copied to its existing chunks; the sliced roles'
  privileges are column grants, :mod:`tsaccess.plan.phases.grants`). A chunk ACL that drifted is
  repaired; the copies TimescaleDB makes of the hypertable's GRANT/REVOKE steps planned before
  (table and column) are predicted, so the plan after apply is empty.
* **Compression** settings and the compression job; the audit phase switches DELETE to its
  fallback triggers before compression is enabled.
* **Continuous aggregates**: created, refreshed by a policy, granted to roles; the grant that
  TimescaleDB copies to the materialized hypertable, its chunks and the internal views is taken
  back, so readers reach the aggregate only.

See ``docs/timescaledb.md``.
"""

from __future__ import annotations

from psycopg import sql

from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog.timescale import ChunkInfo, TimescaleCatalog
from tsaccess.errors import PolicyError
from tsaccess.plan.phases.grants import ColumnGrant, column_grants, table_grants
from tsaccess.policy import Aggregate, Policy, Table
from tsaccess.steps import Step, grant_steps, managed_grants, role_ident

__all__ = ["timescale_steps"]

Grant = tuple[str, str]


def _ident(c: ChunkInfo) -> sql.Identifier:
    return sql.Identifier(c.schema, c.name)


def _predict(
    have: frozenset[Grant], parent_have: set[Grant], parent_want: set[Grant]
) -> set[Grant]:
    """A child's ACL after the parent's GRANT/REVOKE steps ran (TimescaleDB copies them)."""
    return (set(have) - (parent_have - parent_want)) | (parent_want - parent_have)


def _table_want(policy: Policy, table: str, *, chunk: bool) -> set[Grant]:
    """A table's (or aggregate's) policy grants; for its chunks (and compressed chunks): SELECT
    only, and nothing for the sliced roles. A write on a chunk would skip the hypertable's audit
    triggers; writes through the hypertable need no privilege on the chunks (measured)."""
    sliced = set(policy.sliced_roles(table)) if chunk else set()
    return {
        (r.name, str(p))
        for r in policy.roles
        if r.name not in sliced
        for p in r.privileges_on(table)
        if not chunk or str(p) == "SELECT"
    }


def _chunk_acl_steps(
    policy: Policy, cat: CatalogSnapshot | None, tsc: TimescaleCatalog
) -> list[Step]:
    """Chunks get their hypertable's SELECT grants less the sliced roles', and no column
    privilege; an aggregate's internal relations get none (readers go through the
    aggregate)."""
    steps: list[Step] = []
    if policy.chunk_privileges == "copied":
        return steps  # chunks and aggregates' internals keep what TimescaleDB copies
    parents: dict[str, tuple[set[Grant], set[Grant], set[ColumnGrant], set[ColumnGrant]]] = {}
    for c in tsc.chunks:
        if c.kind == "chunk":
            if policy.table(c.parent) is None:
                continue
            want = _table_want(policy, c.parent, chunk=True)
            label = f"chunk {c.schema}.{c.name} of {c.parent}"
        else:
            if policy.aggregate(c.parent) is None:
                continue
            want = set()
            label = f"{c.schema}.{c.name} (inside aggregate {c.parent})"
        if c.parent not in parents:
            parents[c.parent] = _parent_changes(policy, cat, c.parent, aggregate=c.kind != "chunk")
        parent_have, parent_want, col_gone, col_added = parents[c.parent]
        have = managed_grants(_predict(c.acl, parent_have, parent_want), policy.public)
        steps += grant_steps(_ident(c), label, "TABLE", have, want, "security")
        # column privileges, in the order the steps run: TimescaleDB copies the hypertable's
        # table-level REVOKE (which takes the privilege off every column too), then its column
        # REVOKE and GRANT, to the chunks that exist (never to later ones); then the chunk's
        # own table-level REVOKE above
        parent_gone = parent_have - parent_want
        cols = {g for g in c.column_acl if (g[1], g[2]) not in parent_gone}
        cols = (cols - col_gone) | col_added
        cols = {
            g
            for g in cols
            if (g[1], g[2]) not in have - want
            and g[1] != c.owner
            and not (g[1] == "PUBLIC" and policy.public == "keep")
        }
        steps += _column_revokes(c, label, cols)
    return steps


def _parent_changes(
    policy: Policy, cat: CatalogSnapshot | None, parent: str, *, aggregate: bool
) -> tuple[set[Grant], set[Grant], set[ColumnGrant], set[ColumnGrant]]:
    """What this plan does to a hypertable's (or aggregate's) privileges, as TimescaleDB copies
    it to the existing chunks: (table-level grants before, after; column privileges revoked,
    granted)."""
    if aggregate:
        info = cat.tables.get(parent) if cat else None
        have = {g for g in (info.acl if info else ()) if info and g[0] != info.owner}
        return (
            managed_grants(have, policy.public),
            _table_want(policy, parent, chunk=False),
            set(),
            set(),
        )
    have, want = table_grants(policy, cat, parent)
    info = cat.tables.get(parent) if cat else None
    owner = info.owner if info else None
    col_before = {g for g in (info.column_acl if info else ()) if g[1] != owner}
    col_have, col_want = column_grants(policy, cat, parent)
    return have, want, col_before - col_want, col_want - col_have


def _column_revokes(c: ChunkInfo, label: str, cols: set[ColumnGrant]) -> list[Step]:
    """REVOKE every column privilege left on a chunk, one statement per grantee."""
    by: dict[str, dict[str, list[str]]] = {}
    for col, grantee, priv in cols:
        by.setdefault(grantee, {}).setdefault(priv, []).append(col)
    steps: list[Step] = []
    for grantee in sorted(by):
        parts = [(priv, sorted(by[grantee][priv])) for priv in sorted(by[grantee])]
        steps.append(
            Step(
                sql.SQL("REVOKE {} ON TABLE {} FROM {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("{} ({})").format(
                            sql.SQL(priv), sql.SQL(", ").join(sql.Identifier(x) for x in names)
                        )
                        for priv, names in parts
                    ),
                    _ident(c),
                    role_ident(grantee),
                ),
                "revoke "
                + ", ".join(f"{priv} ({', '.join(names)})" for priv, names in parts)
                + f" on {label} from {grantee}",
                "security",
            )
        )
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
        steps.append(_compressed_revoke(policy, t))
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


def _compressed_revoke(policy: Policy, t: Table) -> Step:
    """For compression enabled by this plan: TimescaleDB copied the hypertable's ACL to its new
    internal compressed hypertable (whose ACL its compressed chunks copy); take back every
    privilege but SELECT of everyone but the owner (writes go through the hypertable)."""
    lit = sql.Literal
    body = sql.SQL(
        "DECLARE r regclass; w text; BEGIN"
        " SELECT pg_catalog.format('%I.%I', c.schema_name, c.table_name)::regclass INTO r"
        " FROM _timescaledb_catalog.hypertable h"
        " JOIN _timescaledb_catalog.hypertable c ON c.id = h.compressed_hypertable_id"
        " WHERE h.schema_name = {} AND h.table_name = {};"
        " SELECT pg_catalog.string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
        " ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, ', ') INTO w"
        " FROM pg_catalog.pg_class k, pg_catalog.aclexplode(k.relacl) a"
        " WHERE k.oid = r AND a.grantee <> k.relowner AND a.privilege_type <> 'SELECT';"
        " IF w IS NOT NULL THEN EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE, DELETE,"
        " TRUNCATE, REFERENCES, TRIGGER ON TABLE %s FROM %s', r, w); END IF; END"
    ).format(lit(policy.schema), lit(t.name))
    return Step(
        sql.SQL("DO {}").format(lit(body.as_string(None))),
        f"the compressed hypertable of {t.name}: no writes but the owner's (its compressed "
        "chunks copy its privileges)",
        "security",
    )


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
        else:
            want_cols = [a.bucket_column, *a.group_by, *(c.name for c in a.columns)]
            have_cols = [c.name for c in info.columns] if info else want_cols
            if have_cols != want_cols:
                raise PolicyError(
                    f"continuous aggregate {policy.schema}.{a.name} has columns "
                    f"{', '.join(have_cols)} but the policy declares {', '.join(want_cols)}; "
                    "tsaccess does not rebuild an aggregate (its materialized data would be "
                    f"lost): drop it (DROP MATERIALIZED VIEW {a.name}) and apply, or rename it",
                    path=f"aggregates.{a.name}",
                    source=policy.source,
                )
        if live is not None and live.materialized_only == a.real_time:
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
        want_job = (
            _interval_text(a.refresh_start),
            _interval_text(a.refresh_end),
            _interval_text(a.refresh_every),
        )
        if any(
            (
                str(j.config.get("start_offset")),
                str(j.config.get("end_offset")),
                j.schedule_interval,
            )
            != want_job
            for j in jobs
        ):
            steps.append(
                Step(
                    sql.SQL("SELECT remove_continuous_aggregate_policy({}::regclass)").format(
                        sql.Literal(ident.as_string(None))
                    ),
                    f"remove the refresh job of {a.name} (other offsets or schedule)",
                    "schema",
                )
            )
            jobs = ()
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
        have = managed_grants(have, policy.public)
        want = _table_want(policy, a.name, chunk=False)
        steps += grant_steps(ident, f"aggregate {a.name}", "TABLE", have, want, "security")
        if live is None and want and policy.chunk_privileges != "copied":
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


def timescale_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    tsc: TimescaleCatalog | None,
    timescaledb: bool,
    warnings: list[str],
) -> list[Step]:
    """Steps for compression, aggregates and chunk ACLs (``tsc`` None: an empty database)."""
    if not timescaledb:
        return []
    steps: list[Step] = []
    live = tsc or TimescaleCatalog()
    for t in policy.tables:
        if t.hypertable:
            steps += _compression_steps(policy, t, live)
        elif t.name in live.compression:
            warnings.append(f"table {t.name} is compressed but the policy does not say so")
    steps += _aggregate_steps(policy, cat, tsc)
    steps += _chunk_acl_steps(policy, cat, live)
    return steps
