"""Audited retention: chunk drops as plan steps and audit rows.

``drop_chunks`` and TimescaleDB's own retention jobs fire no DML trigger and no ``sql_drop``
event trigger: data leaves without a trace. A table's ``[tables.<name>.retention]`` therefore
installs tsaccess's own job instead (``<schema>.tsaccess_retention``, run by TimescaleDB's job
scheduler as the table owner). For each chunk it is about to drop it writes one audit row
(operation ``DROP CHUNK``, the hypertable, the chunk, its time range, the job id and the chunk's
row count) through ``<schema>.tsaccess_audit_chunk_drop`` (``SECURITY DEFINER``, owned by the
audit owner), then calls ``drop_chunks`` with the same cutoff and fails the whole transaction
unless it dropped exactly the recorded chunks.

Drops outside the job: a ``DROP TABLE`` of a chunk fires ``sql_drop``, which the event trigger
``tsaccess_chunk_drops`` records (operation ``DROP CHUNK``, no row count: the rows are gone);
``drop_chunks`` called by an owner is not visible to any trigger and is not caught (see
``docs/timescaledb.md``).
"""

from __future__ import annotations

import json

from psycopg import sql

from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog.timescale import TimescaleCatalog
from tsaccess.policy import Policy
from tsaccess.steps import Step, function_grants, grant_steps

__all__ = [
    "DROP_FUNCTION",
    "EVENT_FUNCTION",
    "EVENT_TRIGGER",
    "RETENTION_PROCEDURE",
    "retention_steps",
]

DROP_FUNCTION = "tsaccess_audit_chunk_drop"
RETENTION_PROCEDURE = "tsaccess_retention"
EVENT_FUNCTION = "tsaccess_audit_sql_drop"
EVENT_TRIGGER = "tsaccess_chunk_drops"

_DROP_BODY = """
  INSERT INTO {audit} (username, operation, table_name, description, effective_role, txid,
                       client_addr, application_name, actor, request_id, row_count)
  VALUES (session_user, 'DROP CHUNK', hypertable,
          'DROP CHUNK ' || chunk || ' [' || coalesce(range_start, '?') || ', '
            || coalesce(range_end, '?') || ')'
            || CASE WHEN job IS NULL THEN ' outside the retention job (DROP TABLE)'
               ELSE ' by retention job ' || job END,
          coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text),
          pg_catalog.txid_current(), pg_catalog.inet_client_addr(),
          nullif(pg_catalog.current_setting('application_name'), ''),
          CASE WHEN job IS NULL THEN NULL ELSE 'tsaccess retention job ' || job END,
          NULL, rows)
"""

_RETENTION_BODY = """
DECLARE
  ht regclass := (config ->> 'hypertable')::regclass;
  cutoff timestamptz := pg_catalog.now() - (config ->> 'drop_after')::interval;
  ext text;
  r record;
  n bigint;
  recorded text[] := '{{}}';
  dropped text[];
BEGIN
  SELECT pg_catalog.quote_ident(e.extnamespace::regnamespace::text) INTO ext
  FROM pg_catalog.pg_extension e WHERE e.extname = 'timescaledb';
  FOR r IN
    SELECT pg_catalog.format('%I.%I', c.chunk_schema, c.chunk_name) AS chunk,
           c.range_start, c.range_end
    FROM timescaledb_information.chunks c
    WHERE pg_catalog.format('%I.%I', c.hypertable_schema, c.hypertable_name)::regclass = ht
      AND c.range_end <= cutoff
    ORDER BY c.range_start
  LOOP
    EXECUTE 'SELECT pg_catalog.count(*) FROM ' || r.chunk INTO n;
    PERFORM {drop_function}(config ->> 'table', r.chunk, r.range_start::text,
                            r.range_end::text, job_id, n);
    recorded := recorded || r.chunk;
  END LOOP;
  EXECUTE 'SELECT coalesce(pg_catalog.array_agg(d::text), ''{{}}'') FROM '
          || ext || '.drop_chunks($1, older_than => $2) d'
    INTO dropped USING ht, cutoff;
  IF (SELECT pg_catalog.array_agg(x ORDER BY x) FROM pg_catalog.unnest(recorded) x)
     IS DISTINCT FROM (SELECT pg_catalog.array_agg(x ORDER BY x) FROM pg_catalog.unnest(dropped) x)
  THEN
    RAISE EXCEPTION 'tsaccess retention: drop_chunks dropped % but % were recorded; rolled back',
      dropped, recorded;
  END IF;
END
"""

