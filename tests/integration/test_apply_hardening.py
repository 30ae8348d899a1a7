"""apply attacked as an insider would: names that try SQL, passwords generated or missing, the
admin in its own policy, two applies at once, verifiers in the server log."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import tsaccess
from tests.integration.test_cli import dsn, run
from tsaccess.demo import company_policy
from tsaccess.passwords import Secret, resolve_passwords, scram_verifier
from tsaccess.plan.compose import Plan, apply, plan
from tsaccess.plan.secret_sql import run_secret
from tsaccess.policy import Column, GroupRole, Policy, Table, User

EVIL = 'x"; DROP TABLE victim; --'


def _passwords(policy: Policy) -> dict[str, Secret]:
    return resolve_passwords([u.name for u in policy.users], generate=True, environ={})


def test_names_with_quotes_semicolons_reach_the_server_as_names(db):
    """A name that tries SQL is just a strange name: created as written, nothing else runs."""
    with db.admin(autocommit=True) as conn:
        conn.execute("CREATE TABLE victim (x int)")
    policy = Policy(
        database=db.name,
        tables=(
            Table(
                EVIL,
                (
                    Column("t", "timestamptz", nullable=False),
                    Column("c'); DROP TABLE victim; --", "text", default="'); DROP TABLE victim"),
                ),
                time_column="t",
            ),
        ),
        roles=(GroupRole("r; DROP TABLE victim", ((EVIL, frozenset({"SELECT"})),)),),
        users=(User("u'--", ("r; DROP TABLE victim",)),),
    )
    with db.admin() as conn:
        apply(conn, policy, passwords=_passwords(policy))
    with db.admin() as conn:
        assert conn.execute("SELECT to_regclass('public.victim')").fetchone()[0] is not None
        cols = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            (sql.Identifier("public", EVIL).as_string(conn),),
        ).fetchall()
        assert {c[0] for c in cols} == {"t", "c'); DROP TABLE victim; --"}
        assert not plan(conn, policy)


def test_generated_passwords_only_for_new_users(db):
    """An existing user's password is never replaced by a generated one."""
    policy = company_policy().with_database(db.name)
    bob_pw = db.create_login("bob")
    with db.admin() as conn:
        result = apply(conn, policy, generate_passwords=True)
    assert set(result.plan.generated) == {"alice", "carol", "david", "eve"}
    assert "bob" not in " ".join(s.summary for s in result.plan.steps if s.secret)
    with db.connect_as("bob", bob_pw) as conn:  # bob's password still works
        assert conn.execute("SELECT current_user").fetchone() == ("bob",)
    for user, pw in result.plan.generated.items():
        with db.connect_as(user, pw.reveal()) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)
    with db.admin() as conn:  # a second run generates nothing
        again = apply(conn, policy, generate_passwords=True)
    assert again.plan.generated == {}
    assert not again.plan


def test_before_commit_runs_before_the_commit_and_can_roll_back(db):
    policy = company_policy().with_database(db.name)
    seen: list[bool] = []

    def hook(p: Plan) -> None:
        assert p.generated
        with db.admin() as other:  # another session: the users are not committed yet
            seen.append(
                other.execute("SELECT 1 FROM pg_roles WHERE rolname = 'alice'").fetchone()
                is not None
            )
        raise OSError("disk full")

    with db.admin() as conn, pytest.raises(OSError, match="disk full"):
        apply(conn, policy, generate_passwords=True, before_commit=hook)
    assert seen == [False]
    with db.admin() as conn:  # rolled back: nothing was created
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'alice'").fetchone() is None


@pytest.fixture
def policy_file(db, tmp_path) -> Path:
    from tests.integration.test_cli import POLICY_TEXT

    f = tmp_path / "policy.toml"
    f.write_text(POLICY_TEXT.replace('name = "company_db"', f'name = "{db.name}"'))
    return f


def test_cli_generate_passwords_file_new_users_only_and_no_planted_tmp(db, policy_file, tmp_path):
    alice_pw = db.create_login("alice")
    pwfile = tmp_path / "pw.pgpass"
    planted = tmp_path / "pw.pgpass.tmp"  # another local user's trap
    planted.touch(mode=0o666)
    planted.chmod(0o666)
    args = ["--dsn", dsn(db), "--policy", str(policy_file)]
    res = run("apply", "--yes", *args, "--generate-passwords", str(pwfile), check_code=0)
    assert "generated passwords for bob, carol, david, eve" in res.stdout
    assert planted.read_bytes() == b""
    assert pwfile.stat().st_mode & 0o777 == 0o600
    lines = [x for x in pwfile.read_text().splitlines() if not x.startswith("#")]
    pw = {x.split(":")[3]: x.split(":")[4] for x in lines}
    assert set(pw) == {"bob", "carol", "david", "eve"}
    for user, secret in {**pw, "alice": alice_pw}.items():
        with db.connect_as(user, secret) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "policy.toml",
        "pw.pgpass",
        "pw.pgpass.tmp",
    ]


