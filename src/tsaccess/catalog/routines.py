"""TimescaleDB's routines, read from the catalog, and which of them PUBLIC must keep.

TimescaleDB installs 268 routines (2.27.2), every one executable by PUBLIC (``proacl`` NULL).
Some change data, chunks or jobs without checking who calls them: any login user can drop the
chunks of any hypertable (the audit table's too), freeze them, crash the server
(``policy_recompression``) or create relations named by the caller (``create_chunk``). The
rule below derives from the catalog, every time, which routines PUBLIC keeps:

* in TimescaleDB's internal schemas (:data:`INTERNAL_SCHEMAS`) only those normal use runs with
  the caller's privileges: named by a view that belongs to the extension or to a continuous
  aggregate (``pg_depend``), named in the body of one of the extension's SQL or PL/pgSQL
  routines outside those schemas (the size API), and, transitively, named in the body of a
  routine kept so (:data:`DERIVE_SQL`, column ``keep``). Trigger, event-trigger, type I/O and
  aggregate support functions are not EXECUTE-checked when they fire, so none is needed;
* in the schema the extension is installed in (its public API, which checks ownership itself)
  all but :data:`UNCHECKED_API`, the API routines that change state without an ownership check.

Job entry points (a procedure or function taking ``(integer, jsonb)`` and a check function
taking ``(jsonb)`` in ``_timescaledb_functions``, every routine a job of this database names,
and what their bodies call: column ``job``) run as the job's owner; the plan grants them (and
``add_job``) to the tables' owners when those are not superusers.

A view, default or function made by someone else does not make a routine kept: only the
extension's own objects and continuous aggregates count, so no user can widen the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

__all__ = [
    "DERIVE_SQL",
    "INTERNAL_SCHEMAS",
    "ROW_COLUMNS",
    "UNCHECKED_API",
    "RoutineInfo",
    "derive_sql",
    "read_routines",
    "routines_from",
]

INTERNAL_SCHEMAS = ("_timescaledb_functions", "_timescaledb_internal", "timescaledb_experimental")
"""TimescaleDB's internal schemas: every routine there loses PUBLIC unless normal use needs it."""

UNCHECKED_API = ("add_job", "get_telemetry_report")
"""Routines of the extension's public API that change state without an ownership check
(2.27.2): ``add_job`` (a job of the caller's running any routine it may execute) and
``get_telemetry_report`` (writes the catalog, reports every hypertable's size). Found by the
sweep in ``tests/integration/test_timescale_routines.py``, which fails when TimescaleDB's
answer changes (a routine added to or removed from this set)."""

DERIVE_SQL = """
WITH RECURSIVE
ext AS (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'timescaledb'),
members AS (
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext
  WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = ext.oid
    AND d.deptype = 'e'),
surface AS (
  SELECT p.oid, n.nspname, p.proname, p.prokind, l.lanname, p.prosrc, p.proowner, p.proacl,
         pg_catalog.oidvectortypes(p.proargtypes) AS args, p.prorettype,
         n.nspname = ANY ({internal}) AS internal
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang
  WHERE n.nspname = ANY ({internal})
     OR p.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_proc'::pg_catalog.regclass)),
calls AS (
  SELECT o.oid AS caller, i.oid AS callee
  FROM surface o JOIN surface i ON i.internal AND i.oid <> o.oid
   AND pg_catalog.strpos(o.prosrc, i.proname) > 0
   AND o.prosrc OPERATOR(pg_catalog.~*)
       (i.nspname OPERATOR(pg_catalog.||) '\\s*\\.\\s*"?' OPERATOR(pg_catalog.||) i.proname
        OPERATOR(pg_catalog.||) '"?\\s*\\(')
  WHERE o.lanname IN ('sql', 'plpgsql')),
aggregate_views AS (
  SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', x.s, x.v)) AS rel
  FROM _timescaledb_catalog.continuous_agg ca,
  LATERAL (VALUES (ca.user_view_schema, ca.user_view_name),
                  (ca.partial_view_schema, ca.partial_view_name),
                  (ca.direct_view_schema, ca.direct_view_name)) x(s, v)),
keep AS (
  SELECT d.refobjid AS oid, 'used by view ' || r.ev_class::pg_catalog.regclass::text AS why
  FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
  WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
    AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    AND d.refobjid IN (SELECT oid FROM surface WHERE internal)
    AND (r.ev_class IN (SELECT objid FROM members
                        WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass)
         OR r.ev_class IN (SELECT rel FROM aggregate_views))
  UNION SELECT c.callee, 'called by ' || c.caller::pg_catalog.regprocedure::text
  FROM calls c JOIN surface o ON o.oid = c.caller AND NOT o.internal
  UNION SELECT c.callee, 'called by ' || c.caller::pg_catalog.regprocedure::text
  FROM keep k JOIN calls c ON c.caller = k.oid),
job AS (
  SELECT s.oid, 'job entry point' AS why FROM surface s
  WHERE s.nspname = '_timescaledb_functions'
    AND (s.args = 'integer, jsonb' OR (s.prokind = 'f' AND s.args = 'jsonb'
         AND s.prorettype = 'pg_catalog.void'::pg_catalog.regtype))
  UNION SELECT pg_catalog.to_regprocedure(pg_catalog.format('%I.%I(integer, jsonb)',
                 j.proc_schema, j.proc_name))::oid, 'job ' || j.id
  FROM _timescaledb_config.bgw_job j
  UNION SELECT pg_catalog.to_regprocedure(pg_catalog.format('%I.%I(jsonb)',
                 j.check_schema, j.check_name))::oid, 'check of job ' || j.id
  FROM _timescaledb_config.bgw_job j WHERE j.check_name IS NOT NULL
  UNION SELECT c.callee, 'called by ' || c.caller::pg_catalog.regprocedure::text
  FROM job k JOIN calls c ON c.caller = k.oid),
keep_why AS (
  SELECT oid, pg_catalog.string_agg(DISTINCT why, '; ' ORDER BY why) AS why FROM keep GROUP BY oid),
job_why AS (
  SELECT oid, pg_catalog.string_agg(DISTINCT why, '; ' ORDER BY why) AS why FROM job GROUP BY oid)
SELECT s.nspname::text, s.proname::text, s.args, s.prokind::text, s.internal,
  pg_catalog.pg_get_userbyid(s.proowner)::text,
  (SELECT pg_catalog.array_agg(ARRAY[CASE WHEN a.grantee = 0 THEN 'PUBLIC'
          ELSE pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type])
   FROM pg_catalog.aclexplode(coalesce(s.proacl, pg_catalog.acldefault('f', s.proowner))) a
   WHERE a.grantee <> s.proowner),
  CASE WHEN s.internal THEN k.why
       WHEN s.proname <> ALL ({unchecked}) THEN 'public API' END,
  j.why,
  EXISTS (SELECT FROM pg_catalog.aclexplode(coalesce(s.proacl,
          pg_catalog.acldefault('f', s.proowner))) a
          WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
FROM surface s LEFT JOIN keep_why k ON k.oid = s.oid LEFT JOIN job_why j ON j.oid = s.oid
"""
"""The surface and the rule in one query; ``{internal}`` and ``{unchecked}`` are ``text[]``
literals (:func:`derive_sql`)."""


