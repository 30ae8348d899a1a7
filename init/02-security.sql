-- Rendered by tsaccess from examples/company.toml; do not edit by hand.
\set ON_ERROR_STOP on
BEGIN;
-- create group role data_analysts
CREATE ROLE "data_analysts" NOLOGIN;
-- create group role data_engineers
CREATE ROLE "data_engineers" NOLOGIN;
-- create group role department_managers
CREATE ROLE "department_managers" NOLOGIN;
-- create group role finance_users
CREATE ROLE "finance_users" NOLOGIN;
-- create group role auditors
CREATE ROLE "auditors" NOLOGIN;
-- create login user alice (password: TSACCESS_PASSWORD_ALICE)
\getenv tsaccess_pw_5 TSACCESS_PASSWORD_ALICE
\if :{?tsaccess_pw_5}
\else
DO $$ BEGIN RAISE EXCEPTION 'set TSACCESS_PASSWORD_ALICE in the environment'; END $$;
\endif
CREATE ROLE "alice" LOGIN INHERIT CONNECTION LIMIT  -1 PASSWORD :'tsaccess_pw_5';
-- create login user bob (password: TSACCESS_PASSWORD_BOB)
\getenv tsaccess_pw_6 TSACCESS_PASSWORD_BOB
\if :{?tsaccess_pw_6}
\else
DO $$ BEGIN RAISE EXCEPTION 'set TSACCESS_PASSWORD_BOB in the environment'; END $$;
\endif
CREATE ROLE "bob" LOGIN INHERIT CONNECTION LIMIT  -1 PASSWORD :'tsaccess_pw_6';
-- create login user carol (password: TSACCESS_PASSWORD_CAROL)
\getenv tsaccess_pw_7 TSACCESS_PASSWORD_CAROL
\if :{?tsaccess_pw_7}
\else
DO $$ BEGIN RAISE EXCEPTION 'set TSACCESS_PASSWORD_CAROL in the environment'; END $$;
\endif
CREATE ROLE "carol" LOGIN INHERIT CONNECTION LIMIT  -1 PASSWORD :'tsaccess_pw_7';
-- create login user david (password: TSACCESS_PASSWORD_DAVID)
\getenv tsaccess_pw_8 TSACCESS_PASSWORD_DAVID
\if :{?tsaccess_pw_8}
\else
DO $$ BEGIN RAISE EXCEPTION 'set TSACCESS_PASSWORD_DAVID in the environment'; END $$;
\endif
CREATE ROLE "david" LOGIN INHERIT CONNECTION LIMIT  -1 PASSWORD :'tsaccess_pw_8';
-- create login user eve (password: TSACCESS_PASSWORD_EVE)
\getenv tsaccess_pw_9 TSACCESS_PASSWORD_EVE
\if :{?tsaccess_pw_9}
\else
DO $$ BEGIN RAISE EXCEPTION 'set TSACCESS_PASSWORD_EVE in the environment'; END $$;
\endif
CREATE ROLE "eve" LOGIN INHERIT CONNECTION LIMIT  -1 PASSWORD :'tsaccess_pw_9';
-- grant role auditors to eve
GRANT "auditors" TO "eve";
-- grant role data_analysts to alice
GRANT "data_analysts" TO "alice";
-- grant role data_engineers to bob
GRANT "data_engineers" TO "bob";
-- grant role department_managers to carol
GRANT "department_managers" TO "carol";
-- grant role finance_users to david
GRANT "finance_users" TO "david";
-- revoke CONNECT, TEMPORARY on database company_db from PUBLIC
REVOKE CONNECT, TEMPORARY ON DATABASE "company_db" FROM PUBLIC;
-- grant CONNECT on database company_db to auditors
GRANT CONNECT ON DATABASE "company_db" TO "auditors";
-- grant CONNECT on database company_db to data_analysts
GRANT CONNECT ON DATABASE "company_db" TO "data_analysts";
-- grant CONNECT on database company_db to data_engineers
GRANT CONNECT ON DATABASE "company_db" TO "data_engineers";
-- grant CONNECT on database company_db to department_managers
GRANT CONNECT ON DATABASE "company_db" TO "department_managers";
-- grant CONNECT on database company_db to finance_users
GRANT CONNECT ON DATABASE "company_db" TO "finance_users";
-- revoke USAGE on schema public from PUBLIC
REVOKE USAGE ON SCHEMA "public" FROM PUBLIC;
-- grant USAGE on schema public to auditors
GRANT USAGE ON SCHEMA "public" TO "auditors";
-- grant USAGE on schema public to data_analysts
GRANT USAGE ON SCHEMA "public" TO "data_analysts";
-- grant USAGE on schema public to data_engineers
GRANT USAGE ON SCHEMA "public" TO "data_engineers";
-- grant USAGE on schema public to department_managers
GRANT USAGE ON SCHEMA "public" TO "department_managers";
-- grant USAGE on schema public to finance_users
GRANT USAGE ON SCHEMA "public" TO "finance_users";
-- grant SELECT on table sensor_readings to data_analysts
GRANT SELECT ON TABLE "public"."sensor_readings" TO "data_analysts";
-- grant DELETE, INSERT, SELECT, UPDATE on table sensor_readings to data_engineers
GRANT DELETE, INSERT, SELECT, UPDATE ON TABLE "public"."sensor_readings" TO "data_engineers";
-- grant SELECT on table sensor_readings to department_managers
GRANT SELECT ON TABLE "public"."sensor_readings" TO "department_managers";
-- grant SELECT on table sensor_readings to finance_users
GRANT SELECT ON TABLE "public"."sensor_readings" TO "finance_users";
-- grant SELECT on table financial_metrics to department_managers
GRANT SELECT ON TABLE "public"."financial_metrics" TO "department_managers";
-- grant DELETE, INSERT, SELECT, UPDATE on table financial_metrics to finance_users
GRANT DELETE, INSERT, SELECT, UPDATE ON TABLE "public"."financial_metrics" TO "finance_users";
-- create table tsaccess_chunk_state: the newest chunk closed per hypertable (its owner's only)
CREATE TABLE "public"."tsaccess_chunk_state" (relid oid PRIMARY KEY, chunk_id integer NOT NULL);
-- create sequence tsaccess_chunk_mark: each session's mark of the chunks it closed (currval)
CREATE SEQUENCE "public"."tsaccess_chunk_mark" AS bigint MINVALUE 0;
-- grant SELECT on tsaccess_chunk_mark to PUBLIC
GRANT SELECT ON SEQUENCE "public"."tsaccess_chunk_mark" TO PUBLIC;
-- create function tsaccess_chunk_fix(): close every new chunk of the policy's hypertables (as their owner)
CREATE OR REPLACE FUNCTION "public"."tsaccess_chunk_fix"() RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS  E'
DECLARE
  last bigint := pg_sequence_last_value(''_timescaledb_catalog.chunk_id_seq''::regclass);
  t record;
  b bytea;
  p integer;
  roles name[];
  seen integer;
  top integer;
  ch regclass;
  sliced text;
  writers text;
BEGIN
  FOR t IN
    SELECT g.tgrelid AS relid, h.id AS htid, g.tgargs
    FROM pg_trigger g
    JOIN pg_class k ON k.oid = g.tgrelid
    JOIN pg_namespace n ON n.oid = k.relnamespace
    JOIN _timescaledb_catalog.hypertable h ON h.schema_name = n.nspname AND h.table_name = k.relname
    WHERE g.tgfoid = ''"public"."tsaccess_chunk_acl"()''::regprocedure
      AND EXISTS (SELECT FROM _timescaledb_catalog.chunk c WHERE c.hypertable_id = h.id
                  AND c.id > coalesce((SELECT s.chunk_id FROM "public"."tsaccess_chunk_state" s WHERE s.relid = g.tgrelid), 0))
    ORDER BY g.tgrelid
  LOOP
    -- the hypertable''s sliced roles: its trigger''s arguments (NUL-terminated)
    roles := ''{}'';
    b := t.tgargs;
    LOOP
      p := position(''\\x00''::bytea IN b);
      EXIT WHEN p = 0;
      roles := roles || convert_from(substring(b FROM 1 FOR p - 1),
                                     current_setting(''server_encoding''))::name;
      b := substring(b FROM p + 1);
    END LOOP;
    INSERT INTO "public"."tsaccess_chunk_state" (relid, chunk_id) VALUES (t.relid, 0) ON CONFLICT (relid) DO NOTHING;
    SELECT s.chunk_id INTO seen FROM "public"."tsaccess_chunk_state" s WHERE s.relid = t.relid FOR UPDATE;
    SELECT max(c.id) INTO top FROM _timescaledb_catalog.chunk c
    WHERE c.hypertable_id = t.htid AND c.id > seen;
    CONTINUE WHEN top IS NULL;
    FOR ch, sliced, writers IN
      SELECT x.ch, x.sliced, x.writers FROM (
        SELECT k.oid::regclass AS ch,
          (SELECT string_agg(DISTINCT quote_ident(r.rolname), '', '')
           FROM aclexplode(k.relacl) a JOIN pg_roles r ON r.oid = a.grantee
           WHERE r.rolname = ANY (roles)) AS sliced,
          (SELECT string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN ''PUBLIC''
             ELSE quote_ident(pg_get_userbyid(a.grantee)) END, '', '')
           FROM aclexplode(k.relacl) a
           WHERE a.grantee <> k.relowner AND a.privilege_type <> ''SELECT'') AS writers
        FROM _timescaledb_catalog.chunk c
        JOIN pg_namespace n ON n.nspname = c.schema_name
        JOIN pg_class k ON k.relnamespace = n.oid AND k.relname = c.table_name
        WHERE c.hypertable_id = t.htid AND c.id > seen AND c.id <= top
      ) x
      WHERE x.sliced IS NOT NULL OR x.writers IS NOT NULL
    LOOP
      IF sliced IS NOT NULL THEN
        EXECUTE format(''REVOKE ALL ON TABLE %s FROM %s'', ch, sliced);
      END IF;
      IF writers IS NOT NULL THEN
        EXECUTE format(
          ''REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLE %s FROM %s'',
          ch, writers);
      END IF;
    END LOOP;
    UPDATE "public"."tsaccess_chunk_state" SET chunk_id = top WHERE relid = t.relid;
  END LOOP;
  IF last IS NULL THEN
    RETURN false;
  END IF;
  PERFORM setval(''"public"."tsaccess_chunk_mark"''::regclass, last, true);
  RETURN true;
