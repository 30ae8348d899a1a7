"""Call every TimescaleDB routine as a role and record what changed (the sweep of issue 21).

The surface comes from the catalog: every routine of TimescaleDB's internal schemas and every
member of the extension (:data:`SURFACE_SQL`), never a list. Arguments are synthesised from each
argument's type and name for the hypertables, chunks (plain, frozen, compressed, partial),
continuous aggregate, jobs and audit tables found in the database (:func:`discover`).

One trial is one transaction on a superuser connection, always rolled back::

    BEGIN; SET LOCAL statement_timeout, lock_timeout; <counters>; SET LOCAL ROLE r
    SELECT|CALL f(args); RESET ROLE; <counters>; ROLLBACK

The counters are ``pg_stat_xact_all_tables`` (rows inserted, updated and deleted by this
transaction in every table, the catalogs and TimescaleDB's catalog included): a call that
changed rows, chunks, chunk status, ACLs, jobs or the catalog moved them. Outcomes: ``changed``,
``ok`` (nothing changed), ``refused`` (a privilege or ownership error), ``error``,
``uncallable`` (no value can be made for an argument).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tsaccess.catalog.routines import INTERNAL_SCHEMAS

SURFACE_SQL = """
SELECT p.oid::int, n.nspname::text, p.proname::text, p.prokind::text,
       pg_catalog.pg_get_function_identity_arguments(p.oid), p.pronargdefaults,
       p.proargtypes::regtype[]::text[],
       coalesce(p.proallargtypes::regtype[]::text[], p.proargtypes::regtype[]::text[]),
       p.proargmodes::text[], p.proargnames::text[], p.prorettype::regtype::text
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY (%s)
   OR EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e
              ON e.oid = d.refobjid AND e.extname = 'timescaledb'
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e')
ORDER BY 2, 3, 5
"""

# superuser-only and not transactional (src/loader/bgw_interface.c): never called as a superuser
NON_TRANSACTIONAL = frozenset(
    {
        "start_background_workers",
        "stop_background_workers",
        "restart_background_workers",
        "timescaledb_pre_restore",
        "timescaledb_post_restore",
    }
)
_UNCALLABLE = {"internal", "trigger", "event_trigger", "record"}
UNRESOLVED = ("42883", "42725", "42804")
"""SQLSTATEs of a call that does not resolve to the routine (the synthesised arguments do not
fit it): nothing was tried."""

COUNTERS_SQL = (
    "SELECT coalesce(pg_catalog.json_object_agg(s.relid::regclass::text,"
    " ARRAY[s.n_tup_ins, s.n_tup_upd, s.n_tup_del]), '{}')"
    " FROM pg_catalog.pg_stat_xact_all_tables s"
    " WHERE s.n_tup_ins + s.n_tup_upd + s.n_tup_del > 0"
)

_PRIVILEGE = re.compile(
    r"permission denied|must be (the )?owner|must be superuser|must have .*privilege|"
    r"insufficient privilege|only superuser|owner of|not owner|must be a member|"
    r"superuser privilege|must have privileges of|can only be called by",
    re.I,
)


@dataclass(frozen=True)
class Routine:
    oid: int
    schema: str
    name: str
    kind: str
    identity: str
    ndefaults: int
    in_types: tuple[str, ...]
    all_types: tuple[str, ...]
    modes: tuple[str, ...]
    names: tuple[str, ...]
    rettype: str

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}({self.identity})"

    @property
    def internal(self) -> bool:
        return self.schema in INTERNAL_SCHEMAS


def surface(conn: psycopg.Connection[Any]) -> list[Routine]:
    rows = conn.execute(SURFACE_SQL, (list(INTERNAL_SCHEMAS),)).fetchall()
    return [
        Routine(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5] or 0,
            tuple(r[6] or ()),
            tuple(r[7] or ()),
            tuple(r[8] or ()),
            tuple(r[9] or ()),
            r[10],
        )
        for r in rows
    ]


@dataclass
class Targets:
    """What the sweep points routines at (labels -> qualified names and ids)."""

    rel: dict[str, str] = field(default_factory=dict)
    relid: dict[str, int] = field(default_factory=dict)
    ht_ids: dict[str, int] = field(default_factory=dict)
    chunk_ids: dict[str, int] = field(default_factory=dict)
    job_ids: list[int] = field(default_factory=list)
    job_configs: dict[str, list[str]] = field(default_factory=dict)
    dim_ids: list[int] = field(default_factory=list)
    time_col: dict[str, str] = field(default_factory=dict)
    slices: dict[str, str] = field(default_factory=dict)
    index: str = ""
    index_chunk: str = ""
    regproc: str = ""


def _one(conn: psycopg.Connection[Any], query: str, *args: Any) -> Any:
    row = conn.execute(query, args or None).fetchone()
    return row[0] if row else None


def discover(conn: psycopg.Connection[Any], plain: str, compressed: str, audit: str) -> Targets:
    """Targets read from the catalog: ``plain``, ``compressed`` and ``audit`` are hypertables
    (``schema.name``); the aggregate, materialized and compressed hypertables are found."""
    t = Targets()
    for hid, name, cstate, is_mat in conn.execute(
        "SELECT h.id, format('%I.%I', h.schema_name, h.table_name), h.compression_state,"
        " EXISTS (SELECT FROM _timescaledb_catalog.continuous_agg a"
        "  WHERE a.mat_hypertable_id = h.id) FROM _timescaledb_catalog.hypertable h ORDER BY h.id"
    ):
        labels = [
            lb
            for lb, n in (("HT_PLAIN", plain), ("HT_COMP", compressed), ("AUDIT", audit))
            if n == name
        ]
        labels = labels or ["MATHT" if is_mat else "COMPHT" if cstate == 2 else "HT_OTHER"]
        for label in labels:
            t.rel.setdefault(label, name)
            t.ht_ids.setdefault(label, hid)
    cagg = _one(
        conn,
        "SELECT format('%%I.%%I', user_view_schema, user_view_name)"
        " FROM _timescaledb_catalog.continuous_agg WHERE mat_hypertable_id = %s",
        t.ht_ids.get("MATHT"),
    )
    if cagg:
        t.rel["CAGG"] = cagg

    def chunk(label: str, ht: str, cond: str = "true", order: str = "c.id") -> None:
        if ht not in t.ht_ids:
            return
        row = conn.execute(
            "SELECT c.id, format('%%I.%%I', c.schema_name, c.table_name)"
            " FROM _timescaledb_catalog.chunk c WHERE c.hypertable_id = %s AND "
            + cond
            + " ORDER BY "
            + order
            + " LIMIT 1",
            (t.ht_ids[ht],),
        ).fetchone()
        if row:
            t.chunk_ids[label], t.rel[label] = row

    chunk("CH_PLAIN", "HT_PLAIN", "c.status = 0")
    chunk("CH_FROZEN", "HT_PLAIN", "c.status & 4 = 4")
    chunk("CH_PLAIN_NEW", "HT_PLAIN", order="c.id DESC")
    chunk("CH_COMP", "HT_COMP", "c.status & 1 = 1 AND c.status & 8 = 0")
    chunk("CH_PARTIAL", "HT_COMP", "c.status & 9 = 9")
    chunk("CH_UNCOMP", "HT_COMP", "c.status & 1 = 0")
    chunk("CH_COMPRESSED", "COMPHT")
    chunk("CH_MAT", "MATHT")
    chunk("CH_AUDIT", "AUDIT")
    for label, name in t.rel.items():
        t.relid[label] = _one(conn, "SELECT %s::regclass::oid::int", name)
    t.job_ids = [
        r[0] for r in conn.execute("SELECT id FROM _timescaledb_config.bgw_job ORDER BY id")
    ]
    for proc, cfg in conn.execute(
        "SELECT proc_name, config::text FROM _timescaledb_config.bgw_job WHERE config IS NOT NULL"
    ):
        t.job_configs.setdefault(proc, []).append(cfg)
    t.dim_ids = [r[0] for r in conn.execute("SELECT id FROM _timescaledb_catalog.dimension")]
    for label in ("HT_PLAIN", "AUDIT", "HT_COMP"):
        col, length = conn.execute(
            "SELECT column_name, interval_length FROM _timescaledb_catalog.dimension"
            " WHERE hypertable_id = %s ORDER BY id LIMIT 1",
            (t.ht_ids[label],),
        ).fetchone()
        t.time_col[label] = col
        lo = _one(
            conn,
            "SELECT min(s.range_start) FROM _timescaledb_catalog.dimension_slice s"
            " JOIN _timescaledb_catalog.dimension d ON d.id = s.dimension_id"
            " WHERE d.hypertable_id = %s",
            t.ht_ids[label],
        )
        t.slices[label] = json.dumps({col: [lo - 2 * length, lo - length]})  # a new chunk
    t.index = _one(
        conn,
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
        t.rel["HT_PLAIN"],
    )
    t.index_chunk = _one(
        conn,
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
        t.rel["CH_PLAIN"],
    )
    t.regproc = _one(
        conn, "SELECT p.oid::regproc::text FROM pg_proc p WHERE p.prokind = 'p' LIMIT 1"
    )
    return t


def _lit(v: str, typ: str) -> str:
    return sql.Literal(v).as_string(None) + "::" + typ


def candidates(t: Targets, r: Routine, argname: str, typ: str) -> list[str] | None:
    """SQL expressions for one argument (None: no value can be made)."""
    a = (argname or "").lower().lstrip("_")

    def rels(*labels: str, cast: str = "regclass") -> list[str]:
        return [_lit(t.rel[x], cast) for x in labels if x in t.rel]

    chunks = (
        "CH_PLAIN",
        "CH_AUDIT",
        "CH_COMP",
        "CH_PARTIAL",
        "CH_COMPRESSED",
        "CH_MAT",
        "CH_FROZEN",
        "CH_UNCOMP",
        "CH_PLAIN_NEW",
    )
    hts = ("HT_PLAIN", "AUDIT", "HT_COMP", "CAGG", "MATHT", "COMPHT", "HT_OTHER")
    if typ == "regclass":
        if "index" in a:
            return [_lit(t.index, typ), _lit(t.index_chunk, typ)]
        if "cagg" in a or "continuous" in a:
            return rels("CAGG", "MATHT", "HT_COMP")
        if "chunk" in a or (a == "" and "chunk" in r.name):
            return rels(*chunks) + rels("HT_PLAIN")
        return rels(*hts)
    if typ == "regclass[]":
        return [f"ARRAY[{x}]" for x in rels("CH_PLAIN", "CH_COMP")] + [
            "ARRAY[" + ", ".join(rels("CH_PLAIN", "CH_PLAIN_NEW")) + "]"
        ]
    if typ == "oid":
        return [
            str(t.relid[x]) for x in ("CH_PLAIN", "CH_AUDIT", "HT_PLAIN", "AUDIT") if x in t.relid
        ]
    if typ == "jsonb":
        if "slice" in a:
            return [_lit(t.slices[x], typ) for x in ("HT_PLAIN", "AUDIT", "HT_COMP")]
        if "config" in a:
            own = [c for p, cs in t.job_configs.items() if p in r.name or r.name in p for c in cs]
            ids = t.ht_ids
            crafted = [
                {"hypertable_id": ids["AUDIT"], "drop_after": "1 day"},
                {"hypertable_id": ids["HT_PLAIN"], "drop_after": "1 day"},
                {"hypertable_id": ids["HT_COMP"], "compress_after": "1 day"},
                {
                    "mat_hypertable_id": ids.get("MATHT", 0),
                    "start_offset": None,
                    "end_offset": None,
                },
                {"drop_after": "1 second", "max_successes_per_job": 0, "max_failures_per_job": 0},
            ]
            return [_lit(c, typ) for c in own] + [_lit(json.dumps(c), typ) for c in crafted]
        return ["'{}'::jsonb"]
    if typ in ("integer", "smallint"):
        if "job" in a:
            return [str(j) for j in t.job_ids] + ["-1"]
        if "hypertable" in a or a == "htid":
            return [
                str(t.ht_ids[x])
                for x in ("HT_PLAIN", "AUDIT", "HT_COMP", "MATHT", "COMPHT")
                if x in t.ht_ids
            ]
        if "dimension" in a:
            return [str(i) for i in t.dim_ids]
        if "chunk" in a:
            return [
                str(t.chunk_ids[x]) for x in ("CH_PLAIN", "CH_AUDIT", "CH_COMP") if x in t.chunk_ids
            ]
        return ["1", "0"]
    if typ == "bigint":
        if "time" in a or "usec" in a or "coord" in a:
            return ["(extract(epoch from now()) * 1000000)::bigint", "0"]
        return ["0", "1048576"]
    if typ == "bigint[]":
        return ["ARRAY[0, 1]::bigint[]"]
    if typ in ("double precision", "real", "numeric"):
        return [f"0.5::{typ}", f"10::{typ}"]
    if typ == "boolean":
        return ["true", "false"]
    if typ == "interval":
        return ["'1 day'::interval", "'30 days'::interval"]
    if typ in ("timestamp with time zone", "timestamp without time zone", "date"):
        return [f"(now() - '30 days'::interval)::{typ}", f"now()::{typ}", f"'2000-01-01'::{typ}"]
    if typ in ("tstzrange", "tsrange", "anyrange"):
        rt, base = ("tsrange", "timestamp") if typ == "tsrange" else ("tstzrange", "timestamptz")
        return [f"{rt}(now()::{base} - '1 day'::interval, now()::{base})"]
    if typ in ("anyelement", '"any"'):
        if any(k in a for k in ("newer", "created_after", "created_before", "end")):
            return ["NULL::interval", "'1 day'::interval", "(now() - '30 days'::interval)"]
        if any(
            k in a
            for k in (
                "older",
                "after",
                "before",
                "offset",
                "start",
                "interval",
                "width",
                "range",
                "lag",
            )
        ):
            return ["'1 day'::interval", "(now() - '30 days'::interval)", "NULL::interval"]
        return ["'1 day'::interval", "now()", "1"]
    if typ == "anyarray":
        return ["ARRAY[1, 2]"]
    if typ in ("text", "name", "character varying", "cstring"):
        cast = "" if typ == "cstring" else "::" + typ
        if typ == "cstring":
            return None  # type input functions
        if "tablespace" in a:
            return [f"'pg_default'{cast}"]
        if "schema" in a:
            return [f"'{s}'{cast}" for s in ("public", "_timescaledb_internal", "tsaccess_audit")]
        if "prefix" in a:
            return [f"'sw_prefix'{cast}"]
        if "table" in a or a == "relname":
            return [f"'sw_new_rel'{cast}", _lit(t.rel["CH_AUDIT"].split(".")[-1], typ)]
        if "column" in a or a in ("attr_name", "attname"):
            return [_lit(t.time_col["HT_PLAIN"], typ), f"'department'{cast}"]
        if "index" in a:
            return [_lit(t.index.split(".")[-1], typ)]
        if a == "query":
            return [
                _lit(
                    f"SELECT time_bucket('1 hour', time) AS b FROM {t.rel['HT_COMP']} GROUP BY 1",
                    typ,
                )
            ]
        if "zone" in a or a == "tz":
            return [f"'UTC'{cast}"]
        return [f"'x'{cast}", _lit(t.time_col["HT_PLAIN"], typ)]
    if typ in ("text[]", "name[]"):
        return [f"ARRAY['department']::{typ}"]
    if typ == "regproc":
        return [_lit(t.regproc, typ)]
    if typ == "regtype":
        return ["'timestamptz'::regtype", "'integer'::regtype"]
    if typ == "uuid":
        return ["'00000000-0000-0000-0000-000000000000'::uuid"]
    if typ == "bytea":
        return ["'\\x00'::bytea"]
    if typ == "_timescaledb_internal.dimension_info":
        col = _lit(t.time_col["HT_PLAIN"], "name")
        return [f"public.by_range({col}, '1 day'::interval)"]
    return None


def argument_sets(t: Targets, r: Routine, limit: int) -> list[list[str]] | str:
    """Up to ``limit`` argument lists (required ones first), or why none can be made."""
    if r.rettype in ("trigger", "event_trigger"):
        return f"returns {r.rettype}"
    types = r.all_types if r.kind == "p" and r.modes else r.in_types
    cand: list[list[str]] = []
    for i, typ in enumerate(types):
        mode = r.modes[i] if r.modes else "i"
        if mode == "t" or (mode == "o" and r.kind != "p"):
            continue
        if mode == "o":
            cand.append(["NULL"])
            continue
        if typ in _UNCALLABLE:
            return f"argument of type {typ}"
        c = candidates(t, r, r.names[i] if i < len(r.names) else "", typ)
        if not c:
            return f"no value for {typ}"
        cand.append(["VARIADIC " + x for x in c] if mode == "v" else c)
    if not cand:
        return [[]]
    sets: list[list[str]] = []

    def add(s: list[str]) -> None:
        if s not in sets and len(sets) < limit:
            sets.append(s)

    required = cand[: len(cand) - r.ndefaults] if 0 < r.ndefaults < len(cand) else None
    if required:
        for k in range(max(len(c) for c in required)):
            add([c[k % len(c)] for c in required])
    for k in range(max(len(c) for c in cand)):
        add([c[k % len(c)] for c in cand])
    for s in itertools.islice(itertools.product(*cand), 200):
        add(list(s))
    return sets


def call_sql(r: Routine, args: list[str]) -> str:
    name = sql.Identifier(r.schema, r.name).as_string(None)
    return f"{'CALL' if r.kind == 'p' else 'SELECT'} {name}({', '.join(args)})"


@dataclass(frozen=True)
class Outcome:
    statement: str
    outcome: str
    """changed, ok, refused, error."""
    changed: tuple[str, ...] = ()
    """``table:+ins~upd-del`` per table whose rows moved."""
    error: str = ""


def _diff(before: dict[str, list[int]], after: dict[str, list[int]]) -> tuple[str, ...]:
    out = []
    for rel, counts in sorted(after.items()):
        d = [a - b for a, b in zip(counts, before.get(rel, [0, 0, 0]), strict=True)]
        if any(d):
            out.append(f"{rel}:+{d[0]}~{d[1]}-{d[2]}")
    return tuple(out)


def _rows(conn: psycopg.Connection[Any], statements: str) -> Any:
    """The value of the one SELECT among ``statements`` (one round trip)."""
    cur = conn.execute(statements.encode())
    while cur.description is None and cur.nextset():
        pass
    row = cur.fetchone()
    return row[0] if row else None


def trial(conn: psycopg.Connection[Any], role: str, statement: str) -> Outcome:
    """One call as ``role`` (``conn``: a superuser in autocommit), always rolled back."""
    role_sql = sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)).as_string(conn)
    before = _rows(
        conn,
        "BEGIN; SET LOCAL statement_timeout = '10s'; SET LOCAL lock_timeout = '2s';"
        f" SET LOCAL client_min_messages = error; {COUNTERS_SQL}; {role_sql}",
    )
    try:
        conn.execute(statement.encode()).fetchmany(1)
    except psycopg.Error as exc:
        conn.execute("ROLLBACK")
        state = exc.diag.sqlstate or ""
        why = f"{state} {(exc.diag.message_primary or str(exc))[:200]}"
        refused = state == "42501" or bool(_PRIVILEGE.search(str(exc)))
        return Outcome(statement, "refused" if refused else "error", error=why)
    after = _rows(conn, f"RESET ROLE; {COUNTERS_SQL}")
    conn.execute("ROLLBACK")
    changed = _diff(before, after)
    return Outcome(statement, "changed" if changed else "ok", changed)


def kinds(changed: tuple[str, ...]) -> list[str]:
    """What moved, in the issue's words: rows, chunks, jobs, catalog, relations, ACLs."""
    out: set[str] = set()
    for item in changed:
        rel, counts = item.rsplit(":", 1)
        if "bgw_job" in rel:
            out.add("jobs")
        elif rel.startswith("_timescaledb_catalog.chunk") or "dimension_slice" in rel:
            out.add("chunks")
        elif rel.startswith("_timescaledb_"):
            out.add("catalog")
        elif rel in ("pg_class", "pg_catalog.pg_class"):
            ins, rest = counts[1:].split("~")
            _, dele = rest.split("-")
            out.add("relations" if int(ins) or int(dele) else "relation ACLs/metadata")
        elif rel.startswith("pg_"):
            out.add("catalog")
        else:
            out.add("rows")
    return sorted(out)
