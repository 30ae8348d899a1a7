"""Safe defaults and an everyday CLI (issue 26), run as a new user runs it: apply asks or refuses,
one rule picks the database, verify tells untried from disagreeing, ``check --user`` answers
from the administrator's connection, and no traceback reaches the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_cli import POLICY_TEXT, dsn, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def policy_file(db, tmp_path) -> Path:
    f = tmp_path / "policy.toml"
    f.write_text(POLICY_TEXT.replace('name = "company_db"', f'name = "{db.name}"'))
    return f


@pytest.fixture
def applied(db, policy_file, tmp_path) -> Path:
    """The company policy applied; the passwords file apply wrote."""
    pwfile = tmp_path / "passwords.pgpass"
    run("apply", "--yes", "--dsn", dsn(db), "--policy", str(policy_file),
        "--generate-passwords", str(pwfile), check_code=0)  # fmt: skip
    return pwfile


def _tsaccess(*args: str, stdin=subprocess.DEVNULL, text_input: str | None = None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "tsaccess", *args],
        stdin=None if text_input is not None else stdin,
        input=text_input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=180,
        check=False,
    )


def _untouched(db) -> bool:
    """Nothing of the company policy exists in the database or the cluster."""
    with db.admin() as conn:
        table = conn.execute("SELECT to_regclass('public.sensor_readings')").fetchone()
        roles = conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('alice', 'data_analysts')"
        ).fetchone()
    return table == (None,) and roles == (0,)


def test_apply_off_a_terminal_changes_nothing_unless_yes(db, policy_file, tmp_path):
    pw = tmp_path / "pw"
    args = [
        "apply",
        "--dsn",
        dsn(db),
        "--policy",
        str(policy_file),
        "--generate-passwords",
        str(pw),
    ]
    for how in ("echo no |", "</dev/null"):
        res = _tsaccess(*args, text_input="no\n") if how == "echo no |" else _tsaccess(*args)
        assert res.returncode != 0, (how, res.stdout, res.stderr)
        assert "--yes" in res.stderr, (how, res.stderr)
        assert "Traceback" not in res.stderr
        assert _untouched(db), how
        assert not pw.exists()
    # several targets too
    other = dsn(db, dbname=f"{db.name}_other")
    res = _tsaccess("apply", "--dsn", dsn(db), "--dsn", other, "--policy", str(policy_file))
    assert res.returncode != 0 and "--yes" in res.stderr, res.stderr
    assert _untouched(db)
    res = _tsaccess(*args, "--yes")
    assert res.returncode == 0, res.stderr
    assert not _untouched(db)


def _on_a_terminal(args: list[str], keys: bytes) -> tuple[int, str, str]:
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tsaccess", *args],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(master, keys)
        out, err = proc.communicate(timeout=180)
    finally:
        os.close(master)
        os.close(slave)
    return proc.returncode, out, err


def test_end_of_input_on_a_terminal_cancels(db, policy_file, tmp_path):
    args = ["apply", "--dsn", dsn(db), "--policy", str(policy_file)]
    args += ["--generate-passwords", str(tmp_path / "pw")]
    code, out, err = _on_a_terminal(args, b"\x04")  # Ctrl-D: end of input
    assert code == 1, (out, err)
    assert "Apply these changes?" in out
    assert "apply cancelled; nothing changed" in err
    assert "Traceback" not in err
    assert _untouched(db)


def _no_passwords() -> dict[str, str]:
    return {k: "" for k in os.environ if k.startswith("TSACCESS_PASSWORD_")}


def test_verify_tells_untried_checks_from_disagreements(db, applied, policy_file):
    """Without passwords: incomplete (exit 4), 0 disagreements, how to supply them; with all:
    exit 0; a real disagreement is 3 whether passwords are there or not."""
    import json

    verify = ["verify", "--dsn", dsn(db), "--policy", str(policy_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSACCESS_PASSWORD_")}
    res = subprocess.run(
        [sys.executable, "-m", "tsaccess", *verify, "--json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert res.returncode == 4, res.stdout[-500:] + res.stderr
    out = json.loads(res.stdout)
    assert out["disagreements"] == 0 and out["untried"] > 50 and out["complete"] is False
    res = subprocess.run(
        [sys.executable, "-m", "tsaccess", *verify],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert res.returncode == 4
    assert ", 0 disagreement(s), " in res.stdout and "not tried" in res.stdout
    assert "TSACCESS_PASSWORD_<USER>" in res.stdout and "--passwords-file" in res.stdout
    res = _tsaccess(*verify, "--passwords-file", str(applied))
    assert res.returncode == 0, res.stdout[-800:]
    with db.admin(autocommit=True) as conn:
        conn.execute("GRANT DELETE ON sensor_readings TO data_analysts")
    for extra in ([], ["--passwords-file", str(applied)]):
        res = subprocess.run(
            [sys.executable, "-m", "tsaccess", *verify, *extra],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
        assert res.returncode == 3, (extra, res.stdout[-800:])
        assert "!! alice DELETE on sensor_readings" in res.stdout


def _env_without(*names: str) -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in names and not k.startswith("TSACCESS_PASSWORD_")
    }


def _bare(*args: str, env: dict[str, str]):
    return subprocess.run(
        [sys.executable, "-m", "tsaccess", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_check_as_another_user_from_the_administrators_connection(db, applied, policy_file):
    """ "Would alice be refused?" asked by the administrator: no password of alice's, alice's
    privileges (not the administrator's), the database from the usual rule."""
    env = _env_without()
    admin = dsn(db)  # the administrator's own login
    res = _bare("check", "--dsn", admin, "--user", "alice", "SELECT amount FROM financial_metrics",
                env=env)  # fmt: skip
    assert res.returncode == 3, res.stdout + res.stderr
    assert "SELECT (amount) on table public.financial_metrics" in res.stdout
    assert "password" not in res.stderr
    res = _bare("check", "--dsn", admin, "--user", "alice", "SELECT time, temperature FROM "
                "sensor_readings", env=env)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    res = _bare("check", "--dsn", admin, "--user", "alice", "--role", "data_analysts",
                "DELETE FROM sensor_readings", env=env)  # fmt: skip
    assert res.returncode == 3, res.stdout + res.stderr
    res = _bare("check", "--dsn", admin, "--user", "david", "SELECT amount FROM "
                "financial_metrics", env=env)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    res = _bare("check", "--dsn", admin, "--user", "alice", "--role", "auditors", "SELECT 1",
                env=env)  # fmt: skip
    assert res.returncode == 1 and "not a member of role 'auditors'" in res.stderr, res.stderr
    res = _bare("check", "--dsn", admin, "--user", "nobody", "SELECT 1", env=env)
    assert res.returncode == 1 and "role 'nobody' does not exist" in res.stderr, res.stderr
    # the database from the rule: the policy's, whatever PGDATABASE says
    no_db = dsn(db, dbname=None)
    res = _bare("check", "--dsn", no_db, "--policy", str(policy_file), "--user", "alice",
                "SELECT amount FROM financial_metrics", env={**env, "PGDATABASE": "postgres"})  # fmt: skip
    assert res.returncode == 3, res.stdout + res.stderr


def test_one_rule_picks_the_database_for_every_command(db, applied, policy_file, tmp_path):
    """--policy implies its database (PGDATABASE unset or different); a database named in --dsn
    wins; audit recent --json into a closed pipe ends quietly."""
    import json

    with db.admin(autocommit=True) as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'S9')")
    no_db = dsn(db, dbname=None)
    recent = ["audit", "recent", "--dsn", no_db, "--policy", str(policy_file), "--json"]
    for env in (_env_without("PGDATABASE"), {**_env_without(), "PGDATABASE": "postgres"}):
        res = _bare(*recent, env=env)
        assert res.returncode == 0, res.stderr
        assert any(r["table_name"] == "sensor_readings" for r in json.loads(res.stdout))
    # a database named explicitly in --dsn wins: the shipped example (company_db) on this one
    example = str(ROOT / "examples" / "company.toml")
    res = _bare("plan", "--dsn", dsn(db), "--policy", example, env=_env_without())
    assert res.returncode == 0, res.stderr
    assert "Nothing to do" in res.stdout, res.stdout
    assert f"--dsn names database {db.name!r}" in res.stderr
    res = _bare("audit", "recent", "--dsn", dsn(db), "--policy", example, env=_env_without())
    assert res.returncode == 0, res.stderr
    # the rule is in --help
    res = _bare("audit", "--help", env=_env_without())
    assert "the policy's database" in " ".join(res.stdout.split())
    # | head -c 0: the reader is gone
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tsaccess", *recent],
            stdin=subprocess.DEVNULL,
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(w)
    assert proc.returncode == 141, proc.stderr
    assert all(x.startswith("tsaccess: TLS to ") for x in proc.stderr.splitlines()), proc.stderr
