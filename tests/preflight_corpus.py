"""A corpus written to break pre-flight, on the example policies (examples/company.toml and
examples/timescale.toml), for the differential test (tests/integration/test_preflight_corpus.py).

Every kind of statement the server refuses for privileges, and the forms that used to fool the
analysis: constant-false branches, recursive CTEs, outer references, joins with subquery sides,
functions, sequences, settings, server files, locks, DDL, prepared statements, cursors,
role and search_path changes inside a string, forms sqlglot cannot parse. ``mutations`` derives
variants of each query (case, quoting, comments, qualification, wrapping), so a rule that only
knows one spelling fails.

Placeholders: ``{chunk_sr}`` / ``{chunk_fm}`` a chunk of sensor_readings / financial_metrics
(statements with them are skipped without TimescaleDB); ``{cagg}`` marks statements on the
continuous aggregate (timescale policy only).
"""

from __future__ import annotations

import random
import re

# objects the corpus adds to a database the policy was applied to (run as the administrator)
EXTRA_OBJECTS = """
INSERT INTO sensor_readings (time, sensor_id, temperature, humidity, location, department)
  SELECT now() - g * interval '1 hour', 's' || (g % 3), 20 + g, 40, 'hall', 'Sales'
  FROM generate_series(1, 5) g;
INSERT INTO financial_metrics (time, metric_type, amount, department)
  SELECT now() - g * interval '1 hour', 'revenue', g * 100, 'Sales'
  FROM generate_series(1, 5) g;
CREATE SEQUENCE public.ticket_seq;
GRANT USAGE ON SEQUENCE public.ticket_seq TO data_engineers;
GRANT SELECT ON SEQUENCE public.ticket_seq TO finance_users;
CREATE TABLE public.tickets (id bigint DEFAULT nextval('public.ticket_seq'), note text);
GRANT INSERT (note), SELECT ON public.tickets TO data_analysts, data_engineers;
CREATE FUNCTION public.secret_total() RETURNS numeric LANGUAGE sql
  AS 'SELECT sum(amount) FROM public.financial_metrics';
REVOKE EXECUTE ON FUNCTION public.secret_total() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.secret_total() TO finance_users;
CREATE FUNCTION public.double_it(x numeric) RETURNS numeric LANGUAGE sql IMMUTABLE
  AS 'SELECT x * 2';
CREATE VIEW public.sensor_summary AS
  SELECT sensor_id, avg(temperature) AS avg_t FROM public.sensor_readings GROUP BY 1;
GRANT SELECT ON public.sensor_summary TO data_analysts;
CREATE SCHEMA scratch;
GRANT USAGE, CREATE ON SCHEMA scratch TO data_engineers;
GRANT USAGE ON SCHEMA scratch TO data_analysts;
CREATE TABLE scratch.notes (id int PRIMARY KEY, body text, owner text);
GRANT SELECT (id, body) ON scratch.notes TO data_analysts;
GRANT ALL ON scratch.notes TO data_engineers;
"""

