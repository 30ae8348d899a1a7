"""The tsaccess command, run as a user would run it: every subcommand, JSON parsed back, exit
codes for allowed / denied / undecided / mismatch / bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tsaccess.demo import company_policy

POLICY_TEXT = (Path(__file__).parents[2] / "src/tsaccess/data/company.toml").read_text()


def run(*args: str, env: dict | None = None, check_code: int | None = None):
    res = subprocess.run(
        [sys.executable, "-m", "tsaccess", *args],
        stdin=subprocess.DEVNULL,  # never the terminal pytest runs on: apply would ask
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    if check_code is not None:
        assert res.returncode == check_code, (
            res.returncode,
            res.stdout[-2000:],
            res.stderr[-2000:],
        )
    return res


def dsn(db, **over) -> str:
    p = db.params(**over)
    return " ".join(f"{k}={v}" for k, v in p.items() if v is not None)


@pytest.fixture
def policy_file(db, tmp_path) -> Path:
    f = tmp_path / "policy.toml"
    f.write_text(POLICY_TEXT.replace('name = "company_db"', f'name = "{db.name}"'))
    return f


@pytest.fixture
def applied(db, policy_file, tmp_path):
    pwfile = tmp_path / "passwords.pgpass"
    run(
        "apply",
        "--yes",
        "--dsn",
        dsn(db),
        "--policy",
        str(policy_file),
        "--generate-passwords",
        str(pwfile),
        check_code=0,
    )
    passwords = {
        line.split(":")[3]: line.split(":")[4]
        for line in pwfile.read_text().splitlines()
        if not line.startswith("#")
    }
    return pwfile, passwords


def test_plan_apply_verify_roundtrip(db, policy_file, tmp_path):
    res = run("plan", "--dsn", dsn(db), "--policy", str(policy_file), "--json", check_code=0)
    plan = json.loads(res.stdout)
    assert len(plan["steps"]) > 50
    assert plan["catalog_queries"] <= 15  # read_catalog, read_timescale (one query), the check
    # the audit part alone needs the tables and roles: named, exit 1, nothing applied
    res = run("apply", "-y", "--dsn", dsn(db), "--policy", str(policy_file), "--audit-only")
    assert res.returncode == 1
    assert "table public.sensor_readings does not exist; create it first" in res.stderr
    pwfile = tmp_path / "pw"
    res = run(
        "apply",
        "--yes",
        "--dsn",
        dsn(db),
        "--policy",
        str(policy_file),
        "--generate-passwords",
        str(pwfile),
        "--json",
        check_code=0,
    )
    assert json.loads(res.stdout)["applied"] == len(plan["steps"])
    assert pwfile.stat().st_mode & 0o777 == 0o600
    res = run("plan", "--dsn", dsn(db), "--policy", str(policy_file), check_code=0)
    assert "Nothing to do" in res.stdout
    res = run("plan", "--dsn", dsn(db), "--policy", str(policy_file), "--audit-only", "--json")
    assert json.loads(res.stdout)["steps"] == []
    verify = [
        "verify",
        "--dsn",
        dsn(db),
        "--policy",
        str(policy_file),
        "--passwords-file",
        str(pwfile),
    ]
    res = run(*verify, "--json", check_code=0)
    matrix = json.loads(res.stdout)
    assert matrix["ok"] is True
    assert matrix["disagreements"] == 0
    # drift -> exit 3
    with db.admin(autocommit=True) as conn:
        conn.execute("GRANT DELETE ON sensor_readings TO data_analysts")
    res = run(*verify, check_code=3)
    assert "!! alice DELETE on sensor_readings" in res.stdout
    res = run("plan", "--dsn", dsn(db), "--policy", str(policy_file), "--sql", check_code=0)
    assert 'REVOKE DELETE ON TABLE "public"."sensor_readings" FROM "data_analysts"' in res.stdout


def test_check_exit_codes(db, applied):
    """As the administrator, about alice: no password of alice's is needed."""
    base = ["check", "--dsn", dsn(db, dbname=None), "--dbname", db.name, "--user", "alice"]
    res = run(*base, "SELECT * FROM sensor_readings", check_code=0)
    assert res.stdout.startswith("allowed")
    res = run(*base, "SELECT amount FROM financial_metrics", check_code=3)
    assert "SELECT (amount) on table public.financial_metrics" in res.stdout
    res = run(*base, "--json", "LISTEN x", check_code=4)
    assert json.loads(res.stdout)["status"] == "deferred"