# DROP TABLE of a chunk (outside the job), by whoever owns it: the function runs as its owner
# (the superuser who created the event trigger), so it may call the audit function, which
# nobody else may execute. TimescaleDB has already removed the chunk's catalog
# row when sql_drop fires; the hypertable id is in the chunk's name (_hyper_<id>_<n>_chunk, or
# compress_hyper_<id>_<n>_chunk for the compressed hypertable of <id>'s hypertable).
_EVENT_BODY = """
DECLARE
  o record;
  ht text;
BEGIN
  FOR o IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects()
           WHERE object_type = 'table' AND schema_name LIKE '\\_timescaledb%'
             AND object_name ~ '^(compress)?_hyper_[0-9]+_[0-9]+_chunk$'
  LOOP
    SELECT h.table_name INTO ht FROM _timescaledb_catalog.hypertable h
      WHERE (SELECT m[1]::integer FROM pg_catalog.regexp_match(o.object_name,
               '_hyper_([0-9]+)_') m) IN (h.id, h.compressed_hypertable_id)
      ORDER BY h.compressed_hypertable_id IS NULL LIMIT 1;
    PERFORM {drop_function}(coalesce(ht, '?'), o.object_identity, NULL, NULL, NULL, NULL);
  END LOOP;
END
"""


def _function(
    policy: Policy,
    cat: CatalogSnapshot | None,
    name: str,
    head: str,
    body: str,
    *,
    definer: bool,
    owner: str | None,
    want_acl: set[tuple[str, str]],
    ident_args: str,
) -> list[Step]:
    fq = sql.Identifier(policy.schema, name)
    existing = cat.functions.get(name) if cat else None
    steps: list[Step] = []
    ok = existing is not None and existing.source == body and existing.security_definer == definer
    if not ok:
        steps.append(
            Step(
                sql.SQL("CREATE OR REPLACE " + head + " {}").format(fq, sql.Literal(body)),
                f"create or replace {name}",
                "audit",
            )
        )
    if owner is not None and (existing is None or existing.owner != owner):
        steps.append(
            Step(
                sql.SQL("ALTER ROUTINE {}" + ident_args + " OWNER TO {}").format(
                    fq, sql.Identifier(owner)
                ),
                f"{name} owned by {owner}",
                "audit",
            )
        )
    have = function_grants(existing.acl if existing else None, existing.owner if existing else "")
    steps += grant_steps(
        sql.SQL("{}" + ident_args).format(fq), name, "ROUTINE", have, want_acl, "audit"
    )
    return steps