_READS = [
    # plain reads, column grants, whole rows
    "SELECT * FROM sensor_readings",
    "SELECT sensor_id, temperature FROM sensor_readings WHERE humidity > 10",
    "SELECT amount FROM financial_metrics",
    "SELECT metric_type, currency FROM financial_metrics",
    "SELECT count(*) FROM financial_metrics",
    "SELECT f FROM financial_metrics f",
    "SELECT row_to_json(f) FROM financial_metrics f LIMIT 1",
    "SELECT (f).amount FROM financial_metrics f",
    "SELECT financial_metrics.* FROM financial_metrics",
    "SELECT * FROM activity_audit",
    "SELECT * FROM activity_audit_rows",
    "SELECT * FROM sensor_summary",
    "SELECT id, body FROM scratch.notes",
    "SELECT owner FROM scratch.notes",
    "SELECT n FROM scratch.notes n",
    "SELECT * FROM scratch.notes",
    "SELECT body FROM scratch.notes WHERE owner IS NULL",
    "SELECT id FROM scratch.notes ORDER BY owner",
    "SELECT ctid FROM scratch.notes",
    "SELECT * FROM tsaccess_audit.financial_metrics",
    "SELECT 1 FROM tsaccess_audit.financial_metrics WHERE false",
    "SELECT * FROM tickets",
    "TABLE financial_metrics",
    "TABLE sensor_readings",
    "SELECT * FROM ONLY sensor_readings",
    "SELECT * FROM sensor_readings * LIMIT 1",
    # joins
    "SELECT s.sensor_id, f.amount FROM sensor_readings s JOIN financial_metrics f ON"
    " f.department = s.department",
    "SELECT s.sensor_id FROM sensor_readings s JOIN financial_metrics f USING (department)",
    "SELECT 1 FROM sensor_readings NATURAL JOIN financial_metrics",
    "SELECT s.sensor_id FROM sensor_readings s LEFT JOIN financial_metrics f ON true",
    "SELECT 1 FROM sensor_readings s, financial_metrics f WHERE s.time = f.time",
    "SELECT count(*) FROM sensor_readings s CROSS JOIN scratch.notes n",
    "SELECT n.body FROM scratch.notes n JOIN sensor_readings s ON s.sensor_id = n.body",
    "SELECT 1 FROM financial_metrics NATURAL JOIN (SELECT 'Sales'::text AS department) d",
    "SELECT 1 FROM (SELECT 'Sales'::text AS department) d NATURAL JOIN financial_metrics",
    "SELECT 1 FROM (SELECT 'Sales'::text AS department) d JOIN financial_metrics USING"
    " (department)",
    "SELECT 1 FROM scratch.notes JOIN (SELECT 1 AS id) x USING (id)",
    "SELECT 1 FROM scratch.notes NATURAL JOIN (SELECT 1 AS id, 'x'::text AS owner) x",
    "SELECT 1 FROM (sensor_readings s JOIN financial_metrics f ON f.time = s.time)",
    "SELECT 1 FROM sensor_readings s JOIN LATERAL (SELECT f.amount FROM financial_metrics f"
    " WHERE f.time = s.time) l ON true",
    "SELECT 1 FROM sensor_readings s, LATERAL (SELECT s.temperature) l",
    # subqueries, outer references
    "SELECT (SELECT amount FROM sensor_readings LIMIT 1) FROM financial_metrics",
    "SELECT (SELECT max(amount) FROM financial_metrics) FROM sensor_readings",
    "SELECT sensor_id FROM sensor_readings WHERE EXISTS (SELECT 1 FROM financial_metrics f"
    " WHERE f.department = sensor_readings.department)",
    "SELECT sensor_id FROM sensor_readings WHERE department IN (SELECT department FROM"
    " financial_metrics)",
    "SELECT sensor_id FROM sensor_readings s WHERE temperature > (SELECT avg(amount) FROM"
    " financial_metrics)",
    "SELECT * FROM (SELECT amount FROM financial_metrics) x",
    "SELECT x.a FROM (SELECT amount AS a FROM financial_metrics) x",
    "SELECT 1 FROM sensor_readings WHERE (SELECT count(*) FROM scratch.notes WHERE owner ="
    " sensor_id) > 0",
    "SELECT (SELECT owner FROM sensor_readings LIMIT 1) FROM scratch.notes",
    "SELECT (SELECT body FROM sensor_readings LIMIT 1) FROM scratch.notes",
    "SELECT (SELECT is_confidential FROM sensor_readings s LIMIT 1) FROM financial_metrics",
    # CTEs, recursive shadowing
    "WITH x AS (SELECT amount FROM financial_metrics) SELECT * FROM x",
    "WITH x AS (SELECT amount FROM financial_metrics) SELECT 1",
    "WITH financial_metrics AS (SELECT 1 AS amount) SELECT amount FROM financial_metrics",
    "WITH RECURSIVE a AS (SELECT * FROM financial_metrics), financial_metrics AS (SELECT 1 AS"
    " x) SELECT * FROM a",
    "WITH a AS (SELECT * FROM financial_metrics), financial_metrics AS (SELECT 1 AS x) SELECT"
    " * FROM a",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r, financial_metrics WHERE n"
    " < 3) SELECT * FROM r",
    "WITH RECURSIVE t AS (SELECT * FROM sensor_readings), sensor_readings AS (SELECT amount"
    " FROM financial_metrics) SELECT * FROM t",
    "WITH d AS (DELETE FROM sensor_readings WHERE false RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE financial_metrics SET amount = 0 WHERE false RETURNING 1) SELECT 1",
    "WITH c AS MATERIALIZED (SELECT amount FROM financial_metrics) SELECT 1 FROM c",
    # constant-false and folded branches
    "SELECT 1 WHERE false AND EXISTS (SELECT amount FROM financial_metrics)",
    "SELECT 1 FROM sensor_readings WHERE false AND EXISTS (SELECT 1 FROM financial_metrics)",
    "SELECT 1 FROM sensor_readings WHERE EXISTS (SELECT 1 FROM financial_metrics) AND false",
    "SELECT 1 FROM sensor_readings s WHERE false AND EXISTS (SELECT 1 FROM financial_metrics f"
    " WHERE f.amount > s.temperature)",
    "SELECT 1 FROM sensor_readings WHERE false AND sensor_id IN (SELECT metric_type FROM"
    " financial_metrics)",
    "SELECT CASE WHEN false THEN (SELECT amount FROM financial_metrics LIMIT 1) END",
    "SELECT CASE WHEN true THEN 0 ELSE (SELECT amount FROM financial_metrics LIMIT 1) END",
    "SELECT CASE WHEN false THEN 0 ELSE (SELECT amount FROM financial_metrics LIMIT 1) END",
    "SELECT coalesce(1, (SELECT amount FROM financial_metrics LIMIT 1))",
    "SELECT 1 WHERE true OR EXISTS (SELECT 1 FROM financial_metrics)",
    "SELECT false AND EXISTS (SELECT amount FROM financial_metrics)",
    "SELECT 1 FROM sensor_readings WHERE false AND (true OR EXISTS (SELECT 1 FROM"
    " financial_metrics))",
    "SELECT 1 FROM sensor_readings s JOIN sensor_readings t ON false AND EXISTS (SELECT 1 FROM"
    " financial_metrics)",
    "SELECT 1 FROM sensor_readings GROUP BY sensor_id HAVING false AND EXISTS (SELECT 1 FROM"
    " financial_metrics)",
    "SELECT 1 WHERE false AND EXISTS (SELECT 1 FROM tsaccess_audit.financial_metrics)",
    "SELECT 1 FROM financial_metrics WHERE false",
    "SELECT amount FROM financial_metrics WHERE false",
    "SELECT 1 FROM sensor_readings WHERE false AND temperature IS NULL",
    # column aliases, qualified columns, windows, odd forms
    "SELECT e.a FROM financial_metrics AS e(a, b)",
    "SELECT e.c FROM financial_metrics AS e(a, b, c)",
    "SELECT a FROM financial_metrics AS e(a, b)",
    "SELECT amount FROM financial_metrics AS e(a, b)",
    "SELECT currency FROM financial_metrics AS e(a, b)",
    "SELECT x FROM sensor_readings AS s(x, y)",
    "SELECT public.financial_metrics.amount FROM financial_metrics",
    "SELECT public.sensor_readings.temperature FROM public.sensor_readings",
    "SELECT scratch.notes.owner FROM scratch.notes",
    "SELECT scratch.notes.body FROM scratch.notes",
    "SELECT sensor_id, avg(temperature) OVER w FROM sensor_readings WINDOW w AS (PARTITION BY"
    " department ORDER BY time)",
    "SELECT 1 FROM financial_metrics WINDOW w AS (PARTITION BY amount)",
    "SELECT rank() OVER (PARTITION BY department ORDER BY amount) FROM financial_metrics",
    "SELECT sensor_id FROM sensor_readings ORDER BY temperature USING >",
    "SELECT amount FROM financial_metrics ORDER BY amount USING <",
    "SELECT * FROM ROWS FROM (generate_series(1, 3), unnest(ARRAY['a', 'b'])) WITH ORDINALITY"
    " AS t(a, b, n)",
    "SELECT * FROM ROWS FROM (generate_series(1, (SELECT count(*) FROM"
    " financial_metrics)::int)) AS t(a)",
    "SELECT t.* FROM sensor_readings s, ROWS FROM (unnest(ARRAY[s.temperature])) AS t(x)",
    "SELECT g FROM generate_series(1, 3) g",
    "SELECT g.x FROM generate_series(1, 3) AS g(x) WHERE g.x > (SELECT count(*) FROM"
    " financial_metrics)",
    "VALUES ((SELECT amount FROM financial_metrics LIMIT 1))",
    "VALUES (1), (2)",
    "SELECT * FROM (VALUES (1, 'a')) v(n, s) JOIN scratch.notes USING (s)",
    'SELECT U&"\\0061mount" FROM financial_metrics',
    'SELECT "amount" FROM "financial_metrics"',
    'SELECT "AMOUNT" FROM financial_metrics',
    "SELECT AMOUNT FROM FINANCIAL_METRICS",
    "SELECT sensor_id FROM sensor_readings -- ; SELECT amount FROM financial_metrics",
    "SELECT sensor_id /* ; SELECT amount FROM financial_metrics */ FROM sensor_readings",
    "SELECT 'SELECT amount FROM financial_metrics'",
    "SELECT $$ amount FROM financial_metrics $$",
    "SELECT sensor_id FROM sensor_readings WHERE sensor_id = %s",
    "SELECT amount FROM financial_metrics WHERE metric_type = %s",
    "SELECT amount FROM financial_metrics WHERE amount > $1",
    "SELECT sensor_id FROM sensor_readings WHERE temperature > $1",
    # locking clauses
    "SELECT * FROM sensor_readings FOR UPDATE",
    "SELECT sensor_id FROM sensor_readings FOR SHARE",
    "SELECT 1 FROM (SELECT sensor_id FROM sensor_readings) s FOR SHARE",
    "SELECT 1 FROM (SELECT amount FROM financial_metrics) s FOR UPDATE",
    "SELECT 1 FROM sensor_readings s, (SELECT 1 FROM financial_metrics) f FOR UPDATE OF s",
    "SELECT 1 FROM sensor_readings s, (SELECT 1 AS x FROM financial_metrics) f FOR UPDATE OF f",
    "SELECT s.sensor_id FROM sensor_readings s JOIN financial_metrics f ON true FOR KEY SHARE OF f",
    "SELECT * FROM scratch.notes FOR NO KEY UPDATE",
    "SELECT id FROM scratch.notes FOR UPDATE SKIP LOCKED",
    "SELECT count(*) FROM sensor_readings FOR UPDATE",
    # EXPLAIN, with comments in front
    "EXPLAIN SELECT amount FROM financial_metrics",
    "-- explain this\nEXPLAIN SELECT amount FROM financial_metrics",
    "/* c */ EXPLAIN (COSTS OFF) SELECT amount FROM financial_metrics",
    "/* c */ /* d */ EXPLAIN SELECT sensor_id FROM sensor_readings",
    "EXPLAIN ANALYZE SELECT amount FROM financial_metrics",
    "EXPLAIN UPDATE sensor_readings SET temperature = 0",
    "EXPLAIN (ANALYZE false) DELETE FROM financial_metrics",
    "EXPLAIN SELECT nextval('ticket_seq')",
    "EXPLAIN SELECT current_setting('data_directory')",
    "explain verbose select * from scratch.notes",
]