END
';
-- revoke EXECUTE on function tsaccess_chunk_fix from PUBLIC
REVOKE EXECUTE ON FUNCTION "public"."tsaccess_chunk_fix"() FROM PUBLIC;
-- grant EXECUTE on function tsaccess_chunk_fix to data_engineers
GRANT EXECUTE ON FUNCTION "public"."tsaccess_chunk_fix"() TO "data_engineers";
-- grant EXECUTE on function tsaccess_chunk_fix to finance_users
GRANT EXECUTE ON FUNCTION "public"."tsaccess_chunk_fix"() TO "finance_users";
-- create function tsaccess_chunk_acl(): the chunk trigger: two comparisons unless the statement made a chunk
CREATE OR REPLACE FUNCTION "public"."tsaccess_chunk_acl"() RETURNS trigger LANGUAGE plpgsql VOLATILE AS '
BEGIN
  IF pg_catalog.pg_stat_get_xact_tuples_inserted(
       ''_timescaledb_catalog.chunk''::pg_catalog.regclass) OPERATOR(pg_catalog.=) 0
     AND pg_catalog.current_setting(''track_counts'') OPERATOR(pg_catalog.=) ''on'' THEN
    RETURN NULL;  -- this backend made no chunk since its statistics were last flushed
  END IF;
  IF pg_catalog.current_setting(''tsaccess.chunk_mark'', true) OPERATOR(pg_catalog.=) ''on'' THEN
    IF pg_catalog.pg_sequence_last_value(''_timescaledb_catalog.chunk_id_seq''::pg_catalog.regclass)
       OPERATOR(pg_catalog.=) pg_catalog.currval(''"public"."tsaccess_chunk_mark"''::pg_catalog.regclass) THEN
      RETURN NULL;  -- no chunk id handed out anywhere since this session closed every new chunk
    END IF;
  END IF;
  IF "public"."tsaccess_chunk_fix"() THEN
    PERFORM pg_catalog.set_config(''tsaccess.chunk_mark'', ''on'', false);
  END IF;
  RETURN NULL;
