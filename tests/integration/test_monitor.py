"""``tsaccess monitor`` on a real server with the company policy applied: the exporter's metrics
as a SecOps team would read them, each one provoked by hand (a grant outside the policy, a
refused statement, failed logins, chunks dropped by an owner, a privileged role, an unverified
client, a tampered audit row), the exporter's role proven unable to read data tables, and a
collection that never blocks a writer."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

import tsaccess
from tests.fix_server import fresh_db
from tests.helpers import Company, quiesce_jobs
from tsaccess.ephemeral.base import free_port
from tsaccess.monitor import Monitor, MonitorOptions
from tsaccess.plan.compose import _LOCK_KEY, apply
from tsaccess.policy import Retention
from tsaccess.verify import verify

pytestmark = pytest.mark.timescaledb

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def reading(monitor: Monitor) -> Samples:
    r = monitor.collect()
    assert r.up, r.error
    return {
        (m.sample_name, frozenset(zip(m.labels, lbl, strict=True))): v for m, lbl, v in r.samples()
    }


def wait_for(probe: Callable[[], Samples], check: Callable[[Samples], bool], what: str) -> Samples:
    """Probe until ``check`` holds (the exporter collects on its own interval)."""
    deadline = time.monotonic() + 30
    while True:
        got = probe()
        if check(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {sorted(got.items())[:60]}")
        time.sleep(0.2)


@contextmanager
def exporter_process(monitored: Any, *extra: str) -> Iterator[str]:
    """``tsaccess monitor`` (the CLI) as the monitoring user; yields its /metrics URL."""
    port = free_port()
    env = {
        **os.environ,
        "TSACCESS_PASSWORD_MONITOR": monitored.company.passwords["monitor"].reveal(),
    }
    cmd = [
        sys.executable,
        "-m",
        "tsaccess",
        "monitor",
        "--dsn",
        monitored.dsn(),
        "--policy",
        str(ROOT / "examples" / "company.toml"),
        "--listen",
        f"127.0.0.1:{port}",
        "--interval",
        "300ms",
        *extra,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"tsaccess monitor exited {proc.returncode}: {proc.stderr.read()}"
                )
            try:
                if "tsaccess_up" in fetch(url):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("tsaccess monitor did not serve /metrics in 30 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def fetch(url: str) -> str:
    """GET an http:// URL this test made (loopback)."""
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - http://127.0.0.1 only
        return str(r.read().decode())


def scrape(url: str) -> Samples:
    return parse(fetch(url))


def test_exporter_serves_drift_denied_and_back(monitored):
    """The issue's "done when": /metrics with the metrics; a grant by hand is drift, apply
    undoes it; alice's pre-flight refusal raises her DENIED counter."""
    with exporter_process(monitored, "--server-log", str(monitored.log_dir)) as url:
        first = scrape(url)
        assert value(first, "tsaccess_up") == 1
        for part in ("drift", "roles", "sessions", "audit", "chunks", "chain", "server_log"):
            assert value(first, "tsaccess_collect_ok", part=part) == 1, part
        assert total(first, "tsaccess_policy_drift_steps") == 0
        assert value(first, "tsaccess_policy_drift_unchecked", part="passwords") == 1
        names = {n for n, _ in first}
        for name in (
            "tsaccess_privileged_roles",
            "tsaccess_sessions",
            "tsaccess_audit_rows_total",
            "tsaccess_table_writes_total",
            "tsaccess_audit_chain_ok",
            "tsaccess_audit_unsealed_seconds",
        ):
            assert name in names, name
        # the exporter's own session: TLS, as the monitoring user
        assert (
            value(first, "tsaccess_sessions", user="monitor", tls="true", verified="unknown") >= 1
        )

        with monitored.admin(autocommit=True) as admin:
            admin.execute("GRANT SELECT ON financial_metrics TO alice")
        drifted = wait_for(
            lambda: scrape(url),
            lambda s: total(s, "tsaccess_policy_drift_steps") > 0,
            "drift after a grant by hand",
        )
        assert value(drifted, "tsaccess_policy_drift_steps", phase="security", action="revoke") == 1
        with monitored.admin() as admin:
            apply(admin, monitored.policy)
        wait_for(
            lambda: scrape(url),
            lambda s: total(s, "tsaccess_policy_drift_steps") == 0,
            "no drift after apply",
        )

        before = value(scrape(url), "tsaccess_denied_total", user="alice")
        with monitored.company.connect("alice", preflight=True) as alice:
            with pytest.raises(tsaccess.PreflightDenied):
                alice.execute("SELECT amount FROM financial_metrics")
        wait_for(
            lambda: scrape(url),
            lambda s: value(s, "tsaccess_denied_total", user="alice") == before + 1,
            "alice's DENIED counter",
        )


