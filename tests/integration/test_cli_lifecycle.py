"""The plan/apply lifecycle from the command line (issue 13): exit codes for CI, SQL-only
output, saved plans, plans for a database that does not exist yet, confirmation on a terminal,
no database left behind by a failed apply, and the CLI polish (version, help, passwords files,
verify's hint and legend, audit's schema and table)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.integration.test_cli import dsn, run
from tsaccess.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
HOSPITAL = (ROOT / "examples" / "hospital.toml").read_text()

pytestmark = pytest.mark.timescaledb


def _policy_file(tmp_path: Path, dbname: str, text: str = HOSPITAL) -> Path:
    f = tmp_path / f"{dbname}.toml"
    f.write_text(text.replace('name = "hospital"', f'name = "{dbname}"'))
    return f


def _exists(db, name: str) -> bool:
    with db.admin() as conn:
        return bool(conn.execute("SELECT FROM pg_database WHERE datname = %s", (name,)).fetchall())


def _drop(db, name: str) -> None:
    with db.admin(autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def hospital(db, tmp_path):
    """The hospital policy for the test database, applied; (policy file, passwords file)."""
    policy = _policy_file(tmp_path, db.name)
    pw = tmp_path / "pw"
    run(
        "apply",
        "--yes",
        "--dsn",
        dsn(db),
        "--policy",
        str(policy),
        "--generate-passwords",
        str(pw),
        check_code=0,
    )
    return policy, pw


def test_detailed_exitcode_tells_ci_whether_anything_drifted(db, hospital):
    policy, _ = hospital
    plan = ["plan", "--dsn", dsn(db), "--policy", str(policy), "--detailed-exitcode"]
    res = run(*plan, check_code=0)
    assert "Nothing to do" in res.stdout
    with db.admin(autocommit=True) as conn:
        conn.execute("ALTER ROLE maria SET default_transaction_read_only = on")
    res = run(*plan, check_code=2)
    assert "user maria\n  ~ user maria: reset settings not in the policy" in res.stdout
    assert "Plan: 0 to add, 1 to change, 0 to revoke." in res.stdout
    assert run("plan", "--dsn", dsn(db), "--policy", str(policy), check_code=0)  # without it
    bad = _policy_file(Path(policy).parent, "x", HOSPITAL.replace("[tables.vitals]", "[tables.v]"))
    res = run("plan", "--dsn", dsn(db), "--policy", str(bad), "--detailed-exitcode")
    assert res.returncode == 1, res.stderr


def test_plan_sql_prints_only_runnable_sql_on_stdout(db, tmp_path):
    no_users = HOSPITAL[: HOSPITAL.index("[users.paul]")]  # no password verifier to redact
    policy = _policy_file(tmp_path, db.name, no_users)
    res = run("plan", "--dsn", dsn(db), "--policy", str(policy), "--sql", check_code=0)
    assert "Plan: " in res.stderr and "Plan: " not in res.stdout
    assert "CREATE TABLE" in res.stdout
    with db.admin(autocommit=True) as conn:
        conn.execute(res.stdout)  # the whole output runs as it is
    res = run("plan", "--dsn", dsn(db), "--policy", str(policy), "--detailed-exitcode")
    assert res.returncode == 0, res.stdout


def test_saved_plan_applies_exactly_or_refuses_when_the_database_moved(db, hospital, tmp_path):
    policy, pw = hospital
    changed = tmp_path / "changed.toml"
    changed.write_text(policy.read_text().replace('[users.paul]\nroles = ["nurses"]\n', ""))
    out = tmp_path / "plan.tfplan"
    res = run("plan", "--dsn", dsn(db), "--policy", str(changed), "--out", str(out), check_code=0)
    assert "- disable login of removed user paul (NOLOGIN)" in res.stdout
    assert out.stat().st_mode & 0o777 == 0o600
    assert "SCRAM-SHA-256" not in out.read_text()
    # the database moves: the saved plan is refused, nothing applied
    with db.admin(autocommit=True) as conn:
        conn.execute("ALTER ROLE rita CONNECTION LIMIT 9")
    res = run("apply", "--yes", "--dsn", dsn(db), str(out), "--passwords-file", str(pw))
    assert res.returncode == 1
    assert "the database changed since the plan was saved" in res.stderr
    with db.admin() as conn:
        assert conn.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'paul'"
        ).fetchone() == (True,)
    # planned again, applied exactly
    run("plan", "--dsn", dsn(db), "--policy", str(changed), "--out", str(out), check_code=0)
    res = run(
        "apply", "--yes", "--dsn", dsn(db), str(out), "--passwords-file", str(pw), check_code=0
    )
    assert "applied 4 statement(s)" in res.stdout  # 3 for paul + rita's connection limit
    with db.admin() as conn:
        assert conn.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'paul'"
        ).fetchone() == (False,)
    # a plan file that was tampered with is refused
    data = json.loads(out.read_text())
    data["policy"] = data["policy"].replace("connection_limit = 2", "connection_limit = 99")
    out.write_text(json.dumps(data))
    res = run("apply", "--yes", "--dsn", dsn(db), str(out), "--passwords-file", str(pw))
    assert res.returncode == 1 and "altered after saving" in res.stderr


def test_plan_and_apply_a_database_that_does_not_exist_yet(db, tmp_path):
    name = f"{db.name}_new"
    policy = _policy_file(tmp_path, name)
    admin = dsn(db, dbname=None)  # the policy names the database (a dbname in --dsn would win)
    try:
        res = run("plan", "--dsn", admin, "--policy", str(policy), check_code=0)
        assert f"database {name}\n  + create database {name}" in res.stdout
        assert "  + create table vitals" in res.stdout
        out = tmp_path / "new.plan"
        run("plan", "--dsn", admin, "--policy", str(policy), "--out", str(out), check_code=0)
        assert not _exists(db, name)
        pw = tmp_path / "pw"
        res = run("apply", "--yes", "--dsn", admin, str(out), "--generate-passwords", str(pw))
        assert res.returncode == 0, res.stderr
        res = run("plan", "--dsn", admin, "--policy", str(policy), "--detailed-exitcode")
        assert res.returncode == 0, res.stdout
    finally:
        _drop(db, name)


def test_a_failed_apply_leaves_no_new_database_behind(db, tmp_path):
    name = f"{db.name}_fail"
    policy = _policy_file(tmp_path, name)
    admin = dsn(db, dbname=None)  # the policy names the database
    # no passwords for the new users: apply fails after the database was created
    res = run("apply", "--yes", "--dsn", admin, "--policy", str(policy), "--create-database")
    assert res.returncode == 1
    assert "no password for new login user" in res.stderr
    assert not _exists(db, name)
    # an existing database is never dropped by a failed apply
    policy = _policy_file(tmp_path, db.name)
    res = run("apply", "--yes", "--dsn", admin, "--policy", str(policy), "--create-database")
    assert res.returncode == 1
    assert _exists(db, db.name)


def _apply_on_a_terminal(db, policy: Path, pw: Path, answer: str):
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tsaccess",
                "apply",
                "--dsn",
                dsn(db),
                "--policy",
                str(policy),
                "--generate-passwords",
                str(pw),
            ],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(master, answer.encode() + b"\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    return proc.returncode, out, err


def test_apply_asks_on_a_terminal(db, tmp_path):
    policy = _policy_file(tmp_path, db.name)
    code, out, err = _apply_on_a_terminal(db, policy, tmp_path / "pw1", "no")
    assert code == 1 and "apply cancelled; nothing changed" in err
    assert "Apply these changes? Only 'yes' is accepted" in out
    assert "+ create table vitals" in out
    with db.admin() as conn:
        assert conn.execute("SELECT to_regclass('clinical.vitals')").fetchone() == (None,)
    code, out, err = _apply_on_a_terminal(db, policy, tmp_path / "pw2", "yes")
    assert code == 0, err
    with db.admin() as conn:
        assert conn.execute("SELECT to_regclass('clinical.vitals') IS NOT NULL").fetchone() == (
            True,
        )


def test_version_and_help_for_every_option():
    res = run("--version", check_code=0)
    assert res.stdout.startswith("tsaccess ")
    parser = build_parser()
    missing = []
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in [("tsaccess", parser), *subs.choices.items()]:
        for action in sp._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_passwords_files_repeat_and_verify_hints_once(db, hospital, tmp_path):
    policy, pw = hospital
    lines = [x for x in pw.read_text().splitlines() if not x.startswith("#")]
    half1, half2 = tmp_path / "a.pgpass", tmp_path / "b.pgpass"
    for f, part in ((half1, lines[:2]), (half2, lines[2:])):
        f.write_text("\n".join(part) + "\n")
        f.chmod(0o600)
    verify = ["verify", "--dsn", dsn(db), "--policy", str(policy)]
    res = run(*verify, "--passwords-file", str(half1), "--passwords-file", str(half2), check_code=0)
    assert "0 disagreement(s)" in res.stdout
    res = run(*verify, "--passwords-file", str(half1), check_code=4)  # incomplete
    hints = [x for x in res.stdout.splitlines() if "not tried: no password for" in x]
    assert len(hints) == 1, res.stdout
    users = sorted(x.split(":")[3] for x in lines[2:])
    assert f"no password for {', '.join(users)}" in hints[0]
    others = [x for x in res.stdout.splitlines() if "not tried" in x and x != hints[0]]
    assert others[0] == (
        "allowed/denied: what happened when the user tried it; ?: not tried; "
        "!!: the policy, the catalog and the try disagree"
    )
    assert len(others) == 2 and ", 0 disagreement(s), " in others[1], others
    assert "not tried: incomplete" in others[1]
    assert "?: not tried" in res.stdout and "!!: the policy, the catalog" in res.stdout


def test_audit_reads_a_custom_schema_and_table(db, tmp_path):
    text = HOSPITAL + '\n[audit]\ntable = "ward_log"\n'
    policy = _policy_file(tmp_path, db.name, text)
    run(
        "apply",
        "--yes",
        "--dsn",
        dsn(db),
        "--policy",
        str(policy),
        "--generate-passwords",
        str(tmp_path / "pw"),
        check_code=0,
    )
    with db.admin(autocommit=True) as conn:
        conn.execute("INSERT INTO clinical.vitals VALUES (now(), 1, 'A', 70, 99)")
    res = run(
        "audit",
        "recent",
        "--dsn",
        dsn(db),
        "--schema",
        "clinical",
        "--audit-table",
        "ward_log",
        "--json",
        check_code=0,
    )
    assert [e["operation"] for e in json.loads(res.stdout)] == ["INSERT"]
    res = run("audit", "summary", "--dsn", dsn(db), "--policy", str(policy), "--json", check_code=0)
    assert json.loads(res.stdout)[0]["table_name"] == "clinical.vitals"
    res = run("audit", "recent", "--dsn", dsn(db))  # the default: public.activity_audit
    assert res.returncode == 1 and "activity_audit" in res.stderr


def test_policy_errors_are_reported_at_once(tmp_path, db):
    bad = (
        HOSPITAL.replace('"UPDATE (note)"', '"UPDATE (nothere)"')
        .replace('roles = ["physicians"]', 'roles = ["surgeons"]')
        .replace("connection_limit = 2", 'connection_limit = "two"')
    )
    policy = _policy_file(tmp_path, db.name, bad)
    res = run("plan", "--dsn", dsn(db), "--policy", str(policy))
    assert res.returncode == 1
    assert "3 errors in the policy" in res.stderr
    for path in (
        "[users.rita.connection_limit]",
        "[users.maria.roles]",
        "[roles.nurses.grants.vitals]",
    ):
        assert path in res.stderr, res.stderr
    # nothing was connected to or changed
    with psycopg.connect(**db.params()) as conn:
        assert conn.execute("SELECT to_regnamespace('clinical')").fetchone() == (None,)


def test_check_resolves_tables_of_the_policy_schema_unqualified(db, hospital):
    base = ["check", "--dsn", dsn(db), "--user", "rita"]  # no password of rita's needed
    res = run(*base, "SELECT ward, avg(heart_rate) FROM vitals GROUP BY ward")
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(*base, "SELECT patient_id FROM vitals")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "SELECT (patient_id) on table clinical.vitals" in res.stdout