def retention_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    tsc: TimescaleCatalog | None,
    timescaledb: bool,
    warnings: list[str],
) -> list[Step]:
    """The audited retention job per table that declares retention, and the chunk-drop event
    trigger (superuser only; a warning otherwise)."""
    if not timescaledb or not policy.audited:
        return []
    retained = [t for t in policy.tables if t.retention is not None and t.hypertable]
    audit = sql.Identifier(policy.schema, policy.audit.table).as_string(None)
    drop_fn = sql.Identifier(policy.schema, DROP_FUNCTION).as_string(None)
    superuser = cat.superuser if cat else True
    me = cat.current_user if cat else None
    steps: list[Step] = []
    if not retained and not (cat and {DROP_FUNCTION, RETENTION_PROCEDURE} & set(cat.functions)):
        return steps  # nothing of this room in the policy or the database
    steps += _function(
        policy,
        cat,
        DROP_FUNCTION,
        "FUNCTION {}(hypertable text, chunk text, range_start text, range_end text, job integer,"
        " rows bigint) RETURNS void LANGUAGE sql VOLATILE SECURITY DEFINER"
        " SET search_path = pg_catalog, pg_temp AS",
        _DROP_BODY.format(audit=audit),
        definer=True,
        owner=policy.audit.owner,
        want_acl=set() if superuser or me is None else {(me, "EXECUTE")},
        ident_args="(text, text, text, text, integer, bigint)",
    )
    if retained or (cat and RETENTION_PROCEDURE in cat.functions):
        steps += _function(
            policy,
            cat,
            RETENTION_PROCEDURE,
            "PROCEDURE {}(job_id integer, config jsonb) LANGUAGE plpgsql"
            " SET search_path = pg_catalog, pg_temp AS",
            _RETENTION_BODY.format(drop_function=drop_fn),
            definer=False,
            owner=None,
            want_acl=set(),
            ident_args="(integer, jsonb)",
        )
    live = tsc or TimescaleCatalog()
    proc = sql.Identifier(policy.schema, RETENTION_PROCEDURE)
    ours = [j for j in live.jobs if j.proc_name == RETENTION_PROCEDURE]
    for t in policy.tables:
        target = sql.Identifier(policy.schema, t.name).as_string(None)
        want = (
            {
                "hypertable": target,
                "table": t.name,
                "drop_after": t.retention.drop_after,
            }
            if t.retention is not None and t.hypertable
            else None
        )
        jobs = [j for j in ours if j.config.get("table") == t.name]
        keep = None
        for j in jobs:
            if want is not None and keep is None and dict(j.config) == want:
                keep = j
                continue
            steps.append(
                Step(
                    sql.SQL("SELECT delete_job({})").format(sql.Literal(j.job_id)),
                    f"remove retention job {j.job_id} of {t.name}",
                    "audit",
                )
            )
        if want is not None and keep is None:
            assert t.retention is not None
            steps.append(
                Step(
                    sql.SQL("SELECT add_job({}::regproc, INTERVAL {}, config => {}::jsonb)").format(
                        sql.Literal(proc.as_string(None)),
                        sql.Literal(t.retention.schedule),
                        sql.Literal(json.dumps(want, sort_keys=True)),
                    ),
                    f"drop chunks of {t.name} older than {t.retention.drop_after}, each one "
                    "audited (job)",
                    "audit",
                )
            )
        for j in live.jobs_for(t.name, "policy_retention"):
            if want is not None:
                steps.append(
                    Step(
                        sql.SQL("SELECT delete_job({})").format(sql.Literal(j.job_id)),
                        f"remove TimescaleDB's unaudited retention job {j.job_id} of {t.name}",
                        "audit",
                    )
                )
            else:
                warnings.append(
                    f"table {t.name} has TimescaleDB retention job {j.job_id}: its chunk drops "
                    "are not audited; declare [tables.{t.name}.retention] instead"
                )
    if retained:
        if not superuser:
            warnings.append(
                "not a superuser: DROP TABLE of a chunk outside the retention job is not "
                "recorded (an event trigger needs a superuser to create)"
            )
        else:
            steps += _function(
                policy,
                cat,
                EVENT_FUNCTION,
                "FUNCTION {}() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER"
                " SET search_path = pg_catalog, pg_temp AS",
                _EVENT_BODY.format(drop_function=drop_fn),
                definer=True,
                owner=None,
                want_acl=set(),
                ident_args="()",
            )
            if EVENT_TRIGGER not in live.event_triggers:
                steps.append(
                    Step(
                        sql.SQL("CREATE EVENT TRIGGER {} ON sql_drop EXECUTE FUNCTION {}()").format(
                            sql.Identifier(EVENT_TRIGGER),
                            sql.Identifier(policy.schema, EVENT_FUNCTION),
                        ),
                        "record DROP TABLE of a chunk in the audit trail (event trigger)",
                        "audit",
                    )
                )
    return steps
