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
CREATE OR REPLACE FUNCTION "tsaccess_audit"."financial_metrics"() RETURNS trigger LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tsaccess$
DECLARE
  eff text := coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text);
  app text := nullif(pg_catalog.current_setting('application_name'), '');
  act text := nullif(pg_catalog.current_setting('tsaccess.actor', true), '');
  req text := nullif(pg_catalog.current_setting('tsaccess.request_id', true), '');
  addr inet := pg_catalog.inet_client_addr();
  tx bigint := pg_catalog.txid_current();
  tbl text := TG_ARGV[0];
  n bigint;
  aid bigint;
  ts timestamptz := pg_catalog.now();
  est text;
  zip_limit text := pg_catalog.current_setting('tsaccess.audit_zip_rows', true);
  o_cur refcursor;
  n_cur refcursor;
  o_rec record;
  n_rec record;
BEGIN
  IF TG_LEVEL = 'ROW' THEN  -- no transition tables (DELETE on a compressed hypertable)
    INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
    VALUES (session_user, TG_OP, tbl, TG_OP || ' row', eff, tx, addr, app, act, req, 1,
            (act IS NOT NULL OR req IS NOT NULL OR app IS NOT NULL))
    RETURNING id, event_time INTO aid, ts;
    INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, old_data) VALUES (aid, ts, ROW("old"."time", "old"."metric_type", "old"."amount", "old"."currency", "old"."department", "old"."is_confidential")::"tsaccess_audit"."financial_metrics_row");
    RETURN NULL;
  END IF;
  -- the statement's audit id first, so the changed rows are written (and counted) in one pass
  aid := pg_catalog.nextval(pg_catalog.pg_get_serial_sequence('"public"."activity_audit"', 'id'));
  IF TG_OP = 'INSERT' THEN
    INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, new_data)
    SELECT aid, ts, ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM tsaccess_new r;
    GET DIAGNOSTICS n = ROW_COUNT;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, old_data)
    SELECT aid, ts, ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM tsaccess_old r;
    GET DIAGNOSTICS n = ROW_COUNT;
  ELSE
    -- old and new rows are captured pairwise, in the same order: zip them, as two arrays up to
    -- tsaccess.audit_zip_rows rows (default 1,000,000), beyond that (an array is limited to
    -- 1 GB) by walking both transition tables in step
    SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM tsaccess_new LIMIT 1000) s;
    IF n = 1000 THEN
      EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM tsaccess_new' INTO est;
      est := est::json -> 0 -> 'Plan' ->> 'Plan Rows';
      IF est ~ '^[0-9]{1,18}$' THEN
        n := est::bigint;
      ELSE
        EXECUTE 'SELECT pg_catalog.count(*) FROM tsaccess_new' INTO n;
      END IF;
    END IF;
    IF zip_limit IS NULL OR zip_limit !~ '^[0-9]{1,18}$' THEN
      zip_limit := '1000000';
    END IF;
    IF n <= zip_limit::bigint THEN
      INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, old_data, new_data)
      SELECT aid, ts, pg_catalog.unnest(ARRAY(SELECT ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM tsaccess_old r)),
             pg_catalog.unnest(ARRAY(SELECT ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" FROM tsaccess_new r));
      GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
      n := 0;
      OPEN o_cur NO SCROLL FOR SELECT ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" AS v FROM tsaccess_old r;
      OPEN n_cur NO SCROLL FOR SELECT ROW("r"."time", "r"."metric_type", "r"."amount", "r"."currency", "r"."department", "r"."is_confidential")::"tsaccess_audit"."financial_metrics_row" AS v FROM tsaccess_new r;
      LOOP
        FETCH o_cur INTO o_rec;
        EXIT WHEN NOT FOUND;
        FETCH n_cur INTO n_rec;
        INSERT INTO "tsaccess_audit"."financial_metrics" (audit_id, event_time, old_data, new_data)
        VALUES (aid, ts, o_rec.v, n_rec.v);
        n := n + 1;
      END LOOP;
      CLOSE o_cur;
      CLOSE n_cur;
    END IF;
  END IF;
  IF n = 0 AND pg_catalog.current_query() ~* '^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*(merge|with)\M'
      AND pg_catalog.current_query() !~ ';\s*\S' THEN
    RETURN NULL;  -- an action of a lone MERGE or WITH statement that changed no row
  END IF;
  INSERT INTO "public"."activity_audit" (id, event_time, username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted) OVERRIDING SYSTEM VALUE
  VALUES (aid, ts, session_user, TG_OP, tbl, TG_OP || ' of ' || n || ' row(s)', eff, tx, addr,
          app, act, req, n, (act IS NOT NULL OR req IS NOT NULL OR app IS NOT NULL));
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
-- create or replace audit function tsaccess_audit_stmt
CREATE OR REPLACE FUNCTION "public"."tsaccess_audit_stmt"() RETURNS trigger LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tsaccess$
DECLARE
  eff text := coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text);
  app text := nullif(pg_catalog.current_setting('application_name'), '');
  act text := nullif(pg_catalog.current_setting('tsaccess.actor', true), '');
  req text := nullif(pg_catalog.current_setting('tsaccess.request_id', true), '');
  addr inet := pg_catalog.inet_client_addr();
  tx bigint := pg_catalog.txid_current();
  tbl text := TG_ARGV[0];
  n bigint;
  est text;
BEGIN
  IF TG_ARGV[1] = 'counted' THEN
    IF TG_OP = 'DELETE' THEN
      SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM tsaccess_old LIMIT 1000) s;
      IF n = 1000 THEN
        EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM tsaccess_old' INTO est;
        est := est::json -> 0 -> 'Plan' ->> 'Plan Rows';
        IF est ~ '^[0-9]{1,18}$' THEN
          n := est::bigint;
        ELSE
          EXECUTE 'SELECT pg_catalog.count(*) FROM tsaccess_old' INTO n;
        END IF;
      END IF;
    ELSIF TG_OP <> 'TRUNCATE' THEN
      SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM tsaccess_new LIMIT 1000) s;
      IF n = 1000 THEN
        EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM tsaccess_new' INTO est;
        est := est::json -> 0 -> 'Plan' ->> 'Plan Rows';
        IF est ~ '^[0-9]{1,18}$' THEN
          n := est::bigint;
        ELSE
          EXECUTE 'SELECT pg_catalog.count(*) FROM tsaccess_new' INTO n;
        END IF;
      END IF;
    END IF;
    IF n = 0 AND pg_catalog.current_query() ~* '^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*(merge|with)\M'
        AND pg_catalog.current_query() !~ ';\s*\S' THEN
      RETURN NULL;  -- an action of a lone MERGE or WITH statement that changed no row
    END IF;
  END IF;
  INSERT INTO "public"."activity_audit" (username, operation, table_name, description, effective_role, txid, client_addr, application_name, actor, request_id, row_count, client_asserted)
  VALUES (session_user, TG_OP, tbl,
          TG_OP || CASE WHEN n IS NULL THEN '' ELSE ' of ' || n || ' row(s)' END,
          eff, tx, addr, app, act, req, n, (act IS NOT NULL OR req IS NOT NULL OR app IS NOT NULL));
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
-- grant SELECT on view activity_audit_rows to auditors
GRANT SELECT ON TABLE "public"."activity_audit_rows" TO "auditors";
COMMIT;
