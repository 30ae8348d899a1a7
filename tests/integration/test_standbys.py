"""Beyond one server (issue 15): standby-aware connections, apply once / enforced everywhere,
verify on a standby, many databases. One throwaway primary + 2 streaming standbys + PgBouncer
for the module; the company policy applied to its own database.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from structlog.testing import capture_logs

import tsaccess
from tsaccess import audit
from tsaccess.client.params import without_login
from tsaccess.demo import company_policy
from tsaccess.ephemeral import ClusterInfo
from tsaccess.passwords import Secret, resolve_passwords
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import Policy, password_env_var
from tsaccess.verify import verify

POLICY_TEXT = (Path(__file__).parents[2] / "src/tsaccess/data/company.toml").read_text()
ANALYSTS_GRANT = 'description = "Read sensor data"\ngrants = { sensor_readings = ["SELECT"] }'


@dataclass
class Site:
    cluster: ClusterInfo
    policy: Policy
    passwords: dict[str, Secret]

    def user(self, user: str, attrs: str = "prefer-standby", **kw: Any) -> dict[str, Any]:
        """A user's parameters over the whole host list."""
        return self.cluster.multi_host_params(
            user=user,
            password=self.passwords[user].reveal(),
            dbname=self.policy.database,
            target_session_attrs=attrs,
            **kw,
        )

    def env(self) -> dict[str, str]:
        return {password_env_var(u): pw.reveal() for u, pw in self.passwords.items()}


