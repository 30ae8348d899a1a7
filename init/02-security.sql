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
-- create function tsaccess_chunk_acl(): new chunks: no writes, nothing for sliced roles
CREATE OR REPLACE FUNCTION "public"."tsaccess_chunk_acl"() RETURNS trigger LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS '
DECLARE
  ch regclass;
  sliced text;
  writers text;
BEGIN
  FOR ch, sliced, writers IN
    SELECT x.ch, x.sliced, x.writers FROM (
      SELECT k.oid::regclass AS ch,
        (SELECT pg_catalog.string_agg(DISTINCT pg_catalog.quote_ident(g.rolname), '', '')
         FROM pg_catalog.aclexplode(k.relacl) a
         JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
         WHERE g.rolname = ANY (TG_ARGV)) AS sliced,
        (SELECT pg_catalog.string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN ''PUBLIC''
           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, '', '')
         FROM pg_catalog.aclexplode(k.relacl) a
         WHERE a.grantee <> k.relowner AND a.privilege_type <> ''SELECT'') AS writers
      FROM _timescaledb_catalog.hypertable h
      JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = h.id
      JOIN pg_catalog.pg_class k
        ON k.oid = pg_catalog.to_regclass(pg_catalog.format(''%I.%I'', c.schema_name, c.table_name))
      WHERE h.schema_name = TG_TABLE_SCHEMA AND h.table_name = TG_TABLE_NAME
        AND c.creation_time >= pg_catalog.transaction_timestamp() - interval ''5 minutes''
    ) x
    WHERE x.sliced IS NOT NULL OR x.writers IS NOT NULL
  LOOP
    IF sliced IS NOT NULL THEN
      EXECUTE pg_catalog.format(''REVOKE ALL ON TABLE %s FROM %s'', ch, sliced);
    END IF;
    IF writers IS NOT NULL THEN
      EXECUTE pg_catalog.format(
        ''REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLE %s FROM %s'',
        ch, writers);
    END IF;
  END LOOP;
  RETURN NULL;
END
';
-- revoke EXECUTE on function tsaccess_chunk_acl from PUBLIC
REVOKE EXECUTE ON FUNCTION "public"."tsaccess_chunk_acl"() FROM PUBLIC;
-- new chunks of sensor_readings: no writes by anyone but the owner
CREATE TRIGGER "tsaccess_chunk_acl_e3b0c44298fc" AFTER INSERT OR UPDATE ON "public"."sensor_readings" FOR EACH STATEMENT EXECUTE FUNCTION "public"."tsaccess_chunk_acl"();
-- new chunks of financial_metrics: no writes by anyone but the owner
CREATE TRIGGER "tsaccess_chunk_acl_e3b0c44298fc" AFTER INSERT OR UPDATE ON "public"."financial_metrics" FOR EACH STATEMENT EXECUTE FUNCTION "public"."tsaccess_chunk_acl"();
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