END
';
-- revoke EXECUTE on function tsaccess_chunk_acl from PUBLIC
REVOKE EXECUTE ON FUNCTION "public"."tsaccess_chunk_acl"() FROM PUBLIC;
-- new chunks of sensor_readings: no writes by anyone but the owner
CREATE TRIGGER "tsaccess_chunk_acl_e3b0c44298fc" AFTER INSERT OR UPDATE ON "public"."sensor_readings" FOR EACH STATEMENT EXECUTE FUNCTION "public"."tsaccess_chunk_acl"();
-- chunks of sensor_readings closed up to the newest one (the chunk trigger starts there)
INSERT INTO "public"."tsaccess_chunk_state" (relid, chunk_id) SELECT '"public"."sensor_readings"'::regclass, coalesce(max(c.id), 0) FROM _timescaledb_catalog.hypertable h LEFT JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = h.id WHERE h.schema_name = 'public' AND h.table_name = 'sensor_readings' ON CONFLICT (relid) DO UPDATE SET chunk_id = EXCLUDED.chunk_id;
-- new chunks of financial_metrics: no writes by anyone but the owner
CREATE TRIGGER "tsaccess_chunk_acl_e3b0c44298fc" AFTER INSERT OR UPDATE ON "public"."financial_metrics" FOR EACH STATEMENT EXECUTE FUNCTION "public"."tsaccess_chunk_acl"();
-- chunks of financial_metrics closed up to the newest one (the chunk trigger starts there)
INSERT INTO "public"."tsaccess_chunk_state" (relid, chunk_id) SELECT '"public"."financial_metrics"'::regclass, coalesce(max(c.id), 0) FROM _timescaledb_catalog.hypertable h LEFT JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = h.id WHERE h.schema_name = 'public' AND h.table_name = 'financial_metrics' ON CONFLICT (relid) DO UPDATE SET chunk_id = EXCLUDED.chunk_id;
-- EXECUTE on TimescaleDB's routines by the rule, derived on the server after the extension is created (PUBLIC keeps what normal use calls, owners their jobs' entry points)
DO  E'DECLARE rt record; BEGIN FOR rt IN SELECT * FROM (
WITH RECURSIVE
ext AS (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = ''timescaledb''),
members AS (
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext
  WHERE d.refclassid = ''pg_catalog.pg_extension''::pg_catalog.regclass AND d.refobjid = ext.oid
    AND d.deptype = ''e''),