def _create_db(cluster: ClusterInfo, name: str) -> None:
    with tsaccess.connect(**cluster.primary.params(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _apply_company(cluster: ClusterInfo, name: str, passwords: dict[str, Secret]) -> Policy:
    _create_db(cluster, name)
    policy = company_policy().with_database(name)
    with tsaccess.connect(**cluster.primary.params(dbname=name)) as conn:
        res = apply(conn, policy, passwords=passwords, wait_replicas=30)
    assert {s.name for s in res.replicas} == set(cluster.standby_names)
    return policy


@pytest.fixture(scope="module")
def site(cluster: ClusterInfo) -> Site:
    policy = company_policy()
    passwords = resolve_passwords([u.name for u in policy.users], generate=True, environ={})
    return Site(cluster, _apply_company(cluster, "company_db", passwords), passwords)


def _dsn(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsaccess", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def _on_standby(cluster: ClusterInfo, conn: psycopg.Connection[Any]) -> str:
    node = cluster.node_of_port(int(conn.info.port))
    assert node in cluster.standby_names, node
    return node


# --- standby-aware connections ------------------------------------------------------------


def test_analyst_pool_prefer_standby_reads_on_a_standby_with_preflight(site: Site) -> None:
    with tsaccess.create_pool(
        **site.user("alice"), role="data_analysts", preflight=True, min_size=2, max_size=2
    ) as pool:
        for _ in range(4):
            with pool.connection() as conn:
                _on_standby(site.cluster, conn)
                assert tsaccess.tls_status(conn).ssl
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
                (n,) = conn.execute("SELECT count(*) FROM sensor_readings").fetchone() or (-1,)
                assert n >= 0
                with pytest.raises(tsaccess.PreflightDenied, match="financial_metrics"):
                    conn.execute("SELECT amount FROM financial_metrics")
                # the snapshot was taken on this standby's own catalog
                assert conn.preflight.check("SELECT * FROM sensor_readings").status == "allowed"
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_each_standby_preflights_with_its_own_grants(site: Site) -> None:
    """A grant standby2 has not replayed yet: pre-flight allows the read on standby1 and denies
    it on standby2, because each snapshot is taken on the server the connection is on."""
    cluster, table = site.cluster, f"per_server_{secrets.token_hex(3)}"
    ident = sql.Identifier(table)
    primary = cluster.primary.params(dbname="company_db")
    with tsaccess.connect(**primary, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE TABLE {} (x int)").format(ident))
    cluster.wait_replayed(timeout=30)
    paused, live = cluster.standbys[1], cluster.standbys[0]
    with tsaccess.connect(**paused.params(), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        with tsaccess.connect(**primary, autocommit=True) as admin:
            admin.execute(sql.SQL("GRANT SELECT ON {} TO data_analysts").format(ident))
        only_live = dataclasses.replace(cluster, standbys=(live,), standby_names=("standby1",))
        only_live.wait_replayed(timeout=30)
        query = sql.SQL("SELECT count(*) FROM {}").format(ident)
        with tsaccess.connect(
            **live.params(**_login(site, "alice"), dbname="company_db"), preflight=True
        ) as conn:
            assert conn.execute(query).fetchone() == (0,)
        with tsaccess.connect(
            **paused.params(**_login(site, "alice"), dbname="company_db"), preflight=True
        ) as conn:
            with capture_logs() as logs, pytest.raises(tsaccess.PreflightDenied, match=table):
                conn.execute(query)
        # a standby alone in its host list: the refusal is raised, its record's loss is loud
        lost = [e for e in logs if e["event"] == "denied event not recorded"]
        assert len(lost) == 1 and "no primary reachable" in lost[0]["why"]
    finally:
        with tsaccess.connect(**paused.params(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
        with tsaccess.connect(**primary, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP TABLE {}").format(ident))
        cluster.wait_replayed(timeout=30)


@pytest.mark.parametrize("preflight", [True, False])
def test_refused_statement_on_a_standby_leaves_a_denied_row_on_the_primary(
    site: Site, preflight: bool
) -> None:
    request_id = secrets.token_hex(6)
    with tsaccess.connect(**site.user("alice"), preflight=preflight) as conn:
        _on_standby(site.cluster, conn)
        audit.set_actor(conn, "web:alice@example.org", request_id)
        if preflight:
            conn.on_denied = lambda stmt, verdict: audit.record_denied(
                conn, stmt, str(verdict), table_name="financial_metrics"
            )
            with pytest.raises(tsaccess.PreflightDenied):
                conn.execute("SELECT amount FROM financial_metrics")
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT amount FROM financial_metrics")
            # the standby session's transaction is aborted: the event still gets out
            assert audit.record_denied(
                conn,
                "SELECT amount FROM financial_metrics",
                "42501",
                table_name="financial_metrics",
            )
            conn.rollback()
    with tsaccess.connect(**site.cluster.primary.params(dbname="company_db")) as admin:
        rows = admin.execute(
            "SELECT username, operation, table_name, actor, client_asserted"
            " FROM activity_audit WHERE request_id = %s",
            (request_id,),
        ).fetchall()
    assert rows == [("alice", "DENIED", "financial_metrics", "web:alice@example.org", True)]


def test_a_pooled_connection_forgets_the_actor_its_side_events_carry(site: Site) -> None:
    with tsaccess.create_pool(**site.user("alice"), min_size=1, max_size=1) as pool:
        with pool.connection() as conn:
            audit.set_actor(conn, "first-borrower", "req-first")
            assert conn.actor == "first-borrower"
        with pool.connection() as conn:
            assert (conn.actor, conn.request_id) == (None, None)
            (actor,) = conn.execute(
                "SELECT current_setting('tsaccess.actor', true)"
            ).fetchone() or ("?",)
            assert not actor


@pytest.mark.parametrize("hosts", ["one standby", "both standbys"])
def test_denied_event_without_a_reachable_primary_says_so(site: Site, hosts: str) -> None:
    nodes = site.cluster.standbys[:1] if hosts == "one standby" else site.cluster.standbys
    params = site.cluster.multi_host_params(
        nodes=nodes,
        user="alice",
        password=site.passwords["alice"].reveal(),
        dbname="company_db",
    )
    with tsaccess.connect(**params) as conn:
        _on_standby(site.cluster, conn)
        with pytest.raises(tsaccess.NoPrimaryError, match="no primary reachable") as err:
            audit.record_denied(conn, "SELECT amount FROM financial_metrics", "42501")
    ports = [str(n.port) for n in nodes]
    assert all(p in str(err.value) for p in ports)
    assert site.passwords["alice"].reveal() not in str(err.value)


def test_host_list_with_a_unix_socket_is_refused_before_connecting(site: Site) -> None:
    assert site.cluster.primary.workdir is not None
    params = site.user("alice")
    params["host"] = params["host"].replace("127.0.0.1", str(site.cluster.primary.workdir), 1)
    with pytest.raises(tsaccess.InsecureConnectionError, match="Unix-domain socket"):
        tsaccess.connect(**params)
    with pytest.raises(tsaccess.InsecureConnectionError, match="Unix-domain socket"):
        tsaccess.create_pool(**params, open=False)
    params = site.user("alice")
    params["host"] = "127.0.0.1,,127.0.0.1"
    with pytest.raises(tsaccess.InsecureConnectionError, match=r"empty host entry"):
        tsaccess.connect(**params)
    with pytest.raises(tsaccess.InsecureConnectionError):  # sslmode applies to every host
        tsaccess.connect(**site.user("alice", sslmode="prefer"))
    with pytest.raises(tsaccess.TsaccessError, match="target_session_attrs"):
        tsaccess.connect(**site.user("alice", attrs="standby-please"))


# --- apply once, enforced everywhere ------------------------------------------------------


def test_plan_and_apply_on_a_standby_name_what_to_connect_to(site: Site, tmp_path: Path) -> None:
    standby = site.cluster.standbys[0]
    with tsaccess.connect(**standby.params(dbname="company_db")) as conn:
        with pytest.raises(tsaccess.StandbyError, match="target_session_attrs=read-write"):
            plan(conn, site.policy)
        with pytest.raises(tsaccess.StandbyError, match=f"hot standby .*{standby.port}"):
            apply(conn, site.policy)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY_TEXT)
    for cmd in ("plan", "apply"):
        res = _cli(
            cmd,
            *(["--yes"] if cmd == "apply" else []),
            "--dsn",
            _dsn(standby.params(dbname="company_db")),
            "--policy",
            str(policy_file),
        )
        assert res.returncode == 1, res.stderr
        assert "needs the primary" in res.stderr and "read-write" in res.stderr
        assert "Traceback" not in res.stderr


def test_apply_wait_replicas_returns_after_both_standbys_enforce_a_revoke(
    site: Site, tmp_path: Path
) -> None:
    db = "revoke_db"
    _apply_company(site.cluster, db, site.passwords)
    for standby in site.cluster.standbys:  # alice reads sensor_readings on each standby
        with tsaccess.connect(**standby.params(**_login(site, "alice"), dbname=db)) as conn:
            conn.execute("SELECT 1 FROM sensor_readings LIMIT 1")
    policy_file = tmp_path / "policy.toml"
    text = POLICY_TEXT.replace('name = "company_db"', f'name = "{db}"')
    assert ANALYSTS_GRANT in text
    policy_file.write_text(text.replace(ANALYSTS_GRANT, 'description = "Read nothing yet"'))
    primary = site.cluster.multi_host_params(dbname=db, target_session_attrs="read-write")
    res = _cli(
        "apply",
        "--yes",
        "--dsn",
        _dsn(primary),
        "--policy",
        str(policy_file),
        "--wait-replicas=30",
        "--json",
        env=site.env(),
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert any("revoke" in s.lower() and "sensor_readings" in s for s in out["steps"]), out
    assert sorted(out["standbys"]) == sorted(site.cluster.standby_names)
    # right after it returned: the REVOKE is enforced on each standby
    for standby in site.cluster.standbys:
        with tsaccess.connect(**standby.params(**_login(site, "alice"), dbname=db)) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT 1 FROM sensor_readings LIMIT 1")


def _login(site: Site, user: str) -> dict[str, str]:
    return {"user": user, "password": site.passwords[user].reveal()}


def test_wait_replicas_fails_naming_the_laggard(site: Site, tmp_path: Path) -> None:
    db = "lag_db"
    policy = _apply_company(site.cluster, db, site.passwords)
    laggard = site.cluster.standbys[1]
    with tsaccess.connect(**laggard.params(), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        analysts = dataclasses.replace(policy.roles[0], grants=())  # data_analysts: no grants
        changed = dataclasses.replace(policy, roles=(analysts, *policy.roles[1:]))
        with tsaccess.connect(**site.cluster.primary.params(dbname=db)) as conn:
            with pytest.raises(tsaccess.ReplicaLagError, match="standby2") as err:
                # standby1 replays freely: 5 s is ample even on a loaded 2-core machine (a CI
                # run saw it miss 1 s); standby2 is paused and must be named
                apply(conn, changed, passwords=site.passwords, wait_replicas=5.0)
        assert err.value.laggards == ("standby2",)
        assert "IS committed on the primary" in str(err.value)
        assert "standby1" not in str(err.value)
        # the CLI: exit 1, one line naming the laggard (the original policy, applied back)
        policy_file = tmp_path / "policy.toml"
        policy_file.write_text(POLICY_TEXT.replace('name = "company_db"', f'name = "{db}"'))
        dsn = _dsn(site.cluster.primary.params(dbname=db))
        res = _cli(
            "apply",
            "--yes",
            "--dsn",
            dsn,
            "--policy",
            str(policy_file),
            "--wait-replicas=3",
            env=site.env(),
        )
        assert res.returncode == 1, res.stdout + res.stderr
        assert "\ntsaccess: error: 1 of 2 standby(s)" in "\n" + res.stderr, res.stderr
        assert "standby2" in res.stderr and "Traceback" not in res.stderr
    finally:
        with tsaccess.connect(**laggard.params(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    site.cluster.wait_replayed(timeout=30)


def test_verify_runs_the_read_side_on_a_standby(site: Site, tmp_path: Path) -> None:
    admin_params = site.cluster.multi_host_params(
        dbname="company_db", target_session_attrs="prefer-standby"
    )
    with tsaccess.connect(**admin_params) as admin:
        _on_standby(site.cluster, admin)
        matrix = verify(admin, site.policy, site.passwords, **without_login(admin_params))
    assert matrix.read_only and matrix.ok, matrix.to_text()
    privileges = {c.privilege for c in matrix.cells}
    assert privileges == {"SELECT", "CONNECT"}
    alice = matrix.cell("alice", "financial_metrics", "SELECT")
    assert (alice.expected, alice.catalog, alice.actual) == (False, False, False)
    assert matrix.cell("carol", "financial_metrics", "SELECT").actual is True
    assert "read side only" in matrix.to_text()
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY_TEXT)
    res = _cli("verify", "--dsn", _dsn(admin_params), "--policy", str(policy_file), env=site.env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "read side only" in res.stdout


# --- many databases -----------------------------------------------------------------------


def test_one_policy_applied_to_three_databases_reports_each(site: Site, tmp_path: Path) -> None:
    names = ["multi_a", "multi_b", "multi_c"]
    for name in names:
        _create_db(site.cluster, name)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY_TEXT)
    dsns = [_dsn(site.cluster.primary.params(dbname=n)) for n in names]
    args = [a for d in dsns for a in ("--dsn", d)]
    res = _cli("apply", "--yes", *args, "--policy", str(policy_file), "--json", env=site.env())
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] is True
    assert [t["database"] for t in report["targets"]] == names
    assert all(len(t["steps"]) > 5 and t["error"] is None for t in report["targets"])
    assert site.cluster.primary.password not in res.stdout + res.stderr
    for name in names:  # each in its own transaction, each brought to the policy
        with tsaccess.connect(**site.cluster.primary.params(dbname=name)) as conn:
            assert not plan(conn, site.policy.with_database(name))

    targets = tmp_path / "targets.toml"
    targets.write_text(
        "".join(
            f'[[targets]]\nname = "site-{n}"\ndsn = "{d}"\n\n'
            for n, d in zip(names, dsns, strict=True)
        )
        + '[[targets]]\nname = "missing"\ndsn = "'
        + _dsn(site.cluster.primary.params(dbname="no_such_db"))
        + '"\n'
    )
    res = _cli("verify", "--targets", str(targets), "--policy", str(policy_file), env=site.env())
    assert res.returncode == 1, res.stdout + res.stderr  # one target failed
    lines = res.stdout.splitlines()
    for n in names:
        assert any(f"[site-{n}] database {n}: " in ln and "0 disagreement(s)" in ln for ln in lines)
    assert any(ln.startswith("[missing]") and "FAILED" in ln and "no_such_db" in ln for ln in lines)
    assert "4 target(s), 1 failed" in res.stdout

    res = _cli("plan", "--targets", str(targets), "--policy", str(policy_file), "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 1
    assert [t["ok"] for t in report["targets"]] == [True, True, True, False]
    assert [t["steps"] for t in report["targets"][:3]] == [[], [], []]


def test_the_audit_chain_sealed_on_the_primary_is_proved_on_a_standby(
    site: Site, tmp_path: Path
) -> None:
    """prove only reads: an auditor can run it on a standby (same database identity)."""
    pair = audit.keygen(tmp_path / "key")
    with tsaccess.connect(**site.cluster.primary.params(dbname="company_db")) as conn:
        sealed = audit.seal(conn, site.policy, key=pair.private, out=tmp_path / "cps")
    site.cluster.wait_replayed()
    for standby in site.cluster.standbys:
        with tsaccess.connect(**standby.params(dbname="company_db")) as conn:
            proof = audit.prove(
                conn, site.policy, checkpoints=tmp_path / "cps", public_key=pair.public
            )
        assert proof.intact and proof.position == sealed.checkpoint.position, proof.to_text()