def derive_sql() -> str:
    """:data:`DERIVE_SQL` with the schema and API lists filled in."""
    return DERIVE_SQL.format(
        internal=_text_array(INTERNAL_SCHEMAS), unchecked=_text_array(UNCHECKED_API)
    )


def _text_array(items: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join("'" + i.replace("'", "''") + "'" for i in items) + "]::text[]"


@dataclass(frozen=True)
class RoutineInfo:
    """One routine of TimescaleDB's surface and what the rule says about it."""

    schema: str
    name: str
    args: str
    """The argument types as the server prints them (``regclass, boolean``)."""
    kind: str
    """``f`` function, ``p`` procedure, ``a`` aggregate, ``w`` window function."""
    internal: bool
    """In one of :data:`INTERNAL_SCHEMAS` (else the extension's public API)."""
    owner: str
    grants: frozenset[tuple[str, str]]
    """(grantee, privilege) besides the owner's; ``PUBLIC`` for everyone."""
    keep: str | None
    """Why PUBLIC keeps EXECUTE (None: revoked from PUBLIC)."""
    job: str | None
    """Why the tables' owners need it for their jobs (None: they do not)."""

    @property
    def signature(self) -> str:
        """``schema.name(types)`` (for messages; statements quote it themselves)."""
        return f"{self.schema}.{self.name}({self.args})"

    @property
    def public(self) -> bool:
        """PUBLIC may execute it now."""
        return ("PUBLIC", "EXECUTE") in self.grants


ROW_COLUMNS = "d(schema, name, args, kind, internal, owner, grants, keep, job, public)"
"""Names for :data:`DERIVE_SQL`'s columns (``SELECT ... FROM (<derive_sql()>) <ROW_COLUMNS>``)."""


def routines_from(rows: Any) -> tuple[RoutineInfo, ...]:
    """:class:`RoutineInfo` from :data:`DERIVE_SQL`'s rows (tuples, or JSON objects named as in
    :data:`ROW_COLUMNS`), in a stable order."""
    out: list[RoutineInfo] = []
    for r in rows or ():
        v = [r[k] for k in _KEYS] if isinstance(r, dict) else list(r)
        out.append(
            RoutineInfo(
                v[0],
                v[1],
                v[2],
                v[3],
                bool(v[4]),
                v[5],
                frozenset((g, p) for g, p in v[6] or ()),
                v[7],
                v[8],
            )
        )
    return tuple(sorted(out, key=lambda r: (not r.internal, r.schema, r.name, r.args)))


_KEYS = ("schema", "name", "args", "kind", "internal", "owner", "grants", "keep", "job", "public")


def read_routines(conn: psycopg.Connection[Any]) -> tuple[RoutineInfo, ...]:
    """TimescaleDB's routines and the rule's verdict on each (empty without the extension).

    The plan reads the same through :func:`tsaccess.catalog.read_timescale`."""
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        (present,) = cur.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'timescaledb')"
        ).fetchone() or (False,)
        if not present:
            return ()
        return routines_from(cur.execute(derive_sql().encode()).fetchall())