surface AS (
  SELECT p.oid, n.nspname, p.proname, p.prokind, l.lanname, p.prosrc, p.proowner, p.proacl,
         pg_catalog.oidvectortypes(p.proargtypes) AS args, p.prorettype,
         n.nspname = ANY (ARRAY[''_timescaledb_functions'', ''_timescaledb_internal'', ''timescaledb_experimental'']::text[]) AS internal
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang
  WHERE n.nspname = ANY (ARRAY[''_timescaledb_functions'', ''_timescaledb_internal'', ''timescaledb_experimental'']::text[])
     OR p.oid IN (SELECT objid FROM members WHERE classid = ''pg_catalog.pg_proc''::pg_catalog.regclass)),
calls AS (
  SELECT o.oid AS caller, i.oid AS callee
  FROM surface o JOIN surface i ON i.internal AND i.oid <> o.oid
   AND pg_catalog.strpos(o.prosrc, i.proname) > 0
   AND o.prosrc OPERATOR(pg_catalog.~*)
       (i.nspname OPERATOR(pg_catalog.||) ''\\s*\\.\\s*"?'' OPERATOR(pg_catalog.||) i.proname
        OPERATOR(pg_catalog.||) ''"?\\s*\\('')
  WHERE o.lanname IN (''sql'', ''plpgsql'')),
aggregate_views AS (
  SELECT pg_catalog.to_regclass(pg_catalog.format(''%I.%I'', x.s, x.v)) AS rel
  FROM _timescaledb_catalog.continuous_agg ca,
  LATERAL (VALUES (ca.user_view_schema, ca.user_view_name),
                  (ca.partial_view_schema, ca.partial_view_name),
                  (ca.direct_view_schema, ca.direct_view_name)) x(s, v)),
keep AS (
  SELECT d.refobjid AS oid, ''used by view '' || r.ev_class::pg_catalog.regclass::text AS why
  FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
  WHERE d.classid = ''pg_catalog.pg_rewrite''::pg_catalog.regclass
    AND d.refclassid = ''pg_catalog.pg_proc''::pg_catalog.regclass
    AND d.refobjid IN (SELECT oid FROM surface WHERE internal)
    AND (r.ev_class IN (SELECT objid FROM members
                        WHERE classid = ''pg_catalog.pg_class''::pg_catalog.regclass)
         OR r.ev_class IN (SELECT rel FROM aggregate_views))
  UNION SELECT c.callee, ''called by '' || c.caller::pg_catalog.regprocedure::text
  FROM calls c JOIN surface o ON o.oid = c.caller AND NOT o.internal
  UNION SELECT c.callee, ''called by '' || c.caller::pg_catalog.regprocedure::text
  FROM keep k JOIN calls c ON c.caller = k.oid),
job AS (
  SELECT s.oid, ''job entry point'' AS why FROM surface s
  WHERE s.nspname = ''_timescaledb_functions''
    AND (s.args = ''integer, jsonb'' OR (s.prokind = ''f'' AND s.args = ''jsonb''
         AND s.prorettype = ''pg_catalog.void''::pg_catalog.regtype))
  UNION SELECT pg_catalog.to_regprocedure(pg_catalog.format(''%I.%I(integer, jsonb)'',
                 j.proc_schema, j.proc_name))::oid, ''job '' || j.id
  FROM _timescaledb_config.bgw_job j
  UNION SELECT pg_catalog.to_regprocedure(pg_catalog.format(''%I.%I(jsonb)'',
                 j.check_schema, j.check_name))::oid, ''check of job '' || j.id
  FROM _timescaledb_config.bgw_job j WHERE j.check_name IS NOT NULL
  UNION SELECT c.callee, ''called by '' || c.caller::pg_catalog.regprocedure::text
  FROM job k JOIN calls c ON c.caller = k.oid),
keep_why AS (
  SELECT oid, pg_catalog.string_agg(DISTINCT why, ''; '' ORDER BY why) AS why FROM keep GROUP BY oid),
job_why AS (
  SELECT oid, pg_catalog.string_agg(DISTINCT why, ''; '' ORDER BY why) AS why FROM job GROUP BY oid)
SELECT s.nspname::text, s.proname::text, s.args, s.prokind::text, s.internal,
  pg_catalog.pg_get_userbyid(s.proowner)::text,
  (SELECT pg_catalog.array_agg(ARRAY[CASE WHEN a.grantee = 0 THEN ''PUBLIC''
          ELSE pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type])
   FROM pg_catalog.aclexplode(coalesce(s.proacl, pg_catalog.acldefault(''f'', s.proowner))) a
   WHERE a.grantee <> s.proowner),
  CASE WHEN s.internal THEN k.why
       WHEN s.proname <> ALL (ARRAY[''add_job'', ''get_telemetry_report'']::text[]) THEN ''public API'' END,
  j.why,
  EXISTS (SELECT FROM pg_catalog.aclexplode(coalesce(s.proacl,
          pg_catalog.acldefault(''f'', s.proowner))) a
          WHERE a.grantee = 0 AND a.privilege_type = ''EXECUTE'')
FROM surface s LEFT JOIN keep_why k ON k.oid = s.oid LEFT JOIN job_why j ON j.oid = s.oid
) d(schema, name, args, kind, internal, owner, grants, keep, job, public) LOOP IF rt.keep IS NULL AND rt.public THEN EXECUTE pg_catalog.format(''REVOKE EXECUTE ON ROUTINE %I.%I(%s) FROM PUBLIC'', rt.schema, rt.name, rt.args); ELSIF rt.keep IS NOT NULL AND NOT rt.public THEN EXECUTE pg_catalog.format(''GRANT EXECUTE ON ROUTINE %I.%I(%s) TO PUBLIC'', rt.schema, rt.name, rt.args); END IF; END LOOP; END';
-- mark role data_analysts as managed by tsaccess
COMMENT ON ROLE "data_analysts" IS 'tsaccess:managed {"databases": ["company_db"]}';
-- mark role data_engineers as managed by tsaccess
COMMENT ON ROLE "data_engineers" IS 'tsaccess:managed {"databases": ["company_db"]}';
-- mark role department_managers as managed by tsaccess
COMMENT ON ROLE "department_managers" IS 'tsaccess:managed {"databases": ["company_db"]}';
-- mark role finance_users as managed by tsaccess
COMMENT ON ROLE "finance_users" IS 'tsaccess:managed {"databases": ["company_db"]}';
-- mark role auditors as managed by tsaccess
COMMENT ON ROLE "auditors" IS 'tsaccess:managed {"databases": ["company_db"]}';
-- mark user alice as managed by tsaccess
COMMENT ON ROLE "alice" IS 'tsaccess:managed {"databases": ["company_db"]}';
-- mark user bob as managed by tsaccess
COMMENT ON ROLE "bob" IS 'tsaccess:managed {"databases": ["company_db"]}';
-- mark user carol as managed by tsaccess
COMMENT ON ROLE "carol" IS 'tsaccess:managed {"databases": ["company_db"]}';
-- mark user david as managed by tsaccess
COMMENT ON ROLE "david" IS 'tsaccess:managed {"databases": ["company_db"]}';
-- mark user eve as managed by tsaccess
COMMENT ON ROLE "eve" IS 'tsaccess:managed {"databases": ["company_db"]}';
COMMIT;