def test_denied_counts_survive_a_restart_and_the_rate_bound_shows(monitored):
    with monitored.monitor() as m:
        base = reading(m)
    with monitored.company.connect("bob", autocommit=True) as bob:
        # 30 refusals in one statement: more than 10 land in one second, the rest is one row
        bob.execute(
            "SELECT tsaccess_audit_denied('SELECT 1', 'test refusal', 'sensor_readings')"
            " FROM generate_series(1, 30)"
        )
    with monitored.admin() as admin:
        rows = admin.execute(
            "SELECT count(*), count(*) FILTER (WHERE description LIKE 'more than 10 DENIED%')"
            " FROM activity_audit WHERE operation = 'DENIED' AND username = 'bob'"
        ).fetchone()
    with monitored.monitor() as m:  # a new exporter: counts from the trail, not from memory
        after = reading(m)
    assert value(after, "tsaccess_denied_total", user="bob") == rows[0]
    assert rows[0] - value(base, "tsaccess_denied_total", user="bob") >= 11
    assert value(after, "tsaccess_denied_unrecorded_seconds_total", user="bob") == rows[1] >= 1
    assert value(after, "tsaccess_audit_rows_total", table="", operation="DENIED") >= rows[0]


def test_failed_logins_are_read_from_the_jsonlog(monitored):
    with monitored.monitor(server_log=str(monitored.log_dir)) as m:
        base = reading(m)
        for user, times in (("alice", 3), ("nobody_such_role", 2)):
            for _ in range(times):
                params = monitored.company.db.params(user=user, password="wrong password")
                with pytest.raises(psycopg.OperationalError):
                    tsaccess.connect(**params)

        def counted(s: Samples) -> bool:
            return (
                value(s, "tsaccess_failed_logins_total", user="alice")
                == value(base, "tsaccess_failed_logins_total", user="alice") + 3
                and value(s, "tsaccess_failed_logins_total", user="_unknown")
                == value(base, "tsaccess_failed_logins_total", user="_unknown") + 2
            )

        got = wait_for(lambda: reading(m), counted, "failed logins in the jsonlog")
    # the names of no role are one label, never the name tried
    assert not any(
        dict(lbl).get("user") == "nobody_such_role" for n, lbl in got if n.startswith("tsaccess_")
    )
    # the same through the database (pg_read_binary_file: here the superuser may)
    with Monitor(monitored.admin, monitored.policy, MonitorOptions(server_log="postgres")) as m:
        via_server = reading(m)
    assert value(via_server, "tsaccess_failed_logins_total", user="alice") == value(
        got, "tsaccess_failed_logins_total", user="alice"
    )


