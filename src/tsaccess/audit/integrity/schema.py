"""The chain's objects in the database, as plan steps of the audit phase.

* ``<data_schema>.tsaccess_chain``: one row per sealed block (its range of transaction ids, the
  audit table's columns it hashed, its leaves, the head after it). Private like the per-row
  data: only the audit owner (and superusers) may read or write it.
* an index on the audit table's ``txid``: a seal finds the rows it has not sealed yet without
  reading the whole table (one index entry per audited *statement*; per-row data gets none).
* ``<schema>.tsaccess_audit_seal(max_rows)``: seals what is committed (``SECURITY DEFINER``,
  owned by the audit owner, executable only by superusers, or by a non-superuser admin who
  applied the plan), and ``<schema>.tsaccess_audit_seal_job(job_id, config)`` for TimescaleDB's
  job scheduler (``add_job``).
* ``<schema>.tsaccess_audit_chain_status(all_blocks)``: what ``tsaccess monitor`` may know of the
  chain without reading it (``SECURITY DEFINER``, executable by the policy's monitoring roles):
  how many blocks, whether they follow each other, the newest seal, whether the oldest and the
  newest block still have their audit rows (with ``all_blocks``: every sealed block's), the oldest
  unsealed row.

Nothing here runs when a row is written: the triggers are unchanged, the hashing happens when a
seal runs. The SQL computes exactly what :mod:`tsaccess.audit.integrity.encoding` specifies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg import sql

from tsaccess.audit.integrity.encoding import CHAIN_FORMAT, SETTINGS
from tsaccess.steps import Step, function_grants, grant_steps

if TYPE_CHECKING:
    from tsaccess.catalog import CatalogSnapshot, FunctionInfo
    from tsaccess.policy import Policy

__all__ = [
    "CHAIN_TABLE",
    "DATA_TABLES_SQL",
    "SEAL_FUNCTION",
    "SEAL_JOB",
    "STATUS_FUNCTION",
    "audit_owned",
    "chain_steps",
    "data_record_sql",
    "seal_function_source",
]

CHAIN_TABLE = "tsaccess_chain"
SEAL_FUNCTION = "tsaccess_audit_seal"
SEAL_JOB = "tsaccess_audit_seal_job"
STATUS_FUNCTION = "tsaccess_audit_chain_status"
DEFAULT_MAX_ROWS = 250_000

DATA_TABLES_SQL = (
    "SELECT c.relname::text FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = {schema} AND c.relkind IN ('r', 'p')"
    " AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid"
    " AND a.attnum > 0 AND NOT a.attisdropped"
    " AND a.attname IN ('audit_id', 'event_time', 'old_data', 'new_data')) = 4"
    ' ORDER BY c.relname COLLATE "C"'
)
"""The per-row data tables: every table of the data schema with the four data columns (also
those of tables no longer audited per row, and any table someone added there)."""


def data_record_sql(alias: str) -> str:
    """The text of a per-row data record (encoding: ``ROW(C(old), C(new))::text``)."""
    strip = "pg_catalog.regexp_replace({}.{}::text, ',+[)]$', ')')"
    return f"ROW({strip.format(alias, 'old_data')}, {strip.format(alias, 'new_data')})::text"


_SEAL_BODY = """
DECLARE
  bound bigint;
  lo bigint;
  hi bigint;
  cut bigint;
  nb bigint;
  nfirst bigint;
  prev bytea;
  cols text[];
  row_sql text;
  groups text := '';
  t text;
  et_min timestamptz;
  et_max timestamptz;
  r record;
  meta bytea;
  h bytea;
