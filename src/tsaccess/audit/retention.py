"""Audited retention: chunk drops as plan steps and audit rows.

``drop_chunks`` and TimescaleDB's own retention jobs fire no DML trigger and no ``sql_drop``
event trigger: data leaves without a trace. A table's ``[tables.<name>.retention]`` therefore
installs tsaccess's own job instead (``<schema>.tsaccess_retention``, run by TimescaleDB's job
scheduler as the table owner). For each chunk it is about to drop it writes one audit row
(operation ``DROP CHUNK``, the hypertable, the chunk, its time range, the job id and the chunk's
row count) through ``<schema>.tsaccess_audit_chunk_drop`` (``SECURITY DEFINER``, owned by the
audit owner) for each chunk ``drop_chunks`` dropped, in the same transaction. A chunk it does
not drop — frozen (``drop_chunks`` skips those without a word), or not dropped for any other
reason — is recorded as ``KEEP CHUNK`` (``tsaccess_audit_chunk_keep``) with the reason, and the
job goes on: retention never wedges on one chunk.

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
    "KEEP_FUNCTION",
    "RETENTION_PROCEDURE",
    "retention_steps",
]

DROP_FUNCTION = "tsaccess_audit_chunk_drop"
KEEP_FUNCTION = "tsaccess_audit_chunk_keep"
RETENTION_PROCEDURE = "tsaccess_retention"
EVENT_FUNCTION = "tsaccess_audit_sql_drop"
EVENT_TRIGGER = "tsaccess_chunk_drops"

_DROP_BODY = """
  INSERT INTO {audit} (username, operation, table_name, description, effective_role, txid,
                       client_addr, application_name, actor, request_id, row_count,
                       client_asserted)
  VALUES (session_user, 'DROP CHUNK', hypertable,
          'DROP CHUNK ' || chunk || ' [' || coalesce(range_start, '?') || ', '
            || coalesce(range_end, '?') || ')'
            || CASE WHEN job IS NULL THEN ' outside the retention job (DROP TABLE)'
               ELSE ' by retention job ' || job END,
          coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text),
          pg_catalog.txid_current(), pg_catalog.inet_client_addr(),
          nullif(pg_catalog.current_setting('application_name'), ''),
          CASE WHEN job IS NULL THEN NULL ELSE 'tsaccess retention job ' || job END,
          NULL, rows, pg_catalog.current_setting('application_name') <> '')
"""

_KEEP_BODY = """
  INSERT INTO {audit} (username, operation, table_name, description, effective_role, txid,
                       client_addr, application_name, actor, request_id, row_count,
                       client_asserted)
  VALUES (session_user, 'KEEP CHUNK', hypertable,
          'KEEP CHUNK ' || chunk || ' [' || coalesce(range_start, '?') || ', '
            || coalesce(range_end, '?') || ') not dropped by retention job ' || job || ': '
            || reason,
          coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text),
          pg_catalog.txid_current(), pg_catalog.inet_client_addr(),
          nullif(pg_catalog.current_setting('application_name'), ''),
          'tsaccess retention job ' || job, NULL, rows,
          pg_catalog.current_setting('application_name') <> '')
"""

# Chunks in the window: frozen ones (status bit 4: drop_chunks skips them without a word) are
# kept and recorded as KEEP CHUNK; the others are counted, dropped with drop_chunks and each
# recorded as DROP CHUNK; one drop_chunks did not drop is recorded as kept, one it dropped that
# was not counted (made meanwhile) as dropped without a count. Nothing wedges the job: the
# audit says what happened, in the transaction that did it.
_RETENTION_BODY = """
DECLARE
  ht regclass := (config ->> 'hypertable')::regclass;
  cutoff timestamptz := pg_catalog.now() - (config ->> 'drop_after')::interval;
  ext text;
  r record;
  n bigint;
  counted jsonb := '{{}}';
  frozen text[] := '{{}}';
  dropped text[];
  d text;
BEGIN
  SELECT pg_catalog.quote_ident(e.extnamespace::regnamespace::text) INTO ext
  FROM pg_catalog.pg_extension e WHERE e.extname = 'timescaledb';
  FOR r IN
    SELECT pg_catalog.format('%I.%I', c.chunk_schema, c.chunk_name) AS chunk,
           c.range_start, c.range_end, (k.status & 4) <> 0 AS is_frozen
    FROM timescaledb_information.chunks c
    JOIN _timescaledb_catalog.chunk k
      ON k.schema_name = c.chunk_schema AND k.table_name = c.chunk_name
    WHERE pg_catalog.format('%I.%I', c.hypertable_schema, c.hypertable_name)::regclass = ht
      AND c.range_end <= cutoff
    ORDER BY c.range_start
  LOOP
    EXECUTE 'SELECT pg_catalog.count(*) FROM ' || r.chunk INTO n;
    IF r.is_frozen THEN
      frozen := frozen || r.chunk;
      PERFORM {keep_function}(config ->> 'table', r.chunk, r.range_start::text,
                              r.range_end::text, job_id, n,
                              'frozen (unfreeze it, or drop it by hand)');
      RAISE WARNING 'tsaccess retention job %: chunk % is frozen and was not dropped',
        job_id, r.chunk;
    ELSE
      counted := counted || pg_catalog.jsonb_build_object(r.chunk,
        pg_catalog.jsonb_build_array(r.range_start::text, r.range_end::text, n));
    END IF;
  END LOOP;
  EXECUTE 'SELECT coalesce(pg_catalog.array_agg(d::text), ''{{}}'') FROM '
          || ext || '.drop_chunks($1, older_than => $2) d'
    INTO dropped USING ht, cutoff;
  FOREACH d IN ARRAY dropped LOOP
    PERFORM {drop_function}(config ->> 'table', d, counted -> d ->> 0, counted -> d ->> 1,
                            job_id, (counted -> d ->> 2)::bigint);
  END LOOP;
  FOR r IN SELECT e.key AS chunk, e.value AS v FROM pg_catalog.jsonb_each(counted) e
           WHERE e.key <> ALL (dropped) LOOP
    PERFORM {keep_function}(config ->> 'table', r.chunk, r.v ->> 0, r.v ->> 1, job_id,
                            (r.v ->> 2)::bigint, 'drop_chunks did not drop it');
    RAISE WARNING 'tsaccess retention job %: drop_chunks did not drop chunk %', job_id, r.chunk;
  END LOOP;
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
    keep_fn = sql.Identifier(policy.schema, KEEP_FUNCTION).as_string(None)
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
    if retained or (cat and KEEP_FUNCTION in cat.functions):
        steps += _function(
            policy,
            cat,
            KEEP_FUNCTION,
            "FUNCTION {}(hypertable text, chunk text, range_start text, range_end text,"
            " job integer, rows bigint, reason text) RETURNS void LANGUAGE sql VOLATILE"
            " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS",
            _KEEP_BODY.format(audit=audit),
            definer=True,
            owner=policy.audit.owner,
            want_acl=set() if superuser or me is None else {(me, "EXECUTE")},
            ident_args="(text, text, text, text, integer, bigint, text)",
        )
    if retained or (cat and RETENTION_PROCEDURE in cat.functions):
        steps += _function(
            policy,
            cat,
            RETENTION_PROCEDURE,
            "PROCEDURE {}(job_id integer, config jsonb) LANGUAGE plpgsql"
            " SET search_path = pg_catalog, pg_temp AS",
            _RETENTION_BODY.format(drop_function=drop_fn, keep_function=keep_fn),
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