def test_audit_subcommands(db, applied):
    _, pw = applied
    with db.connect_as("bob", pw["bob"]) as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')")
        conn.commit()
    with db.connect_as("david", pw["david"]) as conn:
        conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'tax')")
        conn.commit()
    eve = dsn(db, user="eve", password=pw["eve"])
    res = run(
        "audit", "changes", "--dsn", eve, "--json", "--table", "financial_metrics", check_code=0
    )
    # eve may not read financial_metrics: the change, none of its values
    assert [(r["username"], r["new_data"]) for r in json.loads(res.stdout)] == [("david", {})]
    res = run("audit", "changes", "--dsn", eve, "--table", "sensor_readings", check_code=0)
    assert "tax" not in res.stdout
    for what in ("recent", "summary", "activity", "sessions", "roles"):
        res = run(
            "audit", what, "--dsn", eve, "--json", "--since", "1h", "--limit", "5", check_code=0
        )
        rows = json.loads(res.stdout)
        assert isinstance(rows, list)
        if what == "summary":
            assert rows[0]["username"] == "bob"
        if what == "recent":
            assert {r["username"] for r in rows} == {"bob", "david"}
    res = run("audit", "summary", "--dsn", eve, check_code=0)
    assert "sensor_readings" in res.stdout
    res = run("audit", "recent", "--dsn", dsn(db, user="alice", password=pw["alice"]), check_code=1)
    assert "permission denied for table activity_audit" in res.stderr


def test_render_init_and_certs(tmp_path, policy_file):
    res = run(
        "render-init",
        "--policy",
        str(policy_file),
        "--out",
        str(tmp_path / "init"),
        "--json",
        check_code=0,
    )
    assert len(json.loads(res.stdout)) == 4
    res = run(
        "certs",
        "--out",
        str(tmp_path / "ssl"),
        "--host",
        "db.example.com",
        "--host",
        "10.0.0.5",
        "--json",
        check_code=0,
    )
    paths = json.loads(res.stdout)
    assert Path(paths["server_key"]).stat().st_mode & 0o777 == 0o600
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(paths["server_cert"]).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "db.example.com" in san.get_values_for_type(x509.DNSName)


def test_bad_input_gives_one_clear_line_and_nonzero_exit(db, policy_file, tmp_path):
    cases = [
        (
            ["plan", "--dsn", "host='unterminated", "--policy", str(policy_file)],
            1,
            "could not be parsed",
        ),
        (
            ["plan", "--dsn", dsn(db), "--policy", str(tmp_path / "missing.toml")],
            1,
            "does not exist",
        ),
        (
            ["plan", "--dsn", dsn(db, sslmode="prefer"), "--policy", str(policy_file)],
            1,
            "sslmode='prefer'",
        ),
        (["plan", "--dsn", dsn(db, port=1), "--policy", str(policy_file)], 1, "connection"),
    ]
    loose = tmp_path / "loose.pgpass"
    loose.write_text("*:*:*:alice:pw\n")
    loose.chmod(0o644)
    verify = ["verify", "--dsn", dsn(db), "--policy", str(policy_file), "--passwords-file"]
    cases.append(([*verify, str(loose)], 1, "chmod 600"))
    cases.append(([*verify, str(tmp_path / "nope")], 1, "does not exist"))
    bad_policy = tmp_path / "bad.toml"
    bad_policy.write_text(
        POLICY_TEXT.replace('roles = ["data_analysts"]', 'roles = ["data_analyst"]')
    )
    cases.append(
        (
            ["plan", "--dsn", dsn(db), "--policy", str(bad_policy)],
            1,
            "[users.alice.roles]: unknown role 'data_analyst'",
        )
    )
    for args, code, text in cases:
        res = run(*args)
        assert res.returncode == code, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert text in lines[0]
        assert lines[0].startswith("tsaccess: error:")
        assert db.info.password not in res.stderr
    res = run("plan")  # usage
    assert res.returncode == 2


