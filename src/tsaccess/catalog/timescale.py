"""Set-based reads of TimescaleDB's side of the catalog: chunks and their ACLs, compression,
jobs, continuous aggregates, row-level security, and tsaccess's user attributes.

A fixed number of queries whatever the number of chunks (``TimescaleCatalog.queries``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from tsaccess.catalog.routines import ROW_COLUMNS, RoutineInfo, derive_sql, routines_from

__all__ = [
    "ATTRIBUTE_FUNCTION",
    "ATTRIBUTE_TABLE",
    "SLICE_SCHEMA",
    "AggregateInfo",
    "ChunkInfo",
    "JobInfo",
    "TimescaleCatalog",
    "read_timescale",
]

SLICE_SCHEMA = "tsaccess_rls"
"""Private schema of the row slices: the user attributes and the function reading them."""
ATTRIBUTE_TABLE = "user_attributes"
ATTRIBUTE_FUNCTION = "attribute"

Grant = tuple[str, str]


@dataclass(frozen=True)
class ChunkInfo:
    """A child table of a hypertable (a chunk, or a continuous aggregate's internal relation)."""

    parent: str
    """The policy-level name: a hypertable of the schema, or a continuous aggregate."""
    schema: str
    name: str
    owner: str
    acl: frozenset[Grant]
    kind: str = "chunk"
    """``chunk``, ``materialized`` (an aggregate's hypertable or its chunks) or ``view``."""


@dataclass(frozen=True)
class JobInfo:
    job_id: int
    proc_schema: str
    proc_name: str
    hypertable: str | None
    config: Mapping[str, Any]
    schedule_interval: str


@dataclass(frozen=True)
class AggregateInfo:
    name: str
    materialized_only: bool
    materialization: tuple[str, str]


@dataclass(frozen=True)
class TimescaleCatalog:
    chunks: tuple[ChunkInfo, ...] = ()
    compression: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    """table -> (segment_by, order_by items as ``col DESC``) for tables with compression on."""
    jobs: tuple[JobInfo, ...] = ()
    aggregates: Mapping[str, AggregateInfo] = field(default_factory=dict)
    rls: Mapping[str, bool] = field(default_factory=dict)
    """table -> relrowsecurity, for the schema's tables."""
    policies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """table -> names of its row-level security policies."""
    bypassrls: Mapping[str, bool] = field(default_factory=dict)
    slice_schema: tuple[str, frozenset[Grant]] | None = None
    """(owner, ACL) of :data:`SLICE_SCHEMA` when it exists."""
    attribute_table: bool = False
    attribute_function: tuple[str, frozenset[Grant]] | None = None
    """(source, ACL) of the attribute function when it exists."""
    attributes: frozenset[tuple[str, str, str]] = frozenset()
    """(user, attribute, value) rows."""
    queries: int = 0
    event_triggers: frozenset[str] = frozenset()
    view_sources: Mapping[str, tuple[bool, frozenset[str]]] = field(default_factory=dict)
    """View or materialized view of the schema -> (security_invoker, relations of the schema it
    reads directly). A continuous aggregate counts as reading its source hypertable."""
    routines: tuple[RoutineInfo, ...] = ()
    """TimescaleDB's routines and the rule PUBLIC keeps (:mod:`tsaccess.catalog.routines`)."""
    chunk_mark: tuple[str, frozenset[Grant]] | None = None
    """(owner, ACL) of the chunk trigger's mark sequence in the schema, when it exists."""

    def chunks_of(self, parent: str) -> tuple[ChunkInfo, ...]:
        return tuple(c for c in self.chunks if c.parent == parent)

    def jobs_for(self, table: str, proc: str) -> tuple[JobInfo, ...]:
        return tuple(j for j in self.jobs if j.hypertable == table and j.proc_name == proc)


def read_timescale(
    conn: psycopg.Connection[Any], schema: str, *, timescaledb: bool = True
) -> TimescaleCatalog:
    """TimescaleDB's objects for the tables of ``schema``: one query (two when the user
    attributes of row slices exist). ``timescaledb``: the extension exists in the database
    (:attr:`tsaccess.catalog.CatalogSnapshot.timescaledb`); without it only row-level security
    and the attributes are read."""
    ts_part = _TS_PART if timescaledb else ""
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        row = cur.execute(
            _BASE_PART + ts_part,
            (schema, schema, SLICE_SCHEMA, SLICE_SCHEMA, ATTRIBUTE_FUNCTION, schema)
            + ((schema,) * 9 if timescaledb else ()),
        ).fetchone()
        assert row is not None
        queries = 1
        rls_j, byp_j, pol_j, evt_j, ns_j, fn_j, has_table, views_j = row[:8]
        attributes: frozenset[tuple[str, str, str]] = frozenset()
        if has_table:
            queries += 1
            attributes = frozenset(
                (r[0], r[1], r[2])
                for r in cur.execute(
                    sql.SQL("SELECT username, attribute, value FROM {}").format(
                        sql.Identifier(SLICE_SCHEMA, ATTRIBUTE_TABLE)
                    )
                )
            )
    pols: dict[str, set[str]] = defaultdict(set)
    for table, name in pol_j or ():
        pols[table].add(name)
    base = TimescaleCatalog(
        rls={r[0]: bool(r[1]) for r in rls_j or ()},
        policies={k: frozenset(v) for k, v in pols.items()},
        bypassrls={k: bool(v) for k, v in (byp_j or {}).items()},
        slice_schema=(ns_j[0], _grants(ns_j[1])) if ns_j else None,
        attribute_table=bool(has_table),
        attribute_function=(fn_j[0], _grants(fn_j[1])) if fn_j else None,
        attributes=attributes,
        event_triggers=frozenset(evt_j or ()),
        queries=queries,
        view_sources=_views(views_j),
    )
    if not timescaledb:
        return base
    cagg_j, chunk_j, comp_j, job_j, cagg_src_j, routines_j, mark_j = row[8:]
    aggregates = {r[0]: AggregateInfo(r[0], bool(r[1]), (r[2], r[3])) for r in cagg_j or ()}
    meta: dict[tuple[str, str, str], tuple[str, str]] = {}
    acl: dict[tuple[str, str, str], set[Grant]] = defaultdict(set)
    for parent, kind, sch, name, owner, grantee, priv in chunk_j or ():
        key = (parent, sch, name)
        meta[key] = (owner, kind)
        if grantee is not None and grantee != owner:
            acl[key].add((grantee, priv))
    chunks = tuple(
        ChunkInfo(p, s, n, meta[p, s, n][0], frozenset(acl[p, s, n]), meta[p, s, n][1])
        for p, s, n in sorted(meta)
    )
    seg: dict[str, list[str]] = {}
    order: dict[str, list[str]] = defaultdict(list)
    for table, att, si, oi, asc, nf in comp_j or ():
        seg.setdefault(table, [])
        if si is not None:
            seg[table].append(att)
        if oi is not None:
            order[table].append(_order_item(att, bool(asc), bool(nf)))
    jobs = tuple(JobInfo(r[0], r[1], r[2], r[3], r[4] or {}, r[5]) for r in job_j or ())
    views = dict(base.view_sources)
    for view, source in cagg_src_j or ():
        views[view] = (False, frozenset({source}))
    return replace(
        base,
        view_sources=views,
        chunks=chunks,
        compression={t: (tuple(seg[t]), tuple(order[t])) for t in seg},
        jobs=jobs,
        aggregates=aggregates,
        routines=routines_from(routines_j),
        chunk_mark=(mark_j[0], _grants(mark_j[1])) if mark_j else None,
    )


def _views(items: Any) -> dict[str, tuple[bool, frozenset[str]]]:
    out: dict[str, tuple[bool, set[str]]] = {}
    for view, invoker, source in items or ():
        entry = out.setdefault(view, (bool(invoker), set()))
        if source is not None:
            entry[1].add(source)
    return {k: (v[0], frozenset(v[1])) for k, v in out.items()}


def _grants(items: Any) -> frozenset[Grant]:
    return frozenset((g, p) for g, p in items or () if g is not None)


_ACL = (
    "(SELECT json_agg(json_build_array(CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
    " ELSE pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type))"
    " FROM pg_catalog.aclexplode(coalesce({acl}, pg_catalog.acldefault('{kind}', {owner}))) a)"
)

_BASE_PART = (
    "SELECT"
    " (SELECT json_agg(json_build_array(c.relname, c.relrowsecurity))"
    "  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = %s AND c.relkind IN ('r', 'p')),"
    " (SELECT json_object_agg(rolname, rolbypassrls) FROM pg_catalog.pg_roles),"
    " (SELECT json_agg(json_build_array(tablename, policyname)) FROM pg_catalog.pg_policies"
    "  WHERE schemaname = %s),"
    " (SELECT json_agg(evtname) FROM pg_catalog.pg_event_trigger),"
    " (SELECT json_build_array(pg_catalog.pg_get_userbyid(n.nspowner), "
    + _ACL.format(acl="n.nspacl", kind="n", owner="n.nspowner")
    + ") FROM pg_catalog.pg_namespace n WHERE n.nspname = %s),"
    " (SELECT json_build_array(p.prosrc, "
    + _ACL.format(acl="p.proacl", kind="f", owner="p.proowner")
    + ") FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
    "  WHERE n.nspname = %s AND p.proname = %s LIMIT 1),"
    f" pg_catalog.to_regclass('{SLICE_SCHEMA}.{ATTRIBUTE_TABLE}') IS NOT NULL,"
    " (SELECT json_agg(json_build_array(v.relname, EXISTS (SELECT FROM"
    "   pg_catalog.unnest(v.reloptions) o WHERE o ~* '^security_invoker=(true|on|yes|1)$'),"
    "   t.relname))"
    "  FROM pg_catalog.pg_class v"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace AND n.nspname = %s"
    "  JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid"
    "  LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass"
    "   AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass"
    "   AND d.refobjid <> v.oid"
    "  LEFT JOIN pg_catalog.pg_class t ON t.oid = d.refobjid AND t.relnamespace = n.oid"
    "  WHERE v.relkind IN ('v', 'm'))"
)

# children to watch: chunks of the schema's hypertables (and of their compressed hypertables),
# an aggregate's materialized hypertable, its chunks and its internal views
_TS_PART = (
    ", (SELECT json_agg(json_build_array(ca.user_view_name, ca.materialized_only,"
    "   mh.schema_name, mh.table_name)) FROM _timescaledb_catalog.continuous_agg ca"
    "  JOIN _timescaledb_catalog.hypertable mh ON mh.id = ca.mat_hypertable_id"
    "  WHERE ca.user_view_schema = %s),"
    " (WITH parents AS ("
    "  SELECT h.id, h.table_name AS parent, 'chunk' AS kind"
    "  FROM _timescaledb_catalog.hypertable h WHERE h.schema_name = %s"
    "  UNION ALL SELECT h.compressed_hypertable_id, h.table_name, 'chunk'"
    "  FROM _timescaledb_catalog.hypertable h"
    "  WHERE h.schema_name = %s AND h.compressed_hypertable_id IS NOT NULL"
    "  UNION ALL SELECT ca.mat_hypertable_id, ca.user_view_name, 'materialized'"
    "  FROM _timescaledb_catalog.continuous_agg ca WHERE ca.user_view_schema = %s),"
    " rels AS ("
    "  SELECT p.parent, p.kind, c.schema_name, c.table_name"
    "  FROM parents p JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = p.id"
    "  UNION ALL SELECT p.parent, p.kind, h.schema_name, h.table_name FROM parents p"
    "  JOIN _timescaledb_catalog.hypertable h ON h.id = p.id"
    "  WHERE p.kind = 'materialized' OR h.table_name <> p.parent"
    "  UNION ALL SELECT ca.user_view_name, 'view', v.s, v.n"
    "  FROM _timescaledb_catalog.continuous_agg ca,"
    "  LATERAL (VALUES (ca.direct_view_schema, ca.direct_view_name),"
    "   (ca.partial_view_schema, ca.partial_view_name)) v(s, n)"
    "  WHERE ca.user_view_schema = %s)"
    "  SELECT json_agg(json_build_array(r.parent, r.kind, r.schema_name, r.table_name,"
    "   pg_catalog.pg_get_userbyid(k.relowner), CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
    "   ELSE pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type))"
    "  FROM rels r JOIN pg_catalog.pg_namespace n ON n.nspname = r.schema_name"
    "  JOIN pg_catalog.pg_class k ON k.relnamespace = n.oid AND k.relname = r.table_name"
    "  LEFT JOIN LATERAL pg_catalog.aclexplode("
    "   coalesce(k.relacl, pg_catalog.acldefault('r', k.relowner))) a ON true),"
    " (SELECT json_agg(json_build_array(hypertable_name, attname, segmentby_column_index,"
    "   orderby_column_index, orderby_asc, orderby_nullsfirst) ORDER BY hypertable_name,"
    "   segmentby_column_index NULLS LAST, orderby_column_index NULLS LAST)"
    "  FROM timescaledb_information.compression_settings WHERE hypertable_schema = %s),"
    " (SELECT json_agg(json_build_array(job_id, proc_schema, proc_name, hypertable_name,"
    "   config, schedule_interval::text)) FROM timescaledb_information.jobs),"
    " (SELECT json_agg(json_build_array(ca.user_view_name, h.table_name))"
    "  FROM _timescaledb_catalog.continuous_agg ca"
    "  JOIN _timescaledb_catalog.hypertable h ON h.id = ca.raw_hypertable_id"
    "  WHERE ca.user_view_schema = %s AND h.schema_name = %s),"
    " (SELECT json_agg(d) FROM (" + derive_sql().replace("%", "%%") + ") " + ROW_COLUMNS + "),"
    " (SELECT json_build_array(pg_catalog.pg_get_userbyid(k.relowner), "
    + _ACL.format(acl="k.relacl", kind="s", owner="k.relowner")
    + ") FROM pg_catalog.pg_class k JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace"
    "  WHERE n.nspname = %s AND k.relname = 'tsaccess_chunk_mark' AND k.relkind = 'S')"
)


def _order_item(col: str, asc: bool, nulls_first: bool) -> str:
    """``col DESC`` with TimescaleDB's defaults left out (ASC NULLS LAST, DESC NULLS FIRST)."""
    out = col + ("" if asc else " DESC")
    if nulls_first == asc:  # not the default for this direction
        out += " NULLS FIRST" if nulls_first else " NULLS LAST"
    return out