def test_cli_passwords_file_is_written_before_commit(db, policy_file, tmp_path):
    """Writing the file fails (no such folder): the transaction rolls back, no user exists
    whose password nobody knows."""
    args = ["--dsn", dsn(db), "--policy", str(policy_file)]
    res = run("apply", "--yes", *args, "--generate-passwords", str(tmp_path / "missing" / "pw"))
    assert res.returncode == 1, res.stdout
    assert "No such file or directory" in res.stderr or "missing" in res.stderr
    with db.admin() as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'bob'").fetchone() is None


def test_existing_login_without_password_gets_the_policy_password(db):
    policy = company_policy().with_database(db.name)
    with db.admin(autocommit=True) as conn:
        conn.execute("CREATE ROLE bob LOGIN")  # no password: bob cannot log in
    pw = _passwords(policy)
    with db.admin() as conn:
        apply(conn, policy, passwords=pw)
        with db.admin(autocommit=True) as c2:
            c2.execute("ALTER ROLE bob PASSWORD NULL")
        without = plan(conn, policy)  # no password given: said, not silently "nothing"
        conn.rollback()
        p = plan(conn, policy, passwords=pw)
    assert not without
    assert "warning: login user 'bob' has no password and cannot log in" in without.summary()
    assert [s.summary for s in p.steps] == ["set password of bob (it has none: it cannot log in)"]
    with db.admin() as conn:
        apply(conn, policy, passwords=pw)
    with db.connect_as("bob", pw["bob"].reveal()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("bob",)


@pytest.mark.parametrize("where", ["users", "roles", "audit.owner"])
def test_policy_naming_the_admin_is_refused_in_plan(db, where):
    policy = company_policy().with_database(db.name)
    admin = db.params()["user"]
    if where == "users":
        policy = dataclasses.replace(policy, users=(*policy.users, User(admin, ("auditors",))))
    elif where == "roles":
        policy = dataclasses.replace(policy, roles=(*policy.roles, GroupRole(admin)))
    else:
        policy = dataclasses.replace(policy, audit=dataclasses.replace(policy.audit, owner=admin))
    with db.admin() as conn, pytest.raises(tsaccess.PolicyError, match="administrator") as err:
        plan(conn, policy)
    assert admin in str(err.value)
    with db.admin() as conn, pytest.raises(tsaccess.PolicyError, match="administrator"):
        apply(conn, policy, passwords=_passwords(policy))
    with db.admin() as conn:  # nothing happened
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'alice'").fetchone() is None
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (admin,)
        ).fetchone()[0]


def _race(jobs):
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def run_job(job):
        try:
            barrier.wait()
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run_job, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_concurrent_applies_same_database_both_succeed(db):
    policy = company_policy().with_database(db.name)
    pw = _passwords(policy)

    def job():
        with db.admin() as conn:
            apply(conn, policy, passwords=pw)

    assert _race([job, job]) == []
    with db.admin() as conn:
        assert not plan(conn, policy, passwords=pw)