def test_demo_json_exits_zero(pg_server):
    res = run("demo", "--json", check_code=0)
    out = json.loads(res.stdout)
    assert out["ok"] is True
    # the demo's own server comes from the same installation as the tests' server
    assert out["timescaledb"] is pg_server.timescaledb
    if pg_server.timescaledb:
        chunks = {h["hypertable"]: h["chunks"] for h in out["hypertables"]}
        assert chunks["public.sensor_readings"] >= 2
        assert {"public.financial_metrics", "public.activity_audit"} <= set(chunks)
        landed = [c for c in out["checks"] if "several chunks" in c["name"]]
        assert len(landed) == 1 and landed[0]["ok"], landed
    assert out["matrix"]["disagreements"] == 0
    assert {"bob", "david"} <= {r["username"] for r in out["audit"] if r["operation"] == "INSERT"}
    assert all(t["ssl"] for t in out["matrix"]["tls"].values())
    # the printed connection commands name the database the demo made: admin and each user
    assert len(out["connect"]) == len(company_policy().users) + 1
    assert all(f"dbname={company_policy().database} " in line for line in out["connect"])


def test_demo_keep_leaves_a_server_the_printed_commands_reach(tmp_path):
    import re
    import shlex
    import shutil

    from tsaccess.ephemeral import find_installation
    from tsaccess.ephemeral.local import stop_node, unprivileged_user

    res = run("demo", "--keep", check_code=0)
    assert "Server kept running" in res.stdout
    pwfile = Path(re.search(r"Passwords: (\S+)", res.stdout).group(1))
    workdir = pwfile.parent
    try:
        # the report alone: no library log line on stdout or stderr (only with --log-level)
        assert "preflight denied" not in res.stdout + res.stderr
        assert "[warning" not in res.stdout + res.stderr and "[info" not in res.stdout + res.stderr
        # the auditor's view says which columns are hidden and why
        assert "hidden from eve: time, metric_type, amount, currency, department" in res.stdout
        assert "she may not SELECT them in financial_metrics" in res.stdout
        psql = shutil.which("psql") or str(find_installation().bindir / "psql")
        for who, expect in (("carol", "carol|t"), ("admin", "postgres|t")):
            line = next(x for x in res.stdout.splitlines() if x.strip().startswith(f"{who}  psql"))
            conninfo = shlex.split(line)[2]  # who psql "<conninfo>"
            got = subprocess.run(
                [
                    psql,
                    "-X",
                    "-A",
                    "-t",
                    "-c",
                    "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    conninfo,
                ],
                env={**os.environ, "PGPASSFILE": str(pwfile)},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert got.returncode == 0, got.stderr
            assert got.stdout.strip() == expect
        # the docs, followed against the kept server as its administrator
        exports = next(x for x in res.stdout.splitlines() if x.strip().startswith("export "))
        env = dict(kv.split("=", 1) for kv in shlex.split(exports)[1:])
        example = str(Path(__file__).parents[2] / "examples/company.toml")
        got = run("audit", "recent", "--policy", example, env=env, check_code=0)
        assert "sensor_readings" in got.stdout
        got = run("apply", "--yes", "--policy", example, env=env, check_code=0)
        assert "applied 0 statement(s)" in got.stdout or "Nothing to do" in got.stdout
    finally:  # the kept server is ours to clean up
        stop_node(find_installation().bindir, workdir / "data", unprivileged_user(), workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    assert not workdir.exists()


def test_certs_refuse_to_replace_an_existing_ca(tmp_path):
    out = tmp_path / "ssl"
    run("certs", "--out", str(out), check_code=0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = run("certs", "--out", str(out), check_code=1)
    assert "already has ca.crt, ca.key, server.crt, server.key" in res.stderr
    assert "--replace" in res.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    (out / "server.crt").unlink()  # even one file left is refused
    res = run("certs", "--out", str(out), check_code=1)
    assert "already has ca.crt, ca.key, server.key" in res.stderr
    run("certs", "--out", str(out), "--replace", check_code=0)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after["ca.crt"] != before["ca.crt"]
    assert (out / "ca.key").stat().st_mode & 0o777 == 0o600