_WRITES = [
    "INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')",
    "INSERT INTO sensor_readings VALUES (now(), 'x', 1, 1, 'l', 'd')",
    "INSERT INTO financial_metrics (time, metric_type, amount) VALUES (now(), 'x', 1)",
    "INSERT INTO financial_metrics (time, metric_type) SELECT time, sensor_id FROM sensor_readings",
    "INSERT INTO financial_metrics (time, metric_type) SELECT time, sensor_id FROM"
    " sensor_readings WHERE false",
    "INSERT INTO sensor_readings (time, sensor_id) SELECT time, metric_type FROM"
    " financial_metrics WHERE false",
    "INSERT INTO tickets (note) VALUES ('n')",
    "INSERT INTO tickets (note) SELECT sensor_id FROM sensor_readings",
    "INSERT INTO tickets (note) SELECT sensor_id FROM sensor_readings WHERE false",
    "INSERT INTO tickets (id, note) VALUES (1, 'n')",
    "INSERT INTO tickets DEFAULT VALUES",
    "INSERT INTO tickets (id) OVERRIDING USER VALUE VALUES (1)",
    "INSERT INTO scratch.notes (id, body) VALUES (1, 'b') ON CONFLICT (id) DO UPDATE SET body"
    " = excluded.body",
    "INSERT INTO scratch.notes (id, body) VALUES (1, 'b') ON CONFLICT DO NOTHING",
    "INSERT INTO scratch.notes (id) VALUES (1) RETURNING owner",
    "INSERT INTO scratch.notes (id) VALUES (1) RETURNING *",
    "UPDATE sensor_readings SET temperature = 0 WHERE false",
    "UPDATE sensor_readings SET temperature = temperature + 1",
    "UPDATE financial_metrics SET amount = 0 WHERE false",
    "UPDATE financial_metrics SET (amount) = ROW(0) WHERE false",
    "UPDATE financial_metrics SET (amount, currency) = (0, 'EUR') WHERE false",
    "UPDATE sensor_readings SET (temperature, humidity) = (SELECT 1, 2) WHERE false",
    "UPDATE sensor_readings SET (temperature) = (SELECT amount FROM financial_metrics LIMIT 1)"
    " WHERE false",
    "UPDATE sensor_readings s SET temperature = f.amount FROM financial_metrics f WHERE f.time"
    " = s.time",
    "UPDATE scratch.notes SET body = 'x' WHERE owner = 'y'",
    "UPDATE scratch.notes SET body = 'x' RETURNING owner",
    "DELETE FROM sensor_readings WHERE false",
    "DELETE FROM financial_metrics WHERE false",
    "DELETE FROM sensor_readings s USING financial_metrics f WHERE f.time = s.time",
    "DELETE FROM scratch.notes WHERE owner = 'x'",
    "DELETE FROM activity_audit",
    "TRUNCATE sensor_readings",
    "TRUNCATE scratch.notes",
    "TRUNCATE activity_audit",
    "MERGE INTO scratch.notes n USING sensor_readings s ON n.body = s.sensor_id WHEN MATCHED"
    " THEN UPDATE SET body = s.location",
    "MERGE INTO financial_metrics f USING sensor_readings s ON f.time = s.time WHEN NOT"
    " MATCHED THEN INSERT (time, metric_type) VALUES (s.time, s.sensor_id)",
    "MERGE INTO sensor_readings s USING financial_metrics f ON f.time = s.time WHEN MATCHED"
    " THEN DELETE",
    "COPY sensor_readings TO STDOUT",
    "COPY financial_metrics TO STDOUT",
    "COPY financial_metrics (metric_type) TO STDOUT",
    "COPY (SELECT amount FROM financial_metrics) TO STDOUT",
    "COPY (SELECT sensor_id FROM sensor_readings) TO STDOUT",
    "COPY sensor_readings TO '/tmp/tsaccess_corpus_out.csv'",
    "COPY sensor_readings FROM '/tmp/tsaccess_corpus_in.csv'",
    "COPY (SELECT 1) TO PROGRAM 'cat'",
    "COPY sensor_readings TO STDOUT WITH (FORMAT csv)",
    "SELECT sensor_id INTO TEMP t_copy FROM sensor_readings",
    "SELECT amount INTO TEMP t_copy FROM financial_metrics",
    "SELECT sensor_id INTO scratch.t_copy FROM sensor_readings",
    "SELECT sensor_id INTO public.t_copy FROM sensor_readings",
    "CREATE TEMP TABLE t_copy AS SELECT sensor_id FROM sensor_readings",
    "CREATE TEMP TABLE t_copy AS SELECT amount FROM financial_metrics",
    "CREATE TABLE scratch.t_copy AS SELECT sensor_id FROM sensor_readings",
    "CREATE TABLE public.t_copy AS SELECT sensor_id FROM sensor_readings",
    "CREATE TABLE scratch.t_nodata AS SELECT amount FROM financial_metrics WITH NO DATA",
]

