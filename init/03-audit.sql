-- Rendered by tsaccess from examples/company.toml; do not edit by hand.
\set ON_ERROR_STOP on
BEGIN;
-- create audit owner role tsaccess_audit (NOLOGIN)
CREATE ROLE "tsaccess_audit" NOLOGIN NOINHERIT;
-- create audit table activity_audit
CREATE TABLE "public"."activity_audit" ( id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000), event_time timestamptz NOT NULL DEFAULT pg_catalog.now(), username text NOT NULL, operation text NOT NULL, table_name text, description text, effective_role text, txid bigint, client_addr inet, application_name text, actor text, request_id text, row_count bigint, client_asserted boolean NOT NULL DEFAULT false);
-- make activity_audit a hypertable on event_time
SELECT create_hypertable('"public"."activity_audit"'::regclass, by_range('event_time', INTERVAL '7 days'), create_default_indexes => true);
-- audit table activity_audit owned by tsaccess_audit
ALTER TABLE "public"."activity_audit" OWNER TO "tsaccess_audit";
-- create schema tsaccess_audit for per-row audit data (private to tsaccess_audit)
CREATE SCHEMA "tsaccess_audit" AUTHORIZATION "tsaccess_audit";
-- create row type tsaccess_audit.financial_metrics_row (the audited columns of financial_metrics)
CREATE TYPE "tsaccess_audit"."financial_metrics_row" AS ("time" timestamptz, "metric_type" text, "amount" numeric(12,2), "currency" text, "department" text, "is_confidential" boolean);
-- row type tsaccess_audit.financial_metrics_row owned by tsaccess_audit
ALTER TYPE "tsaccess_audit"."financial_metrics_row" OWNER TO "tsaccess_audit";
-- create tsaccess_audit.financial_metrics for financial_metrics's changed rows
CREATE TABLE "tsaccess_audit"."financial_metrics" (audit_id bigint NOT NULL, event_time timestamptz NOT NULL, old_data "tsaccess_audit"."financial_metrics_row", new_data "tsaccess_audit"."financial_metrics_row");
-- make tsaccess_audit.financial_metrics a hypertable on event_time
SELECT create_hypertable('"tsaccess_audit"."financial_metrics"'::regclass, by_range('event_time', INTERVAL '7 days'), create_default_indexes => false);
-- tsaccess_audit.financial_metrics owned by tsaccess_audit
ALTER TABLE "tsaccess_audit"."financial_metrics" OWNER TO "tsaccess_audit";
-- create or replace audit function tsaccess_audit.financial_metrics()
CREATE OR REPLACE FUNCTION "tsaccess_audit"."financial_metrics"() RETURNS trigger LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $tsaccess$
DECLARE
  n pg_catalog.int8;
  aid pg_catalog.int8;
  ts pg_catalog.timestamptz;
  est pg_catalog.text;
  zip_limit pg_catalog.text;
  o_cur pg_catalog.refcursor;
  n_cur pg_catalog.refcursor;
  o_rec pg_catalog.record;
  n_rec pg_catalog.record;