BEGIN
  -- one seal at a time (readers go on); then the oldest transaction still running: every row
  -- of a transaction below it is committed (visible now) or never will be
  LOCK TABLE {chain} IN SHARE ROW EXCLUSIVE MODE;
  bound := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint;
  SELECT c.block + 1, c.first_position + c.leaf_count, c.hi_txid, c.head
    INTO nb, nfirst, lo, prev
    FROM {chain} c ORDER BY c.block DESC LIMIT 1;
  IF nb IS NULL THEN
    nb := 0;
    nfirst := 0;
    lo := 0;
    prev := pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex');
  END IF;
  SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) INTO cols
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = {audit_literal}::regclass AND a.attnum > 0 AND NOT a.attisdropped;
  SELECT 'ROW(' || pg_catalog.string_agg('a.' || pg_catalog.quote_ident(c.c), ', ' ORDER BY c.o)
         || ')::text'
    INTO row_sql FROM pg_catalog.unnest(cols) WITH ORDINALITY c (c, o);
  FOR t IN {data_tables} LOOP
    groups := groups || pg_catalog.format(
      ' UNION ALL SELECT a.txid, a.id, 1, %L::text, pg_catalog.sha256('
      || 'pg_catalog.decode(''01'', ''hex'') || pg_catalog.convert_to(%L, ''UTF8'')'
      || ' || pg_catalog.decode(''00'', ''hex'') || pg_catalog.convert_to(a.id::text, ''UTF8'')'
      || ' || pg_catalog.decode(''00'', ''hex'')'
      || ' || pg_catalog.string_agg(x.h, ''''::bytea ORDER BY x.h)), pg_catalog.count(*)'
      || ' FROM (SELECT d.audit_id, d.event_time,'
      || ' pg_catalog.sha256(pg_catalog.convert_to({record}, ''UTF8'')) AS h'
      || ' FROM %I.%I d WHERE d.event_time >= $3 AND d.event_time <= $4'
      -- only when an audit row of the block names the table (as the triggers do): a block of
      -- other tables' statements reads none of its chunks
      || ' AND EXISTS (SELECT FROM a WHERE a.table_name IN (%L, %L))) x'
      || ' JOIN a ON a.id = x.audit_id AND a.event_time = x.event_time'
      || ' GROUP BY a.txid, a.id, a.event_time',
      t, t, {data_schema_literal}, t, t, {schema_literal} || '.' || t);
  END LOOP;
  LOOP
    EXIT WHEN lo >= bound;
    -- at most max_rows audit rows per block, cut between transactions
    EXECUTE 'SELECT a.txid FROM {audit} a WHERE a.txid >= $1 AND a.txid < $2'
            ' ORDER BY a.txid OFFSET $3 LIMIT 1' INTO cut USING lo, bound, max_rows;
    IF cut = lo THEN  -- one transaction wrote more than max_rows rows: it is one block
      EXECUTE 'SELECT pg_catalog.min(a.txid) FROM {audit} a WHERE a.txid > $1 AND a.txid < $2'
        INTO cut USING lo, bound;
    END IF;
    hi := coalesce(cut, bound);
    EXECUTE 'SELECT pg_catalog.min(a.event_time), pg_catalog.max(a.event_time) FROM {audit} a'
            ' WHERE a.txid >= $1 AND a.txid < $2' INTO et_min, et_max USING lo, hi;
    EXIT WHEN et_min IS NULL AND nb > 0;  -- nothing to seal (the first block may be empty)
    EXECUTE 'WITH a AS MATERIALIZED (SELECT a.txid, a.id, a.event_time, a.table_name, ' || row_sql
      || ' AS t FROM {audit} a WHERE a.txid >= $1 AND a.txid < $2),'
      || ' l (txid, id, k, tbl, leaf, n) AS (SELECT a.txid, a.id, 0, '''','
      || ' pg_catalog.sha256(pg_catalog.decode(''00'', ''hex'') || pg_catalog.convert_to(a.t,'
      || ' ''UTF8'')), 0::bigint FROM a' || groups || ')'
      || ' SELECT pg_catalog.count(*) AS leaf_count,'
      || ' pg_catalog.count(*) FILTER (WHERE l.k = 0) AS audit_rows,'
      || ' coalesce(pg_catalog.sum(l.n), 0)::bigint AS data_records,'
      || ' coalesce(pg_catalog.string_agg(l.leaf, ''''::bytea'
      || ' ORDER BY l.txid, l.id, l.k, l.tbl COLLATE "C", l.leaf), ''''::bytea) AS leaves FROM l'
      INTO r USING lo, hi, et_min, et_max;
    meta := pg_catalog.convert_to({format_literal}, 'UTF8') || pg_catalog.int8send(nb)
      || pg_catalog.int8send(nfirst) || pg_catalog.int8send(r.leaf_count)
      || pg_catalog.int8send(r.audit_rows) || pg_catalog.int8send(r.data_records)
      || pg_catalog.int8send(lo) || pg_catalog.int8send(hi)
      || (SELECT pg_catalog.string_agg(pg_catalog.int4send(pg_catalog.octet_length(
                   pg_catalog.convert_to(c.c, 'UTF8'))) || pg_catalog.convert_to(c.c, 'UTF8'),
                 ''::bytea ORDER BY c.o)
          FROM pg_catalog.unnest(cols) WITH ORDINALITY c (c, o));
    h := pg_catalog.sha256(prev || pg_catalog.sha256(meta) || pg_catalog.sha256(r.leaves));
    INSERT INTO {chain} (block, first_position, leaf_count, audit_rows, data_records, lo_txid,
                         hi_txid, columns, leaves, head)
    VALUES (nb, nfirst, r.leaf_count, r.audit_rows, r.data_records, lo, hi, cols, r.leaves, h);
    -- also in the server log: shipped to another machine, a witness the database cannot edit
    RAISE LOG 'tsaccess audit chain of %: block % seals positions % to %, head %',
      pg_catalog.current_database(), nb, nfirst, nfirst + r.leaf_count, pg_catalog.encode(h, 'hex');
    RETURN NEXT nb;
    prev := h;
    nb := nb + 1;
    nfirst := nfirst + r.leaf_count;
    lo := hi;
  END LOOP;
  RETURN;
END
"""

_JOB_BODY = """
BEGIN
  PERFORM {seal}();
END
"""


# Metadata only (never the leaves), and counts through the txid index: cheap enough to run on
# every scrape of the exporter; every block's count only when asked (all_blocks).
_STATUS_BODY = """
DECLARE
  n bigint;
  first_block bigint;
  last_block bigint;
  s bigint;
  hi bigint;
  at timestamptz;
  breaks bigint;
  r record;
  have bigint;
  ok boolean := true;
BEGIN
  SELECT pg_catalog.count(*), pg_catalog.min(c.block), pg_catalog.max(c.block),
         pg_catalog.sum(c.audit_rows)
    INTO n, first_block, last_block, s FROM {chain} c;
  SELECT c.hi_txid, c.sealed_at INTO hi, at FROM {chain} c ORDER BY c.block DESC LIMIT 1;
  SELECT pg_catalog.count(*) INTO breaks FROM (
    SELECT c.block, c.lo_txid, c.first_position,
           pg_catalog.lag(c.block) OVER w AS p_block,
           pg_catalog.lag(c.hi_txid) OVER w AS p_hi,
           pg_catalog.lag(c.first_position + c.leaf_count) OVER w AS p_next
    FROM {chain} c WINDOW w AS (ORDER BY c.block)) x
  WHERE (x.p_block IS NULL AND (x.block <> 0 OR x.lo_txid <> 0 OR x.first_position <> 0))
     OR (x.p_block IS NOT NULL AND (x.block <> x.p_block + 1 OR x.lo_txid <> x.p_hi
                                    OR x.first_position <> x.p_next));
  FOR r IN SELECT c.lo_txid, c.hi_txid, c.audit_rows FROM {chain} c
           WHERE all_blocks OR c.block IN (first_block, last_block) LOOP
    SELECT pg_catalog.count(*) INTO have FROM {audit} a
      WHERE a.txid >= r.lo_txid AND a.txid < r.hi_txid;
    ok := ok AND have = r.audit_rows;
  END LOOP;
  blocks := coalesce(n, 0);
  linked := breaks = 0;
  sealed_rows := coalesce(s, 0);
  hi_txid := coalesce(hi, 0);
  last_sealed := at;
  rows_present := ok;
  IF hi IS NULL THEN
    SELECT pg_catalog.min(a.event_time) INTO oldest_unsealed FROM {audit} a;
  ELSE
    SELECT pg_catalog.min(a.event_time) INTO oldest_unsealed FROM {audit} a WHERE a.txid >= hi;
  END IF;
  RETURN NEXT;
END
"""


def status_function_source(policy: Policy) -> str:
    """The exact ``prosrc`` of the chain status function (compared with the catalog)."""
    return _STATUS_BODY.format(
        chain=_ident(policy.audit.data_schema, CHAIN_TABLE),
        audit=_ident(policy.schema, policy.audit.table),
    )


def _lit(value: str) -> str:
    return sql.Literal(value).as_string(None)


def _ident(*names: str) -> str:
    return sql.Identifier(*names).as_string(None)


def seal_function_source(policy: Policy) -> str:
    """The exact ``prosrc`` of the seal function (compared with the catalog)."""
    audit = _ident(policy.schema, policy.audit.table)
    return _SEAL_BODY.format(
        chain=_ident(policy.audit.data_schema, CHAIN_TABLE),
        audit=audit.replace("'", "''"),  # inside EXECUTE's string literals
        audit_literal=_lit(audit),
        data_tables=DATA_TABLES_SQL.format(schema=_lit(policy.audit.data_schema)),
        data_schema_literal=_lit(policy.audit.data_schema),
        schema_literal=_lit(policy.schema),
        record=data_record_sql("d").replace("'", "''"),
        format_literal=_lit(CHAIN_FORMAT),
    )


_SETTINGS_SQL = " ".join(f"SET {_ident(k)} = {_lit(v)}" for k, v in SETTINGS)
_CONFIG = (
    "search_path=pg_catalog, pg_temp",
    *(f"{k}={v}" for k, v in SETTINGS),
    "work_mem=64MB",  # a block's leaves are sorted in memory
)

_CHAIN_DDL = (
    "CREATE TABLE {} (block bigint PRIMARY KEY, first_position bigint NOT NULL,"
    " leaf_count bigint NOT NULL, audit_rows bigint NOT NULL, data_records bigint NOT NULL,"
    " lo_txid bigint NOT NULL, hi_txid bigint NOT NULL, columns text[] NOT NULL,"
    " leaves bytea NOT NULL, head bytea NOT NULL,"
    " sealed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),"
    " sealed_by text NOT NULL DEFAULT session_user)"
)


def audit_owned(policy: Policy, kind: str, ident: sql.Composable, label: str) -> Step:
    """``ALTER <kind> <ident> OWNER TO`` the audit owner (every object of the audit trail)."""
    return Step(
        sql.SQL("ALTER " + kind + " {} OWNER TO {}").format(
            ident, sql.Identifier(policy.audit.owner)
        ),
        f"{label} owned by {policy.audit.owner}",
        "audit",
    )


def _routine_steps(
    policy: Policy,
    name: str,
    head: str,
    body: str,
    args: str,
    existing: FunctionInfo | None,
    want_acl: set[tuple[str, str]],
    config: tuple[str, ...],
    settings: str,
    what: str = "seals the audit chain",
) -> list[Step]:
    """Create or replace one definer routine when its source or settings differ, give it to
    the audit owner and make its EXECUTE privileges exactly ``want_acl``."""
    fq = sql.Identifier(policy.schema, name)
    ident = sql.SQL("{}" + args).format(fq)
    kind = "PROCEDURE" if head.startswith("PROCEDURE") else "FUNCTION"
    # ROUTINE: one word for both in ALTER and GRANT
    steps: list[Step] = []
    if not (
        existing is not None
        and existing.source == body
        and existing.security_definer
        and existing.config == config
    ):
        steps.append(
            Step(
                sql.SQL(
                    "CREATE OR REPLACE " + head + " SECURITY DEFINER " + settings + " AS {body}"
                ).format(fq, body=sql.Literal(body)),
                f"create or replace audit {kind.lower()} {name} ({what})",
                "audit",
            )
        )
    if existing is None or existing.owner != policy.audit.owner:
        steps.append(audit_owned(policy, "ROUTINE", ident, name))
    have = function_grants(existing.acl if existing else None, policy.audit.owner)
    steps += grant_steps(ident, name, "ROUTINE", have, want_acl, "audit")
    return steps


def chain_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    """The chain table, the index on ``txid`` and the seal routines, where missing or changed."""
    ds = policy.audit.data_schema
    steps: list[Step] = []
    chain = sql.Identifier(ds, CHAIN_TABLE)
    data = cat.audit_data if cat else None
    have = data.relations.get(("r", CHAIN_TABLE)) if data else None
    if have is None:
        steps.append(
            Step(
                sql.SQL(_CHAIN_DDL).format(chain),
                f"create {ds}.{CHAIN_TABLE} (the audit trail's sealed blocks)",
                "audit",
            )
        )
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} ALTER COLUMN leaves SET STORAGE EXTERNAL").format(chain),
                f"store {ds}.{CHAIN_TABLE} leaves uncompressed (hashes do not compress)",
                "audit",
                internal=True,
            )
        )
    if have is None or have.owner != policy.audit.owner:
        steps.append(audit_owned(policy, "TABLE", chain, f"{ds}.{CHAIN_TABLE}"))
    info = cat.tables.get(policy.audit.table) if cat else None
    if info is None or "txid" not in info.indexed_first_columns:
        steps.append(
            Step(
                sql.SQL("CREATE INDEX ON {} (txid)").format(
                    sql.Identifier(policy.schema, policy.audit.table)
                ),
                f"index {policy.audit.table} on txid (a seal reads only what it has not sealed)",
                "audit",
            )
        )
    superuser = cat.superuser if cat else True
    me = cat.current_user if cat else None
    want = set() if superuser or me is None else {(me, "EXECUTE")}
    functions = cat.functions if cat else {}
    steps += _routine_steps(
        policy,
        SEAL_FUNCTION,
        f"FUNCTION {{}}(max_rows integer DEFAULT {DEFAULT_MAX_ROWS}) RETURNS SETOF bigint"
        " LANGUAGE plpgsql VOLATILE",
        seal_function_source(policy),
        "(integer)",
        functions.get(SEAL_FUNCTION),
        want,
        _CONFIG,
        "SET search_path = pg_catalog, pg_temp " + _SETTINGS_SQL + " SET work_mem = '64MB'",
    )
    steps += _routine_steps(
        policy,
        SEAL_JOB,
        "PROCEDURE {}(job_id integer, config jsonb) LANGUAGE plpgsql",
        _JOB_BODY.format(seal=_ident(policy.schema, SEAL_FUNCTION)),
        "(integer, jsonb)",
        functions.get(SEAL_JOB),
        want,
        ("search_path=pg_catalog, pg_temp",),
        "SET search_path = pg_catalog, pg_temp",
    )
    monitors = {(r.name, "EXECUTE") for r in policy.roles if r.monitoring}
    steps += _routine_steps(
        policy,
        STATUS_FUNCTION,
        "FUNCTION {}(all_blocks boolean DEFAULT false) RETURNS TABLE (blocks bigint, linked boolean,"
        " sealed_rows bigint, hi_txid bigint, last_sealed timestamptz, rows_present boolean,"
        " oldest_unsealed timestamptz) LANGUAGE plpgsql STABLE",
        status_function_source(policy),
        "(boolean)",
        functions.get(STATUS_FUNCTION),
        want | monitors,
        ("search_path=pg_catalog, pg_temp",),
        "SET search_path = pg_catalog, pg_temp",
        what="the chain's state for tsaccess monitor",
    )
    return steps