_FUNCTIONS = [
    "SELECT pg_read_file('postgresql.conf')",
    "SELECT pg_ls_dir('.')",
    "SELECT pg_read_binary_file('x')",
    "SELECT pg_stat_file('x')",
    "SELECT pg_reload_conf()",
    "SELECT lo_import('/etc/hostname')",
    "SELECT pg_catalog.pg_ls_waldir()",
    "SELECT * FROM pg_ls_dir('.') d",
    "SELECT 1 FROM sensor_readings WHERE sensor_id = pg_read_file('x')",
    "SELECT CASE WHEN false THEN pg_read_file('x') END",
    "SELECT tsaccess_rls.attribute('department')",
    "SELECT secret_total()",
    "SELECT public.secret_total()",
    "SELECT double_it(2)",
    "SELECT double_it(temperature) FROM sensor_readings",
    "SELECT upper(sensor_id), now(), length(location) FROM sensor_readings",
    "SELECT date_trunc('hour', time), count(*) FROM sensor_readings GROUP BY 1",
    "SELECT nextval('ticket_seq')",
    "SELECT nextval('public.ticket_seq')",
    "SELECT setval('ticket_seq', 10)",
    "SELECT currval('ticket_seq')",
    "SELECT nextval('ticket_seq') FROM sensor_readings",
    "SELECT nextval('ticket_seq') FROM sensor_readings WHERE false",
    "SELECT * FROM ticket_seq",
    "SELECT last_value FROM ticket_seq",
    "SELECT last_value FROM public.ticket_seq WHERE false",
    "SELECT pg_sequence_last_value('ticket_seq')",
    "SELECT 'ticket_seq'::regclass",
    "SELECT 'tsaccess_audit.financial_metrics'::regclass",
    "SELECT 'tsaccess_rls.user_attributes'::regclass::oid",
    "SELECT CAST('tsaccess_audit.financial_metrics' AS regclass)",
    "SELECT to_regclass('tsaccess_audit.financial_metrics')",
    "SELECT 'public.sensor_readings'::regclass",
    "SELECT nextval('tsaccess_audit.x')",
    "SELECT current_setting('data_directory')",
    "SELECT current_setting('hba_file', true)",
    "SELECT current_setting('work_mem')",
    "SELECT current_setting('config_file') FROM sensor_readings",
    "SELECT set_config('log_statement', 'all', false)",
    "SELECT set_config('work_mem', '8MB', false)",
    "SELECT pg_terminate_backend(pg_backend_pid() + 100000)",
    "SELECT query_to_xml('SELECT amount FROM financial_metrics', true, false, '')",
    "SELECT has_table_privilege('financial_metrics', 'SELECT')",
    "SELECT time_bucket('1 hour', time), avg(temperature) FROM sensor_readings GROUP BY 1",
    "SELECT first(temperature, time), last(temperature, time) FROM sensor_readings",
    "SELECT drop_chunks('sensor_readings', older_than => interval '100 years')",
    "SELECT show_chunks('sensor_readings')",
    "CALL run_job(1)",
]

