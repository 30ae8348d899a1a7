"""``tsaccess generate`` on databases built by hand with plain SQL (no tsaccess): the policy it
writes, applied to the database it came from, changes no one's access — every privilege of every
login role on every relation, column, sequence, function, schema and the database, every
membership, every login with the password set by hand — and the plan after it is empty."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

import tsaccess
from tests.helpers import untouched
from tsaccess.policy import parse_policy

PASSWORDS = {
    "ann": "ann-by-hand-1",
    "ben": "ben-by-hand-2",
    "cid": "cid-by-hand-3",
    "alice": "alice-by-hand",
    "bob": "bob-by-hand",
    "carol": "carol-by-hand",
    "david": "david-by-hand",
    "eve": "eve-by-hand",
    "monitor": "monitor-by-hand",
}

# The issue's example: a hypertable, a plain table, three group roles, column grants, three
# users; with compression, TimescaleDB's own retention job and a continuous aggregate.
ISSUE_EXAMPLE = """
CREATE TABLE metrics (time timestamptz NOT NULL, device text NOT NULL,
                      value double precision, reading numeric(6,2), note text);
SELECT create_hypertable('metrics', by_range('time', INTERVAL '1 day'));
CREATE TABLE devices (id integer PRIMARY KEY, name text NOT NULL, owner_email text,
                      site text DEFAULT 'hq', active boolean DEFAULT true,
                      added timestamptz DEFAULT now());
CREATE ROLE readers NOLOGIN; CREATE ROLE writers NOLOGIN; CREATE ROLE support NOLOGIN;
GRANT SELECT ON metrics TO readers;
GRANT SELECT, INSERT ON metrics TO writers;
GRANT SELECT (id, name, site) ON devices TO readers;
GRANT SELECT ON devices TO support;
GRANT UPDATE (owner_email, active) ON devices TO support;
CREATE ROLE ann LOGIN PASSWORD 'ann-by-hand-1';
CREATE ROLE ben LOGIN PASSWORD 'ben-by-hand-2' CONNECTION LIMIT 5;
CREATE ROLE cid LOGIN PASSWORD 'cid-by-hand-3';
GRANT readers TO ann; GRANT writers TO ben; GRANT support, readers TO cid;
INSERT INTO devices (id, name, owner_email) VALUES (1, 'd1', 'x@example.org');
INSERT INTO metrics SELECT now() - i * interval '1 day', 'd1', i, i FROM generate_series(1, 5) i;
ALTER TABLE metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'device');
SELECT add_compression_policy('metrics', INTERVAL '7 days');
SELECT add_retention_policy('metrics', INTERVAL '365 days');
CREATE MATERIALIZED VIEW metrics_hourly WITH (timescaledb.continuous) AS
  SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, device, avg(value) AS avg_value,
         count(*) AS n
  FROM metrics GROUP BY 1, 2 WITH NO DATA;
