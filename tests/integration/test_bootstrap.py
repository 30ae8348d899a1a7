"""Plan, apply and prove the company policy against the real server."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

import psycopg
import pytest
from psycopg import sql

import tsaccess
from tests.helpers import apply_company
from tsaccess.catalog import read_catalog
from tsaccess.demo import company_policy
from tsaccess.plan.compose import apply, plan, render_init
from tsaccess.policy import parse_policy
from tsaccess.verify import verify

MODEL = {  # the reference model, cell by cell (user -> table -> privileges)
    "alice": {"sensor_readings": {"SELECT"}},
    "bob": {"sensor_readings": {"SELECT", "INSERT", "UPDATE", "DELETE"}},
    "carol": {"sensor_readings": {"SELECT"}, "financial_metrics": {"SELECT"}},
    "david": {
        "sensor_readings": {"SELECT"},
        "financial_metrics": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    },
    "eve": {"activity_audit": {"SELECT"}},
    "monitor": {"activity_audit": {"SELECT"}},  # the exporter's login: the audit trail only
}


def _state(db) -> tuple:
    """Everything plan/verify look at, comparable before/after."""
    with db.admin() as conn:
        cat = read_catalog(conn, "public")
        roles = {
            n: (r.login, r.inherit, r.superuser)
            for n, r in cat.roles.items()
            if not n.startswith("pg_")
        }
        return (
            roles,
            cat.members,
            cat.database_acl,
            cat.schema_acl,
            {n: (t.acl, t.columns) for n, t in cat.tables.items()},
            {n: f.source for n, f in cat.functions.items()},
            frozenset(cat.triggers),
        )


def test_company_policy_matrix_matches_model_cell_by_cell(db):
    company = apply_company(db)
    with db.admin() as conn:
        matrix = verify(conn, company.policy, company.passwords, **company.user_params())
        assert not plan(conn, company.policy, passwords=company.passwords)  # idempotent
    assert matrix.ok, matrix.to_text()
    for user, tables in MODEL.items():
        for table in ("sensor_readings", "financial_metrics", "activity_audit"):
            for priv in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"):
                cell = matrix.cell(user, table, priv)
                assert cell.actual is (priv in tables.get(table, set())), (user, table, priv)
        assert matrix.cell(user, "<database>", "CONNECT").actual is True
        assert matrix.cell(user, "<schema>", "CREATE").actual is False
        assert matrix.tls[user] is not None
        assert matrix.tls[user].ssl
        view = matrix.cell(user, "activity_audit_rows", "SELECT")  # per-row audit data
        assert view.actual is (user in ("eve", "monitor")), user  # readers of the trail
    # per-row audit data: a column is seen through the view only by who may read it in the
    # table too; in the company policy eve (auditors) reads the view but not financial_metrics
    audited = company.policy.table("financial_metrics").audited_data_columns
    assert len(audited) == 6
    for user in MODEL:
        for col in audited:
            cell = matrix.cell(user, f"activity_audit_rows:financial_metrics.{col}", "SELECT")
            assert (cell.expected, cell.catalog, cell.actual) == (False, False, False), cell
    assert (
        "hidden"
        in matrix.cell("eve", "activity_audit_rows:financial_metrics.amount", "SELECT").detail
    )
    assert {u.name for u in company.policy.users} == set(MODEL)
    assert len(matrix.cells) == len(MODEL) * (3 * 5 + 1 + 2 + len(audited))


def test_public_cannot_connect_and_outsiders_are_refused(db):
    company = apply_company(db)
    pw = db.create_login("mallory")
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        db.connect_as("mallory", pw)
    with company.connect("alice") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TEMP TABLE t (x int)")


def test_drift_is_planned_as_exact_revoke_and_fails_verify_until_applied(db):
    company = apply_company(db)
    with db.admin(autocommit=True) as conn:
        conn.execute("GRANT INSERT ON sensor_readings TO data_analysts")
        conn.execute("GRANT SELECT (amount) ON financial_metrics TO data_analysts")
    with db.admin() as conn:
        p = plan(conn, company.policy, passwords=company.passwords)
        conn.rollback()
        assert [s.text() for s in p.steps] == [
            'REVOKE INSERT ON TABLE "public"."sensor_readings" FROM "data_analysts"',
            'REVOKE SELECT("amount") ON TABLE "public"."financial_metrics" FROM "data_analysts"',
        ]
        matrix = verify(conn, company.policy, company.passwords, **company.user_params())
        assert not matrix.ok
        # the column grant makes alice's probe SELECT succeed although the table-level
        # catalog answer is "no": the matrix reports both drifts
        assert {(c.user, c.object, c.privilege) for c in matrix.disagreements} == {
            ("alice", "sensor_readings", "INSERT"),
            ("alice", "financial_metrics", "SELECT"),
        }
        apply(conn, company.policy, passwords=company.passwords)
        assert verify(conn, company.policy, company.passwords, **company.user_params()).ok


def test_extra_membership_and_public_grant_are_revoked(db):
    company = apply_company(db)
    with db.admin(autocommit=True) as conn:
        conn.execute("GRANT pg_read_all_data TO alice")
        conn.execute("GRANT SELECT ON financial_metrics TO PUBLIC")
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(db.name))
        )
    with db.admin() as conn:
        summaries = {
            s.summary for s in plan(conn, company.policy, passwords=company.passwords).steps
        }
        conn.rollback()
        assert summaries == {
            "revoke membership of alice in pg_read_all_data",
            "revoke SELECT on table financial_metrics from PUBLIC",
            f"revoke CONNECT on database {db.name} from PUBLIC",
        }
        apply(conn, company.policy, passwords=company.passwords)
        assert not plan(conn, company.policy, passwords=company.passwords)


def test_failed_statement_mid_apply_changes_nothing_and_rerun_converges(db):
    policy = company_policy().with_database(db.name)
    from tsaccess.passwords import resolve_passwords

    pw = resolve_passwords([u.name for u in policy.users], generate=True, environ={})
    before = _state(db)

    def on_step(i, step):
        if i == 20:  # the statement run just before step 20 fails on the server
            conn.execute("SELECT 1/0")

    with db.admin() as conn, pytest.raises(tsaccess.ApplyError, match="rolled back"):
        apply(conn, policy, passwords=pw, on_step=on_step)
    after = _state(db)
    assert after == before
    with db.admin() as conn:
        apply(conn, policy, passwords=pw)
        assert not plan(conn, policy, passwords=pw)


def test_connection_killed_mid_apply_changes_nothing_and_rerun_converges(db):
    policy = company_policy().with_database(db.name)
    from tsaccess.passwords import resolve_passwords

    pw = resolve_passwords([u.name for u in policy.users], generate=True, environ={})
    before = _state(db)
    conn = db.admin()
    pid = conn.info.backend_pid

    def on_step(i, step):
        if i == 30:
            with db.admin(autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))

    with pytest.raises(tsaccess.ApplyError, match="connection lost"):
        apply(conn, policy, passwords=pw, on_step=on_step)
    conn.close()
    assert _state(db) == before
    with db.admin() as conn2:
        apply(conn2, policy, passwords=pw)
        assert not plan(conn2, policy, passwords=pw)


def test_names_that_try_sql_injection_are_just_strange_names(db):
    evil_table = 'x"; DROP TABLE victim; --'
    evil_role = "r'); DROP TABLE victim; --"
    policy = parse_policy(
        {
            "database": {"name": db.name, "timescaledb": "off"},
            "tables": {evil_table: {"columns": {'c"; --': "text"}, "audit": "row"}},
            "roles": {evil_role: {"grants": {evil_table: ["SELECT"]}}},
            "users": {"u$er 1": {"roles": [evil_role]}},
        }
    )
    with db.admin(autocommit=True) as conn:
        conn.execute("CREATE TABLE victim (x int)")
    company = apply_company(db, policy)
    with db.admin() as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            )
        }
        assert {"victim", evil_table, "activity_audit"} <= names
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (evil_role,)).fetchone()
        assert verify(conn, company.policy, company.passwords, **company.user_params()).ok
    with company.connect("u$er 1") as conn:
        conn.execute(
            sql.SQL("SELECT {} FROM {}").format(
                sql.Identifier('c"; --'), sql.Identifier(evil_table)
            )
        )


def test_policy_for_another_database_is_refused(db):
    policy = company_policy()  # company_db, not the test database
    with db.admin() as conn, pytest.raises(tsaccess.PolicyError, match="connected to database"):
        plan(conn, policy)


def test_new_user_without_password_is_refused_before_anything_runs(db):
    policy = company_policy().with_database(db.name)
    before = _state(db)
    with (
        db.admin() as conn,
        pytest.raises(tsaccess.PasswordSourceError, match="TSACCESS_PASSWORD_ALICE"),
    ):
        apply(conn, policy, passwords={})
    assert _state(db) == before


def test_password_rotation_is_planned_and_applied(db):
    company = apply_company(db)
    from tsaccess.passwords import Secret

    new = dict(company.passwords, alice=Secret("a-brand-new-password"))
    with db.admin() as conn:
        p = plan(conn, company.policy, passwords=new)
        conn.rollback()
        assert [s.summary for s in p.steps] == ["set password of alice"]
        assert "a-brand-new-password" not in p.sql() and "SCRAM" not in p.sql()
        apply(conn, company.policy, passwords=new)
    with db.connect_as("alice", "a-brand-new-password") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("alice",)


@pytest.fixture
def psql() -> str:
    """The psql client; the tests that run rendered scripts skip without it."""
    from tsaccess.ephemeral import find_bindir

    found = shutil.which("psql")
    if found is None:
        try:
            beside = find_bindir() / "psql"
        except tsaccess.ServerStartError:
            beside = None
        found = str(beside) if beside is not None and beside.exists() else None
    if found is None:
        pytest.skip("psql not installed (it comes with the PostgreSQL client package)")
    return found


def _psql(psql: str, server, dbname: str, script, env: dict) -> subprocess.CompletedProcess:
    cmd = [
        psql,
        "-X",
        "-q",
        "-h",
        server.host,
        "-p",
        str(server.port),
        "-U",
        server.user,
        "-d",
        dbname,
        "-f",
        str(script),
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


def test_rendered_init_scripts_leave_a_state_whose_plan_is_empty(db, pg_server, tmp_path, psql):
    # init scripts are written without a server to ask, so with the PL/pgSQL trigger functions;
    # where the server has tsaccess_native, the next apply switches to it (test_native.py)
    policy = dataclasses.replace(company_policy().with_database(db.name), native="off")
    files = render_init(policy, tmp_path / "init", timescaledb=pg_server.timescaledb)
    assert [f.name for f in files] == [
        "01-schema.sql",
        "02-security.sql",
        "03-audit.sql",
        "docker-compose.yml",
    ]
    env = {
        **os.environ,
        "PGPASSWORD": pg_server.password,
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": pg_server.sslrootcert or "",
    }
    pw = {u.name: f"pw-{u.name}-0123456789" for u in policy.users}
    for user, value in pw.items():
        env[f"TSACCESS_PASSWORD_{user.upper()}"] = value
    for f in files[:3]:
        res = _psql(psql, pg_server, db.name, f, env)
        assert res.returncode == 0, res.stderr
    for f in files[:3]:
        assert "pw-alice" not in f.read_text()
    from tsaccess.passwords import Secret

    with db.admin() as conn:
        p = plan(conn, policy, passwords={u: Secret(v) for u, v in pw.items()})
        assert not p, p.summary()
    with db.connect_as("bob", pw["bob"]) as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")


def test_rendered_init_refuses_a_missing_password_variable(db, pg_server, tmp_path, psql):

    policy = company_policy().with_database(db.name)
    files = render_init(policy, tmp_path, timescaledb=pg_server.timescaledb)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSACCESS_PASSWORD_")}
    env.update(PGPASSWORD=pg_server.password, PGSSLMODE="require")
    res = _psql(psql, pg_server, db.name, files[1], env)
    assert res.returncode != 0
    assert "set TSACCESS_PASSWORD_ALICE" in res.stderr
    with db.admin() as conn:
        assert not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'alice'").fetchone()


def test_a_dropped_object_fails_verify_with_the_reason_and_is_planned_back(db):
    company = apply_company(db)
    with db.admin(autocommit=True) as conn:
        conn.execute("DROP VIEW activity_audit_rows")
    with db.admin() as conn:
        matrix = verify(conn, company.policy, company.passwords, **company.user_params())
        assert not matrix.ok
        cell = matrix.cell("eve", "activity_audit_rows", "SELECT")
        assert (cell.expected, cell.actual) == (True, None)
        assert "does not exist in schema public: run tsaccess apply" in cell.detail
        assert {c.object for c in matrix.disagreements} == {"activity_audit_rows"}
        again = plan(conn, company.policy, passwords=company.passwords)
        assert "create or replace view activity_audit_rows" in again.summary(verbose=True)