_COMMANDS = [
    "SHOW data_directory",
    "SHOW hba_file",
    "SHOW work_mem",
    "SHOW ALL",
    "SET work_mem = '8MB'",
    "SET log_statement = 'all'",
    "SET LOCAL log_min_duration_statement = 0",
    "RESET log_statement",
    "SET ROLE finance_users",
    "SET ROLE department_managers",
    "SET ROLE data_analysts",
    "SET ROLE auditors",
    "SET ROLE NONE",
    "RESET ROLE",
    "SET SESSION AUTHORIZATION bob",
    "LOCK sensor_readings",
    "LOCK TABLE sensor_readings IN ACCESS SHARE MODE",
    "LOCK financial_metrics IN ACCESS SHARE MODE",
    "LOCK sensor_readings IN ROW EXCLUSIVE MODE",
    "LOCK TABLE financial_metrics IN SHARE MODE NOWAIT",
    "LOCK scratch.notes IN ACCESS EXCLUSIVE MODE",
    "LOCK activity_audit IN ACCESS SHARE MODE",
    "LOCK sensor_summary IN ACCESS SHARE MODE",
    "CREATE TABLE public.t_new (a int)",
    "CREATE TABLE scratch.t_new (a int)",
    "CREATE TABLE t_new (a int)",
    "CREATE TEMP TABLE t_new (a int)",
    "CREATE TABLE IF NOT EXISTS scratch.t_new (a int)",
    "CREATE VIEW public.v_new AS SELECT 1",
    "CREATE VIEW scratch.v_new AS SELECT amount FROM financial_metrics",
    "CREATE VIEW scratch.v_new AS SELECT 1 FROM tsaccess_audit.financial_metrics",
    "CREATE SEQUENCE scratch.s_new",
    "CREATE SEQUENCE public.s_new",
    "CREATE FUNCTION public.f_new() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE FUNCTION scratch.f_new() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE SCHEMA s_new",
    "CREATE INDEX ON sensor_readings (sensor_id)",
    "CREATE INDEX ON scratch.notes (body)",
    "CREATE ROLE r_new",
    "CREATE TYPE public.t_mood AS ENUM ('a')",
    "CREATE MATERIALIZED VIEW scratch.mv_new AS SELECT sensor_id FROM sensor_readings",
    "CREATE MATERIALIZED VIEW public.mv_new AS SELECT sensor_id FROM sensor_readings",
    "ALTER TABLE sensor_readings ADD COLUMN z int",
    "ALTER TABLE scratch.notes ADD COLUMN z int",
    "ALTER TABLE IF EXISTS financial_metrics RENAME COLUMN amount TO amt",
    "ALTER VIEW activity_audit_rows RENAME TO x",
    "ALTER SEQUENCE ticket_seq RESTART",
    "ALTER SCHEMA scratch RENAME TO s2",
    "ALTER FUNCTION secret_total() OWNER TO alice",
    "ALTER ROLE bob NOLOGIN",
    "ALTER INDEX IF EXISTS scratch.notes_pkey RENAME TO x",
    "DROP TABLE sensor_readings",
    "DROP TABLE IF EXISTS scratch.notes",
    "DROP TABLE IF EXISTS scratch.no_such_table",
    "DROP VIEW activity_audit_rows",
    "DROP VIEW sensor_summary",
    "DROP SEQUENCE ticket_seq",
    "DROP FUNCTION secret_total()",
    "DROP FUNCTION double_it",
    "DROP SCHEMA scratch CASCADE",
    "DROP INDEX scratch.notes_pkey",
    "DROP ROLE bob",
    "COMMENT ON TABLE sensor_readings IS 'x'",
    "COMMENT ON TABLE scratch.notes IS 'x'",
    "COMMENT ON COLUMN financial_metrics.amount IS 'x'",
    "COMMENT ON COLUMN scratch.notes.body IS 'x'",
    "COMMENT ON SCHEMA scratch IS 'x'",
    "COMMENT ON FUNCTION secret_total() IS 'x'",
    "COMMENT ON VIEW sensor_summary IS 'x'",
    "REINDEX TABLE scratch.notes",
    "CLUSTER scratch.notes USING notes_pkey",
    "REFRESH MATERIALIZED VIEW scratch.no_such_view",
    "CHECKPOINT",
    "PREPARE p_corpus AS SELECT amount FROM financial_metrics",
    "PREPARE p_corpus AS SELECT 1 FROM tsaccess_audit.financial_metrics",
    "PREPARE p_corpus AS SELECT amount FROM financial_metrics; EXECUTE p_corpus",
    "PREPARE p_corpus AS SELECT sensor_id FROM sensor_readings; EXECUTE p_corpus",
    "PREPARE p_corpus (int) AS SELECT amount FROM financial_metrics LIMIT $1; EXECUTE p_corpus(1)",
    "DECLARE c_corpus CURSOR FOR SELECT amount FROM financial_metrics",
    "DECLARE c_corpus CURSOR FOR SELECT sensor_id FROM sensor_readings",
    "DECLARE c_corpus SCROLL CURSOR WITH HOLD FOR SELECT amount FROM financial_metrics",
    "DECLARE c_corpus CURSOR FOR SELECT * FROM tsaccess_audit.financial_metrics",
    "LISTEN corpus_channel",
    "NOTIFY corpus_channel",
    "VACUUM scratch.notes",
    "ANALYZE sensor_readings",
    "DISCARD TEMP",
    "DO $$ BEGIN PERFORM 1; END $$",
    "GRANT SELECT ON financial_metrics TO alice",
    "LOAD 'auto_explain'",
]