SELECT add_continuous_aggregate_policy('metrics_hourly', start_offset => INTERVAL '3 days',
  end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour');
GRANT SELECT ON metrics_hourly TO readers;
CREATE ROLE leads NOLOGIN; GRANT readers TO leads; GRANT leads TO cid;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO readers;
ALTER ROLE ann IN DATABASE {db} SET statement_timeout = '30s';
CREATE ROLE monitor LOGIN PASSWORD 'monitor-by-hand'; GRANT CONNECT ON DATABASE {db} TO monitor;
"""

# The tutorial's company database, built as the tutorial builds it (tables, roles, grants,
# users) with an audit table and trigger of its own, and a row-level security policy.
COMPANY = """
CREATE TABLE sensor_readings (time timestamptz NOT NULL, sensor_id text NOT NULL,
  temperature numeric(5,2), humidity integer, location text, department text);
SELECT create_hypertable('sensor_readings', 'time');
CREATE TABLE financial_metrics (time timestamptz NOT NULL, metric_type text NOT NULL,
  amount numeric(12,2), currency text DEFAULT 'USD', department text,
  is_confidential boolean DEFAULT true);
SELECT create_hypertable('financial_metrics', 'time');
CREATE TABLE activity_audit (id serial PRIMARY KEY, event_time timestamptz DEFAULT now(),
  username text DEFAULT current_user, operation text, table_name text, description text);
CREATE FUNCTION log_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO activity_audit (operation, table_name, description)
  VALUES (TG_OP, TG_TABLE_NAME, 'row changed');
  RETURN NULL;
END $$;
CREATE TRIGGER sensor_audit AFTER INSERT OR UPDATE OR DELETE ON sensor_readings
  FOR EACH ROW EXECUTE FUNCTION log_activity();
CREATE TRIGGER financial_audit AFTER INSERT OR UPDATE OR DELETE ON financial_metrics
  FOR EACH ROW EXECUTE FUNCTION log_activity();
CREATE ROLE data_analysts NOLOGIN; CREATE ROLE data_engineers NOLOGIN;
CREATE ROLE department_managers NOLOGIN; CREATE ROLE finance_users NOLOGIN;
CREATE ROLE auditors NOLOGIN;
GRANT SELECT ON sensor_readings TO data_analysts;
GRANT SELECT, INSERT, UPDATE, DELETE ON sensor_readings TO data_engineers;
GRANT SELECT ON sensor_readings, financial_metrics TO department_managers;
GRANT SELECT ON sensor_readings TO finance_users;
GRANT SELECT, INSERT, UPDATE, DELETE ON financial_metrics TO finance_users;
GRANT SELECT ON activity_audit TO auditors;
GRANT USAGE ON SCHEMA public TO data_analysts, data_engineers, department_managers,
  finance_users, auditors;
CREATE ROLE alice LOGIN PASSWORD 'alice-by-hand'; CREATE ROLE bob LOGIN PASSWORD 'bob-by-hand';
CREATE ROLE carol LOGIN PASSWORD 'carol-by-hand';
CREATE ROLE david LOGIN PASSWORD 'david-by-hand'; CREATE ROLE eve LOGIN PASSWORD 'eve-by-hand';
GRANT data_analysts TO alice; GRANT data_engineers TO bob; GRANT department_managers TO carol;
GRANT finance_users TO david; GRANT auditors TO eve;
ALTER TABLE financial_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY managers_see_their_department ON financial_metrics FOR SELECT
  TO department_managers USING (department = current_setting('app.department', true));
CREATE POLICY finance_sees_all ON financial_metrics TO finance_users USING (true);
INSERT INTO sensor_readings VALUES (now(), 's1', 21.5, 40, 'lab', 'Engineering');
"""

# Effective privileges of every non-superuser role: every relation (chunks and TimescaleDB's
# own included), column, sequence, function, schema, this database; memberships; login.
SNAPSHOT = """
WITH who AS (SELECT oid, rolname FROM pg_roles WHERE NOT rolsuper AND rolname !~ '^pg_'),
rel AS (SELECT c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast'))
SELECT 'table', w.rolname, r.name, p FROM who w, rel r,
  unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) p
  WHERE r.relkind <> 'S' AND has_table_privilege(w.oid, r.oid, p)
UNION ALL
SELECT 'sequence', w.rolname, r.name, p FROM who w, rel r, unnest(ARRAY['USAGE','SELECT','UPDATE']) p
  WHERE r.relkind = 'S' AND has_sequence_privilege(w.oid, r.oid, p)
UNION ALL
SELECT 'column', w.rolname, r.name || '.' || a.attname, p FROM who w, rel r
  JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped,
  unnest(ARRAY['SELECT','INSERT','UPDATE','REFERENCES']) p
  WHERE r.relkind <> 'S' AND has_column_privilege(w.oid, r.oid, a.attnum, p)
UNION ALL
SELECT 'function', w.rolname, f.oid::regprocedure::text, 'EXECUTE' FROM who w, pg_proc f
  JOIN pg_namespace n ON n.oid = f.pronamespace
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND has_function_privilege(w.oid, f.oid, 'EXECUTE')
UNION ALL
SELECT 'schema', w.rolname, n.nspname, p FROM who w, pg_namespace n,
  unnest(ARRAY['USAGE','CREATE']) p WHERE has_schema_privilege(w.oid, n.oid, p)
UNION ALL
SELECT 'database', w.rolname, current_database(), p FROM who w,
  unnest(ARRAY['CONNECT','TEMPORARY','CREATE']) p
  WHERE has_database_privilege(w.oid, current_database(), p)
UNION ALL
SELECT 'member', w.rolname, r.rolname, m FROM who w, pg_roles r, unnest(ARRAY['MEMBER','USAGE']) m
  WHERE w.oid <> r.oid AND pg_has_role(w.oid, r.oid, m)
UNION ALL
SELECT 'role', rolname, '', concat_ws(' ', rolcanlogin, rolinherit, rolbypassrls,
  rolconnlimit, rolcreaterole, rolcreatedb) FROM pg_roles WHERE NOT rolsuper AND rolname !~ '^pg_'
"""


def flat(text: str) -> str:
    """The text with its wrapped comment lines joined."""
    return re.sub(r"\n#\s+", " ", text)


def access(db) -> set[tuple[str, str, str, str]]:
    with db.admin() as conn:
        rows = conn.execute(SNAPSHOT).fetchall()
    return {tuple(r) for r in rows}  # type: ignore[misc]


def run(
    *args: str, code: int | None = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "tsaccess", *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("TSACCESS_PASSWORD_")}
        | (env or {}),
        timeout=300,
        check=False,
    )
    if code is not None:
        assert res.returncode == code, (res.returncode, res.stdout[-3000:], res.stderr[-3000:])
    return res


def dsn(db, **over: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in db.params(**over).items() if v is not None)


def build(db, script: str) -> None:
    with db.admin(autocommit=True) as conn:
        conn.execute(script.replace("{db}", sql.Identifier(db.name).as_string(conn)))


def adopt(db, tmp_path: Path, users: list[str]) -> tuple[str, Path]:
    """generate -> apply --yes -> plan --detailed-exitcode, checking access all along."""
    before = access(db)
    out = tmp_path / "adopted.toml"
    gen = run("generate", "--dsn", dsn(db), "--out", str(out))
    assert "applying it changes no one's access" in gen.stderr, gen.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    text = out.read_text()
    parse_policy(tomllib.loads(text))  # a valid policy
    if db.info.timescaledb:  # TimescaleDB's routines stay PUBLIC's (public = "keep"), said loudly
        assert 'public = "keep"' in text and "any login user can erase" in text, text[:2000]
    run("apply", "--dsn", dsn(db), "--policy", str(out), "--yes")
    after = access(db)
    assert after == before, (sorted(before - after)[:20], sorted(after - before)[:20])
    run("plan", "--dsn", dsn(db), "--policy", str(out), "--detailed-exitcode")
    for user in users:  # the password set by hand still works
        with tsaccess.connect(**db.params(user=user, password=PASSWORDS[user])) as conn:
            assert conn.execute("SELECT session_user").fetchone() == (user,)
    return text, out


@pytest.mark.timescaledb
def test_the_issues_example_round_trips(db, tmp_path):
    build(db, ISSUE_EXAMPLE)
    with db.admin(autocommit=True) as conn:
        # materialized now: the refresh job, running in the background, then creates no chunk
        # (with copied grants) between the two snapshots
        conn.execute("CALL refresh_continuous_aggregate('metrics_hourly', NULL, NULL)")
    text, out = adopt(db, tmp_path, ["ann", "ben", "cid", "monitor"])
    # the access matrix agrees with the adopted policy (chunks and the aggregate's
    # materialized hypertable as TimescaleDB copies them: chunk_privileges = "copied")
    env = {f"TSACCESS_PASSWORD_{u.upper()}": PASSWORDS[u] for u in ("ann", "ben", "cid")}
    res = run("verify", "--dsn", dsn(db), "--policy", str(out), env=env)
    assert "0 disagreement(s)" in res.stdout
    policy = parse_policy(tomllib.loads(text))
    assert (policy.public, policy.chunk_privileges) == ("keep", "copied")
    assert [t.name for t in policy.tables] == ["devices", "metrics"]
    metrics = policy.table("metrics")
    assert metrics is not None and metrics.hypertable and metrics.time_column == "time"
    assert metrics.chunk_interval == "1 day"
    assert metrics.compression is not None and metrics.compression.after == "7 days"
    assert metrics.compression.segment_by == ("device",)
    assert [c.type for c in metrics.columns] == [
        "timestamptz",
        "text",
        "double precision",
        "numeric(6,2)",
        "text",
    ]
    devices = policy.table("devices")
    assert devices is not None
    assert [(c.name, c.nullable, c.default, c.default_function) for c in devices.columns] == [
        ("id", False, None, None),
        ("name", False, None, None),
        ("owner_email", True, None, None),
        ("site", True, "hq", None),
        ("active", True, True, None),
        ("added", True, None, "now()"),
    ]
    readers, support = policy.role("readers"), policy.role("support")
    assert readers is not None and support is not None
    assert readers.column_grants == (("devices", "SELECT", ("id", "name", "site")),)
    assert set(readers.grants) == {
        ("metrics", frozenset({"SELECT"})),
        ("metrics_hourly", frozenset({"SELECT"})),
    }
    assert support.column_grants == (("devices", "UPDATE", ("active", "owner_email")),)
    assert {u.name: u.roles for u in policy.users} == {
        "ann": ("readers",),
        "ben": ("writers",),
        "cid": ("leads", "readers", "support"),
    }
    leads = policy.role("leads")
    assert leads is not None and leads.member_of == ("readers",) and not leads.grants
    assert readers.default_grants == {"SELECT"}
    assert next(u for u in policy.users if u.name == "ann").settings == (
        ("statement_timeout", "30s"),
    )
    assert policy.also_connect == ("monitor",)
    assert next(u for u in policy.users if u.name == "ben").connection_limit == 5
    agg = policy.aggregate("metrics_hourly")
    assert agg is not None and (agg.bucket, agg.group_by, agg.real_time) == (
        "1 hour",
        ("device",),
        False,
    )
    assert "TimescaleDB's own retention job" in flat(text) and "365 days" in text  # kept
    with db.admin() as conn:  # TimescaleDB's jobs are still there
        jobs = conn.execute(
            "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
            " ORDER BY 1"
        ).fetchall()
    assert [j[0] for j in jobs] == [
        "policy_compression",
        "policy_refresh_continuous_aggregate",
        "policy_retention",
    ]


@pytest.mark.timescaledb
def test_the_tutorials_company_database_round_trips(db, tmp_path):
    build(db, COMPANY)
    text, _ = adopt(db, tmp_path, ["alice", "bob", "carol", "david", "eve"])
    policy = parse_policy(tomllib.loads(text))
    assert policy.audit.default_mode == "off"
    assert policy.audit.table != "activity_audit"  # the tutorial's own table has the name
    assert policy.table("activity_audit") is not None  # a table of the database, as it is
    assert {r.name: r.grants for r in policy.roles}["auditors"] == (
        ("activity_audit", frozenset({"SELECT"})),
    )
    # what it cannot say is in the file, never dropped
    said = flat(text)
    assert "trigger sensor_audit of the database's own: kept" in said
    assert "row-level security policy managers_see_their_department (permissive FOR" in said
    assert "current_setting('app.department'::text, true))): kept as it is" in said
    assert "column id (integer not null default nextval(" in said
    assert "column username (text default CURRENT_USER) is left out" in said
    with db.admin() as conn:  # the audit trigger and the row policies are still there
        trig = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname IN ('sensor_audit', 'financial_audit')"
            " AND tgrelid IN ('sensor_readings'::regclass, 'financial_metrics'::regclass)"
        ).fetchone()
        pols = conn.execute("SELECT count(*) FROM pg_policies").fetchone()
        ours = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'tsaccess%'"
        ).fetchone()
    assert (trig, pols, ours) == ((2,), (2,), (0,))


def test_what_the_policy_cannot_say_is_listed(db, tmp_path):
    build(
        db,
        """
        CREATE TABLE t (id int, r int4range, made timestamptz DEFAULT clock_timestamp(), v text);
        CREATE ROLE grp NOLOGIN; GRANT SELECT ON t TO grp;
        CREATE ROLE direct LOGIN PASSWORD 'x-direct'; GRANT SELECT (v) ON t TO direct;
        CREATE ROLE member LOGIN PASSWORD 'x-member' NOINHERIT; GRANT grp, pg_monitor TO member;
        GRANT TRUNCATE ON t TO grp;
        """,
    )
    res = run("generate", "--dsn", dsn(db), "--json")
    data = json.loads(res.stdout)
    text = data["policy"]
    said = flat(text)
    assert "column r (int4range) is left out" in said
    assert "column made (timestamp with time zone default clock_timestamp())" in said
    assert "direct (a login user) holds privileges here" in said
    assert "member of pg_monitor" in said and "NOINHERIT" in said
    changes = data["changes"]
    assert "revoke SELECT(v) on table t from direct" in changes
    assert "revoke membership of member in pg_monitor" in changes
    assert "reset attributes of login user member" in changes
    assert "applying it as it is would still change" in res.stderr
    policy = parse_policy(tomllib.loads(text))
    assert policy.role("grp") is not None and policy.role("grp").grants == (  # type: ignore[union-attr]
        ("t", frozenset({"SELECT", "TRUNCATE"})),
    )
    assert policy.database == db.name and policy.timescaledb in ("prefer", "off")


def test_generate_refuses_weak_tls_and_keeps_existing_files(db, tmp_path, tcp_trap):
    port, trap = tcp_trap
    res = run("generate", "--dsn", f"host=127.0.0.1 port={port} sslmode=disable", code=1)
    assert "sslmode='disable'" in res.stderr
    assert untouched(trap)
    build(db, "CREATE TABLE t (a int)")
    out = tmp_path / "p.toml"
    out.write_text("mine")
    res = run("generate", "--dsn", dsn(db), "--out", str(out), code=1)
    assert "exists" in res.stderr and out.read_text() == "mine"
    run("generate", "--dsn", dsn(db), "--out", str(out), "--force")
    assert "[tables.t.columns]" in out.read_text()
    res = run("generate", "--dsn", dsn(db), "--schema", "nope", code=1)
    assert "schema 'nope' does not exist" in res.stderr
    with db.admin(autocommit=True) as conn:  # nothing was changed by generate
        assert conn.execute(
            sql.SQL("SELECT count(*) FROM pg_roles WHERE rolname = 'tsaccess_audit'")
        ).fetchone() == (0,)


_SLICED_SALES_ACCESS = """
[roles.managers]
grants = { sales = ["SELECT"] }
[roles.managers.slices]
sales = "department"
[roles.finance]
grants = { sales = ["SELECT", "INSERT"] }
[users.carol]
roles = ["managers"]
attributes = { department = "Sales" }
[users.dave]
roles = ["finance"]
"""


def _apply_sliced_sales(db, tmp_path, table: str, *, timescaledb: bool = False) -> None:
    """Apply a policy of one table ``sales`` (as ``table`` declares it) sliced by department for
    managers (carol: Sales), with finance (dave) reading and writing all of it."""
    made = tmp_path / "made.toml"
    head = f'[database]\nname = "{db.name}"\n'
    if timescaledb:
        head += 'timescaledb = "require"\n'
    made.write_text(head + '[audit]\ndefault_mode = "off"\n' + table + _SLICED_SALES_ACCESS)
    run(
        "apply",
        "--dsn",
        dsn(db),
        "--policy",
        str(made),
        "--yes",
        "--generate-passwords",
        str(tmp_path / "pw"),
    )


def test_row_slices_tsaccess_made_are_recovered(db, tmp_path):
    """Row-level security tsaccess made (a slice per role) maps back onto slices and the users'
    attributes; the plan of the generated policy changes nothing."""
    _apply_sliced_sales(
        db,
        tmp_path,
        """
[tables.sales.columns]
id = "integer"
department = "text"
amount = "numeric(10,2)"
""",
    )
    data = json.loads(run("generate", "--dsn", dsn(db), "--json").stdout)
    policy = parse_policy(tomllib.loads(data["policy"]))
    managers = policy.role("managers")
    assert managers is not None and [(s.table, s.column, s.attribute) for s in managers.slices] == [
        ("sales", "department", "department")
    ]
    carol = next(u for u in policy.users if u.name == "carol")
    assert carol.attributes == (("department", "Sales"),)
    assert data["changes"] == [] and data["neutral"] == []  # tsaccess made it: nothing to do


@pytest.mark.timescaledb
def test_a_sliced_hypertable_round_trips(db, tmp_path):
    """On a hypertable a sliced role's SELECT is a column privilege on every column (chunks never
    copy those): generate maps it back onto the table grant and the slice, and the plan of the
    generated policy is empty."""
    _apply_sliced_sales(
        db,
        tmp_path,
        """