def test_chunks_dropped_by_an_owner_are_seen(monitored, tmp_path):
    state = tmp_path / "chunks.json"
    with monitored.admin(autocommit=True) as admin:
        admin.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature)"
            " VALUES (now() - interval '300 days', 's-old', 1), (now() - interval '200 days',"
            " 's-old', 2), (now(), 's-new', 3)"
        )
    with monitored.monitor(state_file=state) as m:
        base = reading(m)
        with monitored.admin(autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(*) FROM drop_chunks('sensor_readings',"
                " older_than => now() - interval '250 days')"
            ).fetchone()[0]
        assert dropped == 1
        after = reading(m)
    key = {"table": "sensor_readings", "recorded": "false"}
    name = "tsaccess_hypertable_chunks_dropped_outside_retention_total"
    assert value(after, name, **key) == value(base, name, **key) + 1
    assert (
        value(
            after, "tsaccess_hypertable_chunks_dropped_by_retention_total", table="sensor_readings"
        )
        == 0
    )
    # a drop while no exporter runs: the next one finds it through the state file
    with monitored.admin(autocommit=True) as admin:
        admin.execute(
            "SELECT drop_chunks('sensor_readings', older_than => now() - interval '100 days')"
        )
    with monitored.monitor(state_file=state) as m:
        restarted = reading(m)
    assert value(restarted, name, **key) == value(base, name, **key) + 2


def test_a_collection_never_blocks_a_writer(monitored):
    """Writers with a short lock_timeout while collections run in a loop; the collector holds
    no lock but AccessShareLock and no advisory lock, and goes on while apply's lock is held."""
    stop = threading.Event()
    errors: list[BaseException] = []
    modes: set[tuple[str, str]] = set()
    with monitored.monitor() as m:
        reading(m)
        pid = m._conn.info.backend_pid

        def loop() -> None:
            try:
                while not stop.is_set():
                    m.collect()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        worker = threading.Thread(target=loop)
        worker.start()
        try:
            with (
                monitored.company.connect("bob", autocommit=True) as bob,
                monitored.admin(autocommit=True) as admin,
            ):
                bob.execute("SET lock_timeout = '200ms'")
                for i in range(60):
                    bob.execute(
                        "INSERT INTO sensor_readings (time, sensor_id, temperature)"
                        " VALUES (now(), %s, 20)",
                        (f"w{i}",),
                    )
                    bob.execute(
                        "UPDATE sensor_readings SET humidity = %s WHERE sensor_id = %s",
                        (i, f"w{i}"),
                    )
                    modes |= {
                        (str(r[0]), str(r[1]))
                        for r in admin.execute(
                            "SELECT locktype, mode FROM pg_locks WHERE pid = %s AND granted", (pid,)
                        )
                    }
        finally:
            stop.set()
            worker.join(timeout=60)
        assert not errors, errors
        assert {mode for kind, mode in modes if kind == "relation"} <= {"AccessShareLock"}, modes
        assert not {kind for kind, _ in modes if kind == "advisory"}, modes
        # an apply in progress (its advisory lock held) does not hold a collection up
        with monitored.admin() as admin:
            admin.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            t0 = time.monotonic()
            assert m.collect().parts["drift"]
            assert time.monotonic() - t0 < 20
            admin.rollback()


def test_privileged_roles_outside_the_policy(monitored):
    with monitored.admin(autocommit=True) as admin:
        admin.execute("CREATE ROLE sneaky_admin CREATEROLE")
    try:
        with monitored.monitor() as m:
            got = reading(m)
        assert (
            value(got, "tsaccess_privileged_role", role="sneaky_admin", attribute="createrole") == 1
        )
        assert value(got, "tsaccess_privileged_roles", attribute="createrole") >= 1
        with monitored.monitor(expect_privileged=frozenset({"sneaky_admin"})) as m:
            expected = reading(m)
        assert (
            value(expected, "tsaccess_privileged_role", role="sneaky_admin", attribute="createrole")
            == 0
        )
        assert (
            value(expected, "tsaccess_privileged_roles", attribute="createrole")
            == value(got, "tsaccess_privileged_roles", attribute="createrole") - 1
        )
        # the bootstrap superuser (the test server's admin) is every cluster's: never counted
        assert not any(dict(lbl).get("role") == monitored.server.user for _, lbl in got)
    finally:
        with monitored.admin(autocommit=True) as admin:
            admin.execute("DROP ROLE sneaky_admin")


def test_sessions_show_tls_and_a_client_that_did_not_verify(monitored):
    params = monitored.company.params("alice")
    params.update(sslmode="require", sslrootcert=str(Path(monitored.server.workdir) / "none.crt"))
    with pytest.warns(tsaccess.UnverifiedServerWarning):
        unverified = tsaccess.connect(**params)
    with unverified, monitored.company.connect("carol"), monitored.monitor() as m:
        got = reading(m)
    assert value(got, "tsaccess_sessions", user="alice", tls="true", verified="false") == 1
    assert value(got, "tsaccess_sessions", user="carol", tls="true", verified="unknown") == 1


def test_the_monitoring_user_reads_no_data_table(monitored):
    """The access matrix, with the exporter's login in it: the audit trail only."""
    company = monitored.company
    with monitored.admin() as admin:
        matrix = verify(admin, company.policy, company.passwords, **company.user_params())
    assert matrix.ok, matrix.to_text()
    cells = [c for c in matrix.cells if c.user == "monitor"]
    assert cells
    tables = [c for c in cells if c.object in ("sensor_readings", "financial_metrics")]
    chunks = [c for c in cells if "(chunk of " in c.object]
    assert len(tables) == 2 * 5 and chunks, "every privilege on both tables, and chunks"
    assert all(c.actual is False and not c.expected for c in tables + chunks), tables + chunks
    assert matrix.cell("monitor", "activity_audit", "SELECT").actual is True
    # and the CLI refuses to run the exporter as a login that may read data
    env = {**os.environ, "TSACCESS_PASSWORD_POSTGRES": monitored.server.password}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tsaccess",
            "monitor",
            "once",
            "--dsn",
            monitored.dsn(monitored.server.user),
            "--policy",
            str(ROOT / "examples" / "company.toml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 1, res.stderr
    assert "may read data table" in res.stderr and "monitoring" in res.stderr


def test_the_audit_chain_per_scrape(monitored, monitor_server, monitor_template):
    """A database of its own (the tampering must not leak into the other tests), with the same
    roles and passwords as the module's (roles are the cluster's)."""
    with fresh_db(monitor_server, monitor_template, "chain") as db:
        policy = monitored.policy.with_database(db.name)
        with db.admin() as admin:
            apply(admin, policy, passwords=monitored.company.passwords)
        company = Company(policy, monitored.company.passwords, db)
        mon = lambda: company.connect("monitor")  # noqa: E731
        with company.connect("bob", autocommit=True) as bob:
            bob.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'a')")
        with Monitor(mon, company.policy, MonitorOptions(chain_every=1)) as m:
            unsealed = reading(m)
            assert value(unsealed, "tsaccess_audit_chain_blocks") == 0
            assert value(unsealed, "tsaccess_audit_unsealed_seconds") > 0
            with db.admin(autocommit=True) as admin:
                admin.execute("SELECT tsaccess_audit_seal()")
            sealed = reading(m)
            assert value(sealed, "tsaccess_audit_chain_ok") == 1
            assert value(sealed, "tsaccess_audit_chain_blocks") >= 1
            assert value(sealed, "tsaccess_audit_unsealed_seconds") == 0
            assert value(sealed, "tsaccess_audit_last_seal_timestamp_seconds") > time.time() - 600
            with db.admin(autocommit=True) as admin:  # a superuser erases a sealed row
                admin.execute(
                    "DELETE FROM activity_audit WHERE id = (SELECT min(id) FROM activity_audit)"
                )
            assert value(reading(m), "tsaccess_audit_chain_ok") == 0


def test_chunks_dropped_by_the_retention_job_and_by_drop_table(
    monitored, monitor_server, monitor_template
):
    """With audited retention: the job's drops count as by retention, a DROP TABLE of a chunk
    as outside it but recorded (the event trigger), neither as unrecorded."""
    with fresh_db(monitor_server, monitor_template, "retention") as db:
        policy = monitored.policy.with_database(db.name)
        sensor = policy.table("sensor_readings")
        policy = dataclasses.replace(
            policy,
            tables=tuple(
                dataclasses.replace(t, retention=Retention("60 days")) if t is sensor else t
                for t in policy.tables
            ),
        )
        with db.admin() as admin:
            apply(admin, policy, passwords=monitored.company.passwords)
        company = Company(policy, monitored.company.passwords, db)
        with db.admin(autocommit=True) as admin:
            quiesce_jobs(admin)  # only the run_job below drops chunks, not the scheduler
            admin.execute(
                "INSERT INTO sensor_readings (time, sensor_id) SELECT now() - i * interval"
                " '30 days', 's' || i FROM generate_series(0, 6) i"
            )
            old = admin.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name ="
                " 'sensor_readings' AND range_end < now() - interval '60 days'"
            ).fetchone()[0]
        with Monitor(lambda: company.connect("monitor"), policy) as m:
            before = reading(m)
            with db.admin(autocommit=True) as admin:
                job = admin.execute(
                    "SELECT job_id FROM timescaledb_information.jobs"
                    " WHERE proc_name = 'tsaccess_retention'"
                ).fetchone()[0]
                admin.execute("CALL run_job(%s)", (job,))
                left = admin.execute(
                    "SELECT chunk_schema, chunk_name FROM timescaledb_information.chunks"
                    " WHERE hypertable_name = 'sensor_readings' ORDER BY range_start LIMIT 1"
                ).fetchone()
            by_job = reading(m)
            with db.admin(autocommit=True) as admin:
                admin.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(*left)))
            by_hand = reading(m)
    outside = "tsaccess_hypertable_chunks_dropped_outside_retention_total"
    retained = "tsaccess_hypertable_chunks_dropped_by_retention_total"
    assert old >= 3  # rows 90, 120, ... 180 days old: one chunk each
    assert value(before, retained, table="sensor_readings") == 0
    assert value(by_job, retained, table="sensor_readings") == old
    assert value(by_job, outside, table="sensor_readings", recorded="false") == 0
    assert value(by_job, outside, table="sensor_readings", recorded="true") == 0
    assert value(by_hand, outside, table="sensor_readings", recorded="true") == 1
    assert value(by_hand, outside, table="sensor_readings", recorded="false") == 0
    assert value(by_hand, retained, table="sensor_readings") == value(
        by_job, retained, table="sensor_readings"
    )