_STRINGS = [
    # several statements in one string: role and search_path changes
    "SET ROLE finance_users; SELECT amount FROM financial_metrics",
    "SET ROLE data_analysts; SELECT amount FROM financial_metrics",
    "SELECT set_config('role', 'finance_users', false); SELECT amount FROM financial_metrics",
    "SELECT set_config('role', 'data_analysts', false); SELECT amount FROM financial_metrics",
    "RESET ROLE; SELECT amount FROM financial_metrics",
    "SET ROLE NONE; SELECT amount FROM financial_metrics",
    "SET search_path = scratch; SELECT body FROM notes",
    "SET search_path = scratch; SELECT owner FROM notes",
    "SET search_path = tsaccess_audit, public; SELECT * FROM financial_metrics",
    "SET search_path TO DEFAULT; SELECT amount FROM financial_metrics",
    "SELECT set_config('search_path', 'scratch', false); SELECT owner FROM notes",
    "SELECT 1; SELECT amount FROM financial_metrics",
    "SELECT sensor_id FROM sensor_readings; DELETE FROM financial_metrics WHERE false",
    "SELECT sensor_id FROM sensor_readings; SELECT sensor_id FROM sensor_readings",
    "CREATE TEMP TABLE financial_metrics (amount int); SELECT amount FROM financial_metrics",
    "SELECT 1 INTO TEMP t_x; SELECT * FROM t_x",
    "BEGIN; SELECT amount FROM financial_metrics; COMMIT",
    "SAVEPOINT a; SELECT amount FROM financial_metrics; RELEASE a",
    "LOCK scratch.notes; SELECT 1",
    "SELECT 1; LOCK sensor_readings IN ROW EXCLUSIVE MODE",
    "SHOW work_mem; SHOW data_directory",
    "SET ROLE finance_users; SET ROLE data_analysts",
    "SET search_path = scratch; DROP TABLE notes",
    "SET search_path = scratch; LOCK notes IN ACCESS SHARE MODE",
    "SET search_path = scratch, public; SELECT nextval('ticket_seq')",
    "BEGIN; SET LOCAL ROLE finance_users; SELECT amount FROM financial_metrics; COMMIT",
    "SELECT 1/0, nextval('ticket_seq')",
    "MERGE INTO scratch.notes USING (SELECT 1 AS x) s ON false WHEN NOT MATCHED THEN DO NOTHING",
    "CREATE INDEX CONCURRENTLY ON scratch.notes (body)",
    "SET SESSION AUTHORIZATION DEFAULT",
    "CREATE TABLE IF NOT EXISTS public.sensor_readings (a int)",
]