def test_two_concurrent_applies_sharing_roles_fail_clearly(db, pg_server):
    """Two databases, one set of (cluster-wide) roles: the loser gets a clear ApplyError."""
    other = db.name + "_2"
    with tsaccess.connect(**pg_server.params(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
    try:
        policies = [
            company_policy().with_database(db.name),
            company_policy().with_database(other),
        ]
        pw = _passwords(policies[0])

        def job(p):
            def go():
                with tsaccess.connect(**pg_server.params(dbname=p.database)) as conn:
                    apply(conn, p, passwords=pw)

            return go

        errors = _race([job(p) for p in policies])
        # both may win when one is slower than the other; a loser must be told what happened
        for exc in errors:
            assert isinstance(exc, tsaccess.ApplyError), repr(exc)
            assert "another apply" in str(exc) and "Run it again" in str(exc), str(exc)
    finally:
        with tsaccess.connect(**pg_server.params(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(other))
            )


def _log_after(pg_server, offset: int) -> str:
    assert pg_server.workdir is not None, "the log check needs the local backend"
    log = Path(pg_server.workdir) / "server.log"
    with log.open("rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def _log_size(pg_server) -> int:
    if pg_server.backend != "local":  # a container's log is not a file here
        pytest.skip("reads the server log file of the local backend (TSACCESS_TEST_BACKEND=local)")
    return (Path(pg_server.workdir) / "server.log").stat().st_size


def test_failed_create_role_keeps_the_verifier_out_of_the_server_log(db, pg_server):
    policy = company_policy().with_database(db.name)
    pw = _passwords(policy)
    offset = _log_size(pg_server)

    def sabotage(i, step):  # someone creates alice just before apply does
        if step.summary.startswith("create login user alice"):
            db.create_login("alice")

    with db.admin() as conn, pytest.raises(tsaccess.ApplyError, match="alice"):
        apply(conn, policy, passwords=pw, on_step=sabotage)
    log = _log_after(pg_server, offset)
    assert 'role "alice" already exists' in log  # the failure was logged...
    assert "SCRAM-SHA-256$" not in log  # ...without the verifier
    assert "PASSWORD" not in log.upper().replace("PASSWORD_", "")


def test_verifier_stays_out_of_the_log_for_a_non_superuser_admin(db, pg_server):
    admin_pw = db.create_login("roleadmin")
    with db.admin(autocommit=True) as conn:
        conn.execute("ALTER ROLE roleadmin CREATEROLE")
        conn.execute("CREATE ROLE taken")
    offset = _log_size(pg_server)
    verifier = scram_verifier(Secret("s3cret-value"))
    with db.connect_as("roleadmin", admin_pw) as conn:
        with pytest.raises(psycopg.errors.DuplicateObject, match="already exists"):
            run_secret(
                conn,
                sql.SQL("CREATE ROLE taken LOGIN PASSWORD {}").format(sql.Literal(verifier)),
            )
        conn.rollback()
        # the setting that carried it is gone
        assert conn.execute("SELECT current_setting('tsaccess.secret_statement', true)").fetchone()[
            0
        ] in (None, "")
    log = _log_after(pg_server, offset)
    assert 'role "taken" already exists' in log
    assert verifier.split("$")[2] not in log
    assert "SCRAM-SHA-256$" not in log


@pytest.mark.parametrize("attempt", range(3))  # a race: each try loses it about half the time
def test_two_cli_applies_creating_the_database_at_once(db, pg_server, tmp_path, attempt):
    """Both create the database if missing: the one that loses the race uses the other's
    (it failed with 'duplicate key value violates unique constraint pg_database_datname_index')."""
    from tests.integration.test_cli import POLICY_TEXT

    name = f"{db.name}_cli{attempt}"
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY_TEXT.replace('name = "company_db"', f'name = "{name}"'))
    env = {
        f"TSACCESS_PASSWORD_{u.upper()}": f"pw-{u}-0123456789"
        for u in ("alice", "bob", "carol", "david", "eve")
    }
    admin = dsn(db, dbname=None)  # the policy names the database (a dbname in --dsn would win)
    args = ["apply", "--yes", "--dsn", admin, "--policy", str(policy_file), "--create-database"]
    results = []
    try:
        errors = _race([lambda: results.append(run(*args, env=env)) for _ in range(2)])
        assert errors == []
        for res in results:
            assert res.returncode == 0, res.stderr
        with tsaccess.connect(**pg_server.params(dbname=name)) as conn:
            assert not plan(conn, company_policy().with_database(name))
    finally:
        with tsaccess.connect(**pg_server.params(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _serialization_failure(conn: psycopg.Connection) -> None:
    conn.execute(
        "DO $$ BEGIN RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001'; END $$"
    )


def test_a_transient_conflict_runs_the_whole_transaction_again(db):
    """A background job that updates the same catalog row (compress_chunk truncating a chunk a
    GRANT recurses to: "tuple concurrently updated"), a deadlock or a serialization failure
    in a step: apply runs the transaction again from the plan, and the database ends as the
    policy says."""
    policy = company_policy().with_database(db.name)
    pw = _passwords(policy)
    seen: list[int] = []
    with db.admin() as conn:

        def once(i, step):
            seen.append(i)
            if i == 3 and seen.count(3) == 1:  # the server raises it, in the transaction
                _serialization_failure(conn)

        result = apply(conn, policy, passwords=pw, on_step=once)
        assert seen.count(3) == 2 and seen.count(0) == 2  # the second attempt started over
        assert not plan(conn, policy, passwords=pw)
        assert len(result.plan) > 3
        conn.rollback()


def test_a_conflict_that_persists_is_an_error_and_nothing_changed(db):
    policy = company_policy().with_database(db.name)
    pw = _passwords(policy)
    with db.admin() as conn:
        before = len(plan(conn, policy, passwords=pw))
        conn.rollback()

        def always(i, step):
            if i == 2:
                _serialization_failure(conn)

        with pytest.raises(tsaccess.ApplyError, match=r"tried 3 times.*nothing changed"):
            apply(conn, policy, passwords=pw, on_step=always)
        assert len(plan(conn, policy, passwords=pw)) == before
        conn.rollback()