BEGIN
  IF TG_LEVEL OPERATOR(pg_catalog.=) 'ROW' THEN  -- no transition tables (DELETE, compressed)
    WITH a AS (
           INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
           SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' row', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, 1, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL) FROM       (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                         ELSE s.r END AS eff,
                       CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                       CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                       CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
                FROM (SELECT pg_catalog.current_setting('role') AS r,
                             pg_catalog.current_setting('application_name') AS app,
                             pg_catalog.current_setting('tsaccess.actor', true) AS act,
                             pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g
           RETURNING id, event_time)
    INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, old_data)
    SELECT a.id, a.event_time, ROW("old"."time", "old"."metric_type", "old"."amount", "old"."currency", "old"."department", "old"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM a;
    RETURN NULL;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    WITH c AS MATERIALIZED (
           SELECT pg_catalog.count(*) AS n FROM (SELECT FROM tsaccess_new LIMIT 1000) s),
         a AS (
           INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
           SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' of ' OPERATOR(pg_catalog.||) c.n OPERATOR(pg_catalog.||) ' row(s)', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, c.n, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL)
           FROM c, (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                       ELSE s.r END AS eff,
                     CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                     CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                     CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
              FROM (SELECT pg_catalog.current_setting('role') AS r,
                           pg_catalog.current_setting('application_name') AS app,
                           pg_catalog.current_setting('tsaccess.actor', true) AS act,
                           pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g
           WHERE c.n OPERATOR(pg_catalog.<) 1000 AND (c.n OPERATOR(pg_catalog.>) 0 OR NOT (pg_catalog.current_query() OPERATOR(pg_catalog.~*) '^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*(merge|with)\M' AND pg_catalog.current_query() OPERATOR(pg_catalog.!~) ';\s*\S'))
           RETURNING id, event_time),
         d AS (
           INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, new_data)
           SELECT a.id, a.event_time, ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM a, tsaccess_new r)
    SELECT a.id INTO aid FROM a;
    IF FOUND THEN
      RETURN NULL;
    END IF;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    WITH c AS MATERIALIZED (
           SELECT pg_catalog.count(*) AS n FROM (SELECT FROM tsaccess_old LIMIT 1000) s),
         a AS (
           INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
           SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' of ' OPERATOR(pg_catalog.||) c.n OPERATOR(pg_catalog.||) ' row(s)', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, c.n, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL)
           FROM c, (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                       ELSE s.r END AS eff,
                     CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                     CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                     CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
              FROM (SELECT pg_catalog.current_setting('role') AS r,
                           pg_catalog.current_setting('application_name') AS app,
                           pg_catalog.current_setting('tsaccess.actor', true) AS act,
                           pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g
           WHERE c.n OPERATOR(pg_catalog.<) 1000 AND (c.n OPERATOR(pg_catalog.>) 0 OR NOT (pg_catalog.current_query() OPERATOR(pg_catalog.~*) '^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*(merge|with)\M' AND pg_catalog.current_query() OPERATOR(pg_catalog.!~) ';\s*\S'))
           RETURNING id, event_time),
         d AS (
           INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, old_data)
           SELECT a.id, a.event_time, ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM a, tsaccess_old r)
    SELECT a.id INTO aid FROM a;
    IF FOUND THEN
      RETURN NULL;
    END IF;
  END IF;
  -- 1000 rows or more, none, or an UPDATE: sized without reading the rows back
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM tsaccess_old LIMIT 1000) s;
    IF n OPERATOR(pg_catalog.=) 1000 THEN
      EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM tsaccess_old' INTO est;
      est := pg_catalog.json_extract_path_text(
        pg_catalog.json_array_element(est::pg_catalog.json, 0), 'Plan', 'Plan Rows');
      IF est OPERATOR(pg_catalog.~) '^[0-9]{1,18}$' THEN
        n := est::pg_catalog.int8;
      ELSE
        EXECUTE 'SELECT pg_catalog.count(*) FROM tsaccess_old' INTO n;
      END IF;
    END IF;
  ELSE
    SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM tsaccess_new LIMIT 1000) s;
    IF n OPERATOR(pg_catalog.=) 1000 THEN
      EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM tsaccess_new' INTO est;
      est := pg_catalog.json_extract_path_text(
        pg_catalog.json_array_element(est::pg_catalog.json, 0), 'Plan', 'Plan Rows');
      IF est OPERATOR(pg_catalog.~) '^[0-9]{1,18}$' THEN
        n := est::pg_catalog.int8;
      ELSE
        EXECUTE 'SELECT pg_catalog.count(*) FROM tsaccess_new' INTO n;
      END IF;
    END IF;
  END IF;
  IF n OPERATOR(pg_catalog.=) 0 AND pg_catalog.current_query() OPERATOR(pg_catalog.~*) '^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*(merge|with)\M' AND pg_catalog.current_query() OPERATOR(pg_catalog.!~) ';\s*\S' THEN
    RETURN NULL;  -- an action of a lone MERGE or WITH statement that changed no row
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    WITH a AS (
           INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
           SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' of ' OPERATOR(pg_catalog.||) n OPERATOR(pg_catalog.||) ' row(s)', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, n, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL) FROM (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                       ELSE s.r END AS eff,
                     CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                     CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                     CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
              FROM (SELECT pg_catalog.current_setting('role') AS r,
                           pg_catalog.current_setting('application_name') AS app,
                           pg_catalog.current_setting('tsaccess.actor', true) AS act,
                           pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g
           RETURNING id, event_time),
         d AS (
           INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, new_data)
           SELECT a.id, a.event_time, ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM a, tsaccess_new r)
    SELECT a.id INTO aid FROM a;
    RETURN NULL;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    WITH a AS (
           INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
           SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' of ' OPERATOR(pg_catalog.||) n OPERATOR(pg_catalog.||) ' row(s)', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, n, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL) FROM (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                       ELSE s.r END AS eff,
                     CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                     CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                     CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
              FROM (SELECT pg_catalog.current_setting('role') AS r,
                           pg_catalog.current_setting('application_name') AS app,
                           pg_catalog.current_setting('tsaccess.actor', true) AS act,
                           pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g
           RETURNING id, event_time),
         d AS (
           INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, old_data)
           SELECT a.id, a.event_time, ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM a, tsaccess_old r)
    SELECT a.id INTO aid FROM a;
    RETURN NULL;
  END IF;
  -- UPDATE: old and new rows are captured pairwise, in the same order: zip them, as two
  -- arrays up to tsaccess.audit_zip_rows rows (default 1,000,000), beyond that (an array is
  -- limited to 1 GB) by walking both transition tables in step
  zip_limit := pg_catalog.current_setting('tsaccess.audit_zip_rows', true);
  IF zip_limit IS NULL OR zip_limit OPERATOR(pg_catalog.!~) '^[0-9]{1,18}$' THEN
    zip_limit := '1000000';
  END IF;
  IF n OPERATOR(pg_catalog.<=) zip_limit::pg_catalog.int8 THEN
    WITH a AS (
           INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
           SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' of ' OPERATOR(pg_catalog.||) n OPERATOR(pg_catalog.||) ' row(s)', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, n, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL) FROM       (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                         ELSE s.r END AS eff,
                       CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                       CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                       CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
                FROM (SELECT pg_catalog.current_setting('role') AS r,
                             pg_catalog.current_setting('application_name') AS app,
                             pg_catalog.current_setting('tsaccess.actor', true) AS act,
                             pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g
           RETURNING id, event_time)
    INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, old_data, new_data)
    SELECT a.id, a.event_time,
           pg_catalog.unnest(ARRAY(SELECT ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM tsaccess_old r)),
           pg_catalog.unnest(ARRAY(SELECT ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM tsaccess_new r))
    FROM a;
  ELSE
    INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
    SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' of ' OPERATOR(pg_catalog.||) n OPERATOR(pg_catalog.||) ' row(s)', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, n, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL) FROM       (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                         ELSE s.r END AS eff,
                       CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                       CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                       CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
                FROM (SELECT pg_catalog.current_setting('role') AS r,
                             pg_catalog.current_setting('application_name') AS app,
                             pg_catalog.current_setting('tsaccess.actor', true) AS act,
                             pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g
    RETURNING id, event_time INTO aid, ts;
    OPEN o_cur NO SCROLL FOR SELECT ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" AS v FROM tsaccess_old r;
    OPEN n_cur NO SCROLL FOR SELECT ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" AS v FROM tsaccess_new r;
    LOOP
      FETCH o_cur INTO o_rec;
      EXIT WHEN NOT FOUND;
      FETCH n_cur INTO n_rec;
      INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, old_data, new_data)
      VALUES (aid, ts, o_rec.v, n_rec.v);
    END LOOP;
    CLOSE o_cur;
    CLOSE n_cur;
  END IF;
  RETURN NULL;
END
$tsaccess$;
-- tsaccess_audit.financial_metrics() owned by tsaccess_audit
ALTER FUNCTION "tsaccess_audit"."financial_metrics"() OWNER TO "tsaccess_audit";
-- revoke EXECUTE on tsaccess_audit.financial_metrics() from PUBLIC
REVOKE EXECUTE ON FUNCTION "tsaccess_audit"."financial_metrics"() FROM PUBLIC;
-- create tsaccess_audit.tsaccess_denied_rate (bounds DENIED rows per user and second)
CREATE UNLOGGED TABLE "tsaccess_audit"."tsaccess_denied_rate" (username text PRIMARY KEY, second timestamptz NOT NULL, n integer NOT NULL);
-- tsaccess_audit.tsaccess_denied_rate owned by tsaccess_audit
ALTER TABLE "tsaccess_audit"."tsaccess_denied_rate" OWNER TO "tsaccess_audit";
-- create tsaccess_audit.tsaccess_chain (the audit trail's sealed blocks)
CREATE TABLE "tsaccess_audit"."tsaccess_chain" (block bigint PRIMARY KEY, first_position bigint NOT NULL, leaf_count bigint NOT NULL, audit_rows bigint NOT NULL, data_records bigint NOT NULL, lo_txid bigint NOT NULL, hi_txid bigint NOT NULL, columns text[] NOT NULL, leaves bytea NOT NULL, head bytea NOT NULL, sealed_at timestamptz NOT NULL DEFAULT pg_catalog.now(), sealed_by text NOT NULL DEFAULT session_user);
-- store tsaccess_audit.tsaccess_chain leaves uncompressed (hashes do not compress)
ALTER TABLE "tsaccess_audit"."tsaccess_chain" ALTER COLUMN leaves SET STORAGE EXTERNAL;
-- tsaccess_audit.tsaccess_chain owned by tsaccess_audit
ALTER TABLE "tsaccess_audit"."tsaccess_chain" OWNER TO "tsaccess_audit";
-- index activity_audit on txid (a seal reads only what it has not sealed)
CREATE INDEX ON "public"."activity_audit" (txid);
-- create or replace audit function tsaccess_audit_seal (seals the audit chain)
CREATE OR REPLACE FUNCTION "public"."tsaccess_audit_seal"(max_rows integer DEFAULT 250000) RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, YMD' SET "IntervalStyle" = 'postgres' SET "extra_float_digits" = '1' SET "bytea_output" = 'hex' SET "lc_monetary" = 'C' SET work_mem = '64MB' AS '
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
  groups text := '''';
  t text;
  et_min timestamptz;
  et_max timestamptz;
  r record;
  meta bytea;
  h bytea;
BEGIN
  -- one seal at a time (readers go on); then the oldest transaction still running: every row
  -- of a transaction below it is committed (visible now) or never will be
  LOCK TABLE "tsaccess_audit"."tsaccess_chain" IN SHARE ROW EXCLUSIVE MODE;
  bound := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint;
  SELECT c.block + 1, c.first_position + c.leaf_count, c.hi_txid, c.head
    INTO nb, nfirst, lo, prev
    FROM "tsaccess_audit"."tsaccess_chain" c ORDER BY c.block DESC LIMIT 1;
  IF nb IS NULL THEN
    nb := 0;
    nfirst := 0;
    lo := 0;
    prev := pg_catalog.decode(pg_catalog.repeat(''00'', 32), ''hex'');
  END IF;
  SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) INTO cols
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = ''"public"."activity_audit"''::regclass AND a.attnum > 0 AND NOT a.attisdropped;
  SELECT ''ROW('' || pg_catalog.string_agg(''a.'' || pg_catalog.quote_ident(c.c), '', '' ORDER BY c.o)
         || '')::text''
    INTO row_sql FROM pg_catalog.unnest(cols) WITH ORDINALITY c (c, o);
  FOR t IN SELECT c.relname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ''tsaccess_audit'' AND c.relkind IN (''r'', ''p'') AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname IN (''audit_id'', ''event_time'', ''old_data'', ''new_data'')) = 4 ORDER BY c.relname COLLATE "C" LOOP
    groups := groups || pg_catalog.format(
      '' UNION ALL SELECT a.txid, a.id, 1, %L::text, pg_catalog.sha256(''
      || ''pg_catalog.decode(''''01'''', ''''hex'''') || pg_catalog.convert_to(%L, ''''UTF8'''')''
      || '' || pg_catalog.decode(''''00'''', ''''hex'''') || pg_catalog.convert_to(a.id::text, ''''UTF8'''')''
      || '' || pg_catalog.decode(''''00'''', ''''hex'''')''
      || '' || pg_catalog.string_agg(x.h, ''''''''::bytea ORDER BY x.h)), pg_catalog.count(*)''
      || '' FROM (SELECT d.audit_id, d.event_time,''
      || '' pg_catalog.sha256(pg_catalog.convert_to(ROW(pg_catalog.regexp_replace(d.old_data::text, '''',+[)]$'''', '''')''''), pg_catalog.regexp_replace(d.new_data::text, '''',+[)]$'''', '''')''''))::text, ''''UTF8'''')) AS h''
      || '' FROM %I.%I d WHERE d.event_time >= $3 AND d.event_time <= $4''
      -- only when an audit row of the block names the table (as the triggers do): a block of
      -- other tables'' statements reads none of its chunks
      || '' AND EXISTS (SELECT FROM a WHERE a.table_name IN (%L, %L))) x''
      || '' JOIN a ON a.id = x.audit_id AND a.event_time = x.event_time''
      || '' GROUP BY a.txid, a.id, a.event_time'',
      t, t, ''tsaccess_audit'', t, t, ''public'' || ''.'' || t);
  END LOOP;
  LOOP
    EXIT WHEN lo >= bound;
    -- at most max_rows audit rows per block, cut between transactions
    EXECUTE ''SELECT a.txid FROM "public"."activity_audit" a WHERE a.txid >= $1 AND a.txid < $2''
            '' ORDER BY a.txid OFFSET $3 LIMIT 1'' INTO cut USING lo, bound, max_rows;
    IF cut = lo THEN  -- one transaction wrote more than max_rows rows: it is one block
      EXECUTE ''SELECT pg_catalog.min(a.txid) FROM "public"."activity_audit" a WHERE a.txid > $1 AND a.txid < $2''
        INTO cut USING lo, bound;
    END IF;
    hi := coalesce(cut, bound);
    EXECUTE ''SELECT pg_catalog.min(a.event_time), pg_catalog.max(a.event_time) FROM "public"."activity_audit" a''
            '' WHERE a.txid >= $1 AND a.txid < $2'' INTO et_min, et_max USING lo, hi;
    EXIT WHEN et_min IS NULL AND nb > 0;  -- nothing to seal (the first block may be empty)
    EXECUTE ''WITH a AS MATERIALIZED (SELECT a.txid, a.id, a.event_time, a.table_name, '' || row_sql
      || '' AS t FROM "public"."activity_audit" a WHERE a.txid >= $1 AND a.txid < $2),''
      || '' l (txid, id, k, tbl, leaf, n) AS (SELECT a.txid, a.id, 0, '''''''',''
      || '' pg_catalog.sha256(pg_catalog.decode(''''00'''', ''''hex'''') || pg_catalog.convert_to(a.t,''
      || '' ''''UTF8'''')), 0::bigint FROM a'' || groups || '')''
      || '' SELECT pg_catalog.count(*) AS leaf_count,''
      || '' pg_catalog.count(*) FILTER (WHERE l.k = 0) AS audit_rows,''
      || '' coalesce(pg_catalog.sum(l.n), 0)::bigint AS data_records,''
      || '' coalesce(pg_catalog.string_agg(l.leaf, ''''''''::bytea''
      || '' ORDER BY l.txid, l.id, l.k, l.tbl COLLATE "C", l.leaf), ''''''''::bytea) AS leaves FROM l''
      INTO r USING lo, hi, et_min, et_max;
    meta := pg_catalog.convert_to(''tsaccess-audit-chain/1'', ''UTF8'') || pg_catalog.int8send(nb)
      || pg_catalog.int8send(nfirst) || pg_catalog.int8send(r.leaf_count)
      || pg_catalog.int8send(r.audit_rows) || pg_catalog.int8send(r.data_records)
      || pg_catalog.int8send(lo) || pg_catalog.int8send(hi)
      || (SELECT pg_catalog.string_agg(pg_catalog.int4send(pg_catalog.octet_length(
                   pg_catalog.convert_to(c.c, ''UTF8''))) || pg_catalog.convert_to(c.c, ''UTF8''),
                 ''''::bytea ORDER BY c.o)
          FROM pg_catalog.unnest(cols) WITH ORDINALITY c (c, o));
    h := pg_catalog.sha256(prev || pg_catalog.sha256(meta) || pg_catalog.sha256(r.leaves));
    INSERT INTO "tsaccess_audit"."tsaccess_chain" (block, first_position, leaf_count, audit_rows, data_records, lo_txid,
                         hi_txid, columns, leaves, head)
    VALUES (nb, nfirst, r.leaf_count, r.audit_rows, r.data_records, lo, hi, cols, r.leaves, h);
    -- also in the server log: shipped to another machine, a witness the database cannot edit
    RAISE LOG ''tsaccess audit chain of %: block % seals positions % to %, head %'',
      pg_catalog.current_database(), nb, nfirst, nfirst + r.leaf_count, pg_catalog.encode(h, ''hex'');
    RETURN NEXT nb;
    prev := h;
    nb := nb + 1;
    nfirst := nfirst + r.leaf_count;
    lo := hi;
  END LOOP;
  RETURN;
END
';
-- tsaccess_audit_seal owned by tsaccess_audit
ALTER ROUTINE "public"."tsaccess_audit_seal"(integer) OWNER TO "tsaccess_audit";
-- revoke EXECUTE on tsaccess_audit_seal from PUBLIC
REVOKE EXECUTE ON ROUTINE "public"."tsaccess_audit_seal"(integer) FROM PUBLIC;
-- create or replace audit procedure tsaccess_audit_seal_job (seals the audit chain)
CREATE OR REPLACE PROCEDURE "public"."tsaccess_audit_seal_job"(job_id integer, config jsonb) LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS '
BEGIN
  PERFORM "public"."tsaccess_audit_seal"();
END
';
-- tsaccess_audit_seal_job owned by tsaccess_audit
ALTER ROUTINE "public"."tsaccess_audit_seal_job"(integer, jsonb) OWNER TO "tsaccess_audit";
-- revoke EXECUTE on tsaccess_audit_seal_job from PUBLIC
REVOKE EXECUTE ON ROUTINE "public"."tsaccess_audit_seal_job"(integer, jsonb) FROM PUBLIC;
-- create or replace audit function tsaccess_audit_chain_status (the chain's state for tsaccess monitor)
CREATE OR REPLACE FUNCTION "public"."tsaccess_audit_chain_status"(all_blocks boolean DEFAULT false) RETURNS TABLE (blocks bigint, linked boolean, sealed_rows bigint, hi_txid bigint, last_sealed timestamptz, rows_present boolean, oldest_unsealed timestamptz) LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS '
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
    INTO n, first_block, last_block, s FROM "tsaccess_audit"."tsaccess_chain" c;
  SELECT c.hi_txid, c.sealed_at INTO hi, at FROM "tsaccess_audit"."tsaccess_chain" c ORDER BY c.block DESC LIMIT 1;
  SELECT pg_catalog.count(*) INTO breaks FROM (
    SELECT c.block, c.lo_txid, c.first_position,
           pg_catalog.lag(c.block) OVER w AS p_block,
           pg_catalog.lag(c.hi_txid) OVER w AS p_hi,
           pg_catalog.lag(c.first_position + c.leaf_count) OVER w AS p_next
    FROM "tsaccess_audit"."tsaccess_chain" c WINDOW w AS (ORDER BY c.block)) x
  WHERE (x.p_block IS NULL AND (x.block <> 0 OR x.lo_txid <> 0 OR x.first_position <> 0))
     OR (x.p_block IS NOT NULL AND (x.block <> x.p_block + 1 OR x.lo_txid <> x.p_hi
                                    OR x.first_position <> x.p_next));
  FOR r IN SELECT c.lo_txid, c.hi_txid, c.audit_rows FROM "tsaccess_audit"."tsaccess_chain" c
           WHERE all_blocks OR c.block IN (first_block, last_block) LOOP
    SELECT pg_catalog.count(*) INTO have FROM "public"."activity_audit" a
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
    SELECT pg_catalog.min(a.event_time) INTO oldest_unsealed FROM "public"."activity_audit" a;
  ELSE
    SELECT pg_catalog.min(a.event_time) INTO oldest_unsealed FROM "public"."activity_audit" a WHERE a.txid >= hi;
  END IF;
  RETURN NEXT;
END
';
-- tsaccess_audit_chain_status owned by tsaccess_audit
ALTER ROUTINE "public"."tsaccess_audit_chain_status"(boolean) OWNER TO "tsaccess_audit";
-- revoke EXECUTE on tsaccess_audit_chain_status from PUBLIC
REVOKE EXECUTE ON ROUTINE "public"."tsaccess_audit_chain_status"(boolean) FROM PUBLIC;
-- grant EXECUTE on tsaccess_audit_chain_status to security_monitoring
GRANT EXECUTE ON ROUTINE "public"."tsaccess_audit_chain_status"(boolean) TO "security_monitoring";
-- create or replace audit function tsaccess_audit_stmt
CREATE OR REPLACE FUNCTION "public"."tsaccess_audit_stmt"() RETURNS trigger LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $tsaccess$
DECLARE
  n pg_catalog.int8;
  est pg_catalog.text;
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
    SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' of ' OPERATOR(pg_catalog.||) c.n OPERATOR(pg_catalog.||) ' row(s)', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, c.n, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL)
    FROM (SELECT pg_catalog.count(*) AS n FROM (SELECT FROM tsaccess_old LIMIT 1000) s) c,
         (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                       ELSE s.r END AS eff,
                     CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                     CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                     CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
              FROM (SELECT pg_catalog.current_setting('role') AS r,
                           pg_catalog.current_setting('application_name') AS app,
                           pg_catalog.current_setting('tsaccess.actor', true) AS act,
                           pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g
    WHERE c.n OPERATOR(pg_catalog.<) 1000 AND (c.n OPERATOR(pg_catalog.>) 0 OR NOT (pg_catalog.current_query() OPERATOR(pg_catalog.~*) '^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*(merge|with)\M' AND pg_catalog.current_query() OPERATOR(pg_catalog.!~) ';\s*\S'));
  ELSIF TG_OP OPERATOR(pg_catalog.<>) 'TRUNCATE' THEN
    INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
    SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' of ' OPERATOR(pg_catalog.||) c.n OPERATOR(pg_catalog.||) ' row(s)', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, c.n, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL)
    FROM (SELECT pg_catalog.count(*) AS n FROM (SELECT FROM tsaccess_new LIMIT 1000) s) c,
         (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                       ELSE s.r END AS eff,
                     CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                     CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                     CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
              FROM (SELECT pg_catalog.current_setting('role') AS r,
                           pg_catalog.current_setting('application_name') AS app,
                           pg_catalog.current_setting('tsaccess.actor', true) AS act,
                           pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g
    WHERE c.n OPERATOR(pg_catalog.<) 1000 AND (c.n OPERATOR(pg_catalog.>) 0 OR NOT (pg_catalog.current_query() OPERATOR(pg_catalog.~*) '^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*(merge|with)\M' AND pg_catalog.current_query() OPERATOR(pg_catalog.!~) ';\s*\S'));
  ELSE
    INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
    SELECT session_user, TG_OP, TG_ARGV[0], TG_OP, g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, NULL, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL) FROM (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                   ELSE s.r END AS eff,
                 CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                 CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                 CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
          FROM (SELECT pg_catalog.current_setting('role') AS r,
                       pg_catalog.current_setting('application_name') AS app,
                       pg_catalog.current_setting('tsaccess.actor', true) AS act,
                       pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g;
    RETURN NULL;
  END IF;
  IF FOUND THEN
    RETURN NULL;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM tsaccess_old LIMIT 1000) s;
    IF n OPERATOR(pg_catalog.=) 1000 THEN
      EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM tsaccess_old' INTO est;
      est := pg_catalog.json_extract_path_text(
        pg_catalog.json_array_element(est::pg_catalog.json, 0), 'Plan', 'Plan Rows');
      IF est OPERATOR(pg_catalog.~) '^[0-9]{1,18}$' THEN
        n := est::pg_catalog.int8;
      ELSE
        EXECUTE 'SELECT pg_catalog.count(*) FROM tsaccess_old' INTO n;
      END IF;
    END IF;
  ELSE
    SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM tsaccess_new LIMIT 1000) s;
    IF n OPERATOR(pg_catalog.=) 1000 THEN
      EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM tsaccess_new' INTO est;
      est := pg_catalog.json_extract_path_text(
        pg_catalog.json_array_element(est::pg_catalog.json, 0), 'Plan', 'Plan Rows');
      IF est OPERATOR(pg_catalog.~) '^[0-9]{1,18}$' THEN
        n := est::pg_catalog.int8;
      ELSE
        EXECUTE 'SELECT pg_catalog.count(*) FROM tsaccess_new' INTO n;
      END IF;
    END IF;
  END IF;
  IF n OPERATOR(pg_catalog.=) 0 AND pg_catalog.current_query() OPERATOR(pg_catalog.~*) '^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*(merge|with)\M' AND pg_catalog.current_query() OPERATOR(pg_catalog.!~) ';\s*\S' THEN
    RETURN NULL;  -- an action of a lone MERGE or WITH statement that changed no row
  END IF;
  INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
  SELECT session_user, TG_OP, TG_ARGV[0], TG_OP OPERATOR(pg_catalog.||) ' of ' OPERATOR(pg_catalog.||) n OPERATOR(pg_catalog.||) ' row(s)', g.eff, pg_catalog.txid_current(), pg_catalog.inet_client_addr(), g.app, g.act, g.req, n, (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL) FROM (SELECT CASE WHEN s.r OPERATOR(pg_catalog.=) 'none' THEN session_user::pg_catalog.text
                   ELSE s.r END AS eff,
                 CASE WHEN s.app OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.app END AS app,
                 CASE WHEN s.act OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.act END AS act,
                 CASE WHEN s.req OPERATOR(pg_catalog.=) '' THEN NULL ELSE s.req END AS req
          FROM (SELECT pg_catalog.current_setting('role') AS r,
                       pg_catalog.current_setting('application_name') AS app,
                       pg_catalog.current_setting('tsaccess.actor', true) AS act,
                       pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g;
  RETURN NULL;
END
$tsaccess$;
-- tsaccess_audit_stmt owned by tsaccess_audit
ALTER FUNCTION "public"."tsaccess_audit_stmt"() OWNER TO "tsaccess_audit";
-- revoke EXECUTE on tsaccess_audit_stmt from PUBLIC
REVOKE EXECUTE ON FUNCTION "public"."tsaccess_audit_stmt"() FROM PUBLIC;
-- create or replace audit function tsaccess_audit_denied
CREATE OR REPLACE FUNCTION "public"."tsaccess_audit_denied"(statement text, reason text, table_name text DEFAULT NULL) RETURNS void LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tsaccess$
  WITH seen AS (
    INSERT INTO "tsaccess_audit"."tsaccess_denied_rate" AS r (username, second, n)
    VALUES (session_user, pg_catalog.date_trunc('second', pg_catalog.clock_timestamp()), 1)
    ON CONFLICT (username) DO UPDATE
      SET n = CASE WHEN r.second = excluded.second THEN r.n + 1 ELSE 1 END,
          second = excluded.second
      WHERE r.second <> excluded.second OR r.n <= 10  -- then no new row version
    RETURNING r.n)
  INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
  SELECT session_user, 'DENIED', pg_catalog.left(table_name, 200),
         CASE WHEN seen.n > 10 THEN 'more than 10 DENIED events of ' || session_user
              || ' in this second: the others are not recorded'
         ELSE pg_catalog.left(reason, 500) || ': ' || pg_catalog.left(statement, 2000) END,
         coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text),
         pg_catalog.txid_current(), pg_catalog.inet_client_addr(),
         nullif(pg_catalog.current_setting('application_name'), ''),
         nullif(pg_catalog.current_setting('tsaccess.actor', true), ''),
         nullif(pg_catalog.current_setting('tsaccess.request_id', true), ''),
         NULL, true
  FROM seen WHERE seen.n <= 10 + 1
$tsaccess$;
-- tsaccess_audit_denied owned by tsaccess_audit
ALTER FUNCTION "public"."tsaccess_audit_denied"(text, text, text) OWNER TO "tsaccess_audit";
-- revoke EXECUTE on tsaccess_audit_denied from PUBLIC
REVOKE EXECUTE ON FUNCTION "public"."tsaccess_audit_denied"(text, text, text) FROM PUBLIC;
-- grant EXECUTE on tsaccess_audit_denied to auditors
GRANT EXECUTE ON FUNCTION "public"."tsaccess_audit_denied"(text, text, text) TO "auditors";
-- grant EXECUTE on tsaccess_audit_denied to data_analysts
GRANT EXECUTE ON FUNCTION "public"."tsaccess_audit_denied"(text, text, text) TO "data_analysts";
-- grant EXECUTE on tsaccess_audit_denied to data_engineers
GRANT EXECUTE ON FUNCTION "public"."tsaccess_audit_denied"(text, text, text) TO "data_engineers";
-- grant EXECUTE on tsaccess_audit_denied to department_managers
GRANT EXECUTE ON FUNCTION "public"."tsaccess_audit_denied"(text, text, text) TO "department_managers";
-- grant EXECUTE on tsaccess_audit_denied to finance_users
GRANT EXECUTE ON FUNCTION "public"."tsaccess_audit_denied"(text, text, text) TO "finance_users";
-- grant EXECUTE on tsaccess_audit_denied to security_monitoring
GRANT EXECUTE ON FUNCTION "public"."tsaccess_audit_denied"(text, text, text) TO "security_monitoring";
-- audit statement-level on sensor_readings (tsaccess_audit_ins_a488db70f0)
CREATE TRIGGER "tsaccess_audit_ins_a488db70f0" AFTER INSERT ON "public"."sensor_readings" REFERENCING NEW TABLE AS tsaccess_new FOR EACH STATEMENT EXECUTE FUNCTION "public"."tsaccess_audit_stmt"('sensor_readings', 'counted');
-- audit statement-level on sensor_readings (tsaccess_audit_upd_3612c8b033)
CREATE TRIGGER "tsaccess_audit_upd_3612c8b033" AFTER UPDATE ON "public"."sensor_readings" REFERENCING NEW TABLE AS tsaccess_new FOR EACH STATEMENT EXECUTE FUNCTION "public"."tsaccess_audit_stmt"('sensor_readings', 'counted');
-- audit statement-level on sensor_readings (tsaccess_audit_del_96f4f7d790)
CREATE TRIGGER "tsaccess_audit_del_96f4f7d790" AFTER DELETE ON "public"."sensor_readings" REFERENCING OLD TABLE AS tsaccess_old FOR EACH STATEMENT EXECUTE FUNCTION "public"."tsaccess_audit_stmt"('sensor_readings', 'counted');
-- audit statement-level on sensor_readings (tsaccess_audit_trn_9dfc17edfd)
CREATE TRIGGER "tsaccess_audit_trn_9dfc17edfd" AFTER TRUNCATE ON "public"."sensor_readings"  FOR EACH STATEMENT EXECUTE FUNCTION "public"."tsaccess_audit_stmt"('sensor_readings', 'plain');
-- audit row-level on financial_metrics (tsaccess_audit_ins_8ddbc3e15d)
CREATE TRIGGER "tsaccess_audit_ins_8ddbc3e15d" AFTER INSERT ON "public"."financial_metrics" REFERENCING NEW TABLE AS tsaccess_new FOR EACH STATEMENT EXECUTE FUNCTION "tsaccess_audit"."financial_metrics"('financial_metrics');
-- audit row-level on financial_metrics (tsaccess_audit_upd_529addded1)
CREATE TRIGGER "tsaccess_audit_upd_529addded1" AFTER UPDATE ON "public"."financial_metrics" REFERENCING OLD TABLE AS tsaccess_old NEW TABLE AS tsaccess_new FOR EACH STATEMENT EXECUTE FUNCTION "tsaccess_audit"."financial_metrics"('financial_metrics');
-- audit row-level on financial_metrics (tsaccess_audit_del_69c42f1ada)
CREATE TRIGGER "tsaccess_audit_del_69c42f1ada" AFTER DELETE ON "public"."financial_metrics" REFERENCING OLD TABLE AS tsaccess_old FOR EACH STATEMENT EXECUTE FUNCTION "tsaccess_audit"."financial_metrics"('financial_metrics');
-- audit row-level on financial_metrics (tsaccess_audit_trn_5517015dfc)
CREATE TRIGGER "tsaccess_audit_trn_5517015dfc" AFTER TRUNCATE ON "public"."financial_metrics"  FOR EACH STATEMENT EXECUTE FUNCTION "public"."tsaccess_audit_stmt"('financial_metrics', 'plain');
-- create or replace view activity_audit_rows (one row per changed row)
CREATE OR REPLACE VIEW "public"."activity_audit_rows" ("audit_id", "event_time", "username", "operation", "table_name", "effective_role", "txid", "client_addr", "application_name", "actor", "request_id", "old_data", "new_data") AS SELECT a.id, a.event_time, a.username, a.operation, 'financial_metrics'::text, a.effective_role, a.txid, a.client_addr, a.application_name, a.actor, a.request_id, CASE WHEN pg_catalog.to_jsonb(d.old_data) IS NULL THEN NULL ELSE COALESCE((SELECT pg_catalog.jsonb_object_agg(e.key, e.value) FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(d.old_data)) e JOIN pg_catalog.pg_attribute c ON c.attrelid = pg_catalog.to_regclass('"public"."financial_metrics"') AND c.attname OPERATOR(pg_catalog.=) e.key AND c.attnum > 0 AND NOT c.attisdropped WHERE pg_catalog.has_column_privilege(c.attrelid, c.attnum, 'SELECT')), '{}'::jsonb) END, CASE WHEN pg_catalog.to_jsonb(d.new_data) IS NULL THEN NULL ELSE COALESCE((SELECT pg_catalog.jsonb_object_agg(e.key, e.value) FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(d.new_data)) e JOIN pg_catalog.pg_attribute c ON c.attrelid = pg_catalog.to_regclass('"public"."financial_metrics"') AND c.attname OPERATOR(pg_catalog.=) e.key AND c.attnum > 0 AND NOT c.attisdropped WHERE pg_catalog.has_column_privilege(c.attrelid, c.attnum, 'SELECT')), '{}'::jsonb) END FROM "tsaccess_audit"."financial_metrics" d JOIN "public"."activity_audit" a ON a.id = d.audit_id AND a.event_time = d.event_time;
-- mark activity_audit_rows as tsaccess's (definition digest)
COMMENT ON VIEW "public"."activity_audit_rows" IS 'tsaccess 88c973fbb5be22a8';
-- view activity_audit_rows owned by tsaccess_audit
ALTER VIEW "public"."activity_audit_rows" OWNER TO "tsaccess_audit";
-- grant USAGE on schema public to tsaccess_audit
GRANT USAGE ON SCHEMA "public" TO "tsaccess_audit";
-- grant SELECT on table activity_audit to auditors
GRANT SELECT ON TABLE "public"."activity_audit" TO "auditors";
-- grant SELECT on table activity_audit to security_monitoring
GRANT SELECT ON TABLE "public"."activity_audit" TO "security_monitoring";
-- grant SELECT on view activity_audit_rows to auditors
GRANT SELECT ON TABLE "public"."activity_audit_rows" TO "auditors";
-- grant SELECT on view activity_audit_rows to security_monitoring
GRANT SELECT ON TABLE "public"."activity_audit_rows" TO "security_monitoring";
COMMIT;