_CAGG = [
    "{cagg}SELECT * FROM sensor_hourly",
    "{cagg}SELECT sensor_id, avg_temperature FROM sensor_hourly WHERE bucket > now() -"
    " interval '1 day'",
    "{cagg}SELECT h.sensor_id FROM sensor_hourly h JOIN sensor_readings s USING (sensor_id)",
    "{cagg}REFRESH MATERIALIZED VIEW sensor_hourly",
    "{cagg}CALL refresh_continuous_aggregate('sensor_hourly', NULL, NULL)",
    "{chunk_sr}SELECT * FROM {chunk_sr}",
    "{chunk_sr}SELECT sensor_id FROM {chunk_sr}",
    "{chunk_sr}DELETE FROM {chunk_sr} WHERE false",
    "{chunk_sr}DROP TABLE {chunk_sr}",
    "{chunk_fm}SELECT amount FROM {chunk_fm}",
    "{chunk_fm}SELECT c FROM {chunk_fm} c",
    "{chunk_fm}SELECT metric_type FROM {chunk_fm}",
    "{chunk_fm}UPDATE {chunk_fm} SET amount = 0 WHERE false",
    "{chunk_fm}LOCK {chunk_fm} IN ACCESS SHARE MODE",
]

CORPUS = _READS + _WRITES + _FUNCTIONS + _COMMANDS + _STRINGS + _CAGG