[tables.sales]
time_column = "time"
hypertable = true
chunk_interval = "1 day"
[tables.sales.columns]
time = "timestamptz not null"
department = "text"
amount = "numeric(10,2)"
""",
        timescaledb=True,
    )
    with db.admin() as conn:
        conn.execute(
            "INSERT INTO sales SELECT now() - g * interval '1 day', d, 1"
            " FROM generate_series(0, 3) g, unnest(ARRAY['Sales', 'Ops']) d"
        )
        conn.commit()
        assert conn.execute(
            "SELECT has_table_privilege('managers', 'sales', 'SELECT'),"
            " has_column_privilege('managers', 'sales', 'amount', 'SELECT')"
        ).fetchone() == (False, True)
    data = json.loads(run("generate", "--dsn", dsn(db), "--json").stdout)
    policy = parse_policy(tomllib.loads(data["policy"]))
    managers = policy.role("managers")
    assert managers is not None
    assert managers.grants == (("sales", frozenset({"SELECT"})),)
    assert managers.column_grants == ()
    assert [(s.table, s.column) for s in managers.slices] == [("sales", "department")]
    assert [t.name for t in policy.tables] == ["sales"]  # not the chunk trigger's state
    assert data["changes"] == [] and data["neutral"] == []
    adopted = tmp_path / "adopted.toml"
    adopted.write_text(data["policy"])
    run("plan", "--dsn", dsn(db), "--policy", str(adopted), "--detailed-exitcode")
    # a column added by hand: managers cannot read it; the slice still needs the table grant
    with db.admin(autocommit=True) as conn:
        conn.execute("ALTER TABLE sales ADD COLUMN note text")
    data = json.loads(run("generate", "--dsn", dsn(db), "--json").stdout)
    managers = parse_policy(tomllib.loads(data["policy"])).role("managers")
    assert managers is not None and managers.grants == (("sales", frozenset({"SELECT"})),)
    # the grant on the table, and the copies GRANT puts on the existing chunks taken back
    changes = data["changes"]
    assert changes[0] == "grant SELECT (note) on table sales to managers"
    assert changes[1:] and all(
        c.startswith("revoke SELECT (note) on chunk _timescaledb_internal.")
        and c.endswith(" of sales from managers")
        for c in changes[1:]
    ), changes