_WORD = re.compile(r"\b(sensor_readings|financial_metrics|amount|temperature|sensor_id|notes)\b")


def _quote(m: re.Match[str]) -> str:
    return f'"{m.group(1)}"'


_MUTATORS = [
    lambda s: s.upper() if "'" not in s and "$" not in s and '"' not in s else s.lower(),
    lambda s: _WORD.sub(_quote, s) if '"' not in s and "'" not in s else s,
    lambda s: "/* corpus */ " + s,
    lambda s: "-- corpus\n" + s,
    lambda s: s.replace(" FROM financial_metrics", " FROM public.financial_metrics"),
    lambda s: s.replace(" FROM sensor_readings", " FROM public.sensor_readings"),
    lambda s: "EXPLAIN " + s if s.startswith("SELECT") else s,
    lambda s: (
        f"SELECT count(*) FROM ({s}) corpus_sub" if s.startswith("SELECT") and ";" not in s else s
    ),
    lambda s: (
        f"WITH corpus_cte AS ({s}) SELECT 1 FROM corpus_cte"
        if s.startswith("SELECT") and ";" not in s
        else s
    ),
    lambda s: s.replace(" WHERE ", " WHERE true AND ", 1),
    lambda s: (
        s.replace(" FROM financial_metrics", " FROM financial_metrics corpus_alias", 1)
        if " financial_metrics." not in s
        else s
    ),
    lambda s: s + ";",
    lambda s: "SELECT 1; " + s if "%s" not in s and "$1" not in s and "COPY" not in s else s,
    lambda s: s.replace("SELECT ", "SELECT DISTINCT ", 1) if "FOR " not in s else s,
]


def mutations(statements: list[str], n: int, seed: int = 22) -> list[str]:
    """``n`` distinct variants of ``statements`` (each one or two mutators applied), not in
    ``statements`` themselves; the same list for the same seed."""
    rng = random.Random(seed)
    base = [s for s in statements if not s.startswith("{")]
    seen = set(statements)
    out: list[str] = []
    tries = 0
    while len(out) < n and tries < n * 50:
        tries += 1
        s = rng.choice(base)
        for fn in rng.sample(_MUTATORS, rng.choice([1, 1, 2])):
            s = fn(s)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
