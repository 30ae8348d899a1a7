"""The Docker backend through testcontainers, and the rendered init/ on the image.

Marked ``docker``: they start containers of ``TSACCESS_TEST_IMAGE`` and skip without Docker
(fail with ``TSACCESS_REQUIRE_DOCKER=1``, as in CI).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

import tsaccess
from tsaccess.cli import main as cli_main
from tsaccess.ephemeral import EphemeralServer
from tsaccess.ephemeral.docker import _client
from tsaccess.ephemeral.engine import engine_url

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def _our_containers() -> set[str]:
    client = _client()
    assert client is not None
    try:
        return {
            c.id for c in client.containers.list(all=True, filters={"label": "tsaccess.ephemeral"})
        }
    finally:
        client.close()


def test_docker_backend_is_tls_scram_timescaledb_and_removed_on_stop(docker_image):
    before = _our_containers()
    server = EphemeralServer(backend="docker", image=docker_image)
    info = server.start()
    try:
        assert info.backend == "docker" and info.timescaledb
        assert docker_image in info.installation
        with tsaccess.connect(**info.params()) as conn:
            row = conn.execute(
                "SELECT current_setting('ssl'), current_setting('password_encryption'),"
                " (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
            ).fetchone()
            assert row == ("on", "scram-sha-256", True)
        # plain TCP is rejected by the server itself (not only by tsaccess's client check)
        with pytest.raises(psycopg.OperationalError, match=r"pg_hba.conf rejects|no encryption"):
            psycopg.connect(
                host=info.host,
                port=info.port,
                user=info.user,
                password=info.password,
                dbname="postgres",
                sslmode="disable",
                connect_timeout=5,
            ).close()
        assert len(_our_containers() - before) == 1
    finally:
        server.stop()
    assert _our_containers() - before == set()
    assert info.workdir is not None and not info.workdir.exists()


def test_network_mode_can_be_forced_and_is_validated(docker_image, monkeypatch):
    monkeypatch.setenv("TSACCESS_DOCKER_NETWORK", "sideways")
    with pytest.raises(tsaccess.ServerStartError, match="TSACCESS_DOCKER_NETWORK"):
        EphemeralServer(backend="docker", image=docker_image).start()


def test_missing_image_docker_backend_names_image_and_remedy():
    image = "tsaccess-test/does-not-exist:0"
    with pytest.raises(tsaccess.ServerStartError) as err:
        EphemeralServer(backend="docker", image=image).start()
    msg = str(err.value)
    assert image in msg
    assert "TSACCESS_TEST_IMAGE" in msg and "backend='local'" in msg


def test_missing_image_auto_falls_back_to_local_with_one_warning(monkeypatch):
    monkeypatch.delenv("TSACCESS_TEST_DSN", raising=False)
    with capture_logs() as logs:
        with EphemeralServer(backend="auto", image="tsaccess-test/does-not-exist:0") as info:
            assert info.backend == "local"
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["image"] == "tsaccess-test/does-not-exist:0"


_HOLD = textwrap.dedent(
    """
    import sys, time
    from tsaccess.ephemeral import EphemeralServer
    from tsaccess.cli.main import _exit_on_sigterm
    import signal
    if sys.argv[1] == "handled":
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with EphemeralServer(backend="docker", image=sys.argv[2]) as info:
        print("ready", info.port, flush=True)
        time.sleep(120)
    """
)


@pytest.mark.parametrize(("how", "sig"), [("handled", signal.SIGTERM), ("plain", signal.SIGINT)])
def test_container_is_removed_on_sigterm_and_ctrl_c(docker_image, how, sig):
    before = _our_containers()
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, how, docker_image], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready")
    assert len(_our_containers() - before) == 1
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert _our_containers() - before == set()


def test_container_of_a_killed_process_is_reaped_by_the_next_start(docker_image):
    before = _our_containers()
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, "plain", docker_image], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready")
    proc.kill()  # no cleanup can run
    proc.wait(timeout=30)
    orphans = _our_containers() - before
    assert len(orphans) == 1
    with EphemeralServer(backend="docker", image=docker_image):
        assert not (orphans & _our_containers())


def test_rendered_init_on_the_image_equals_apply(docker_image, tmp_path, capsys):
    """init/ (as committed) mounted at /docker-entrypoint-initdb.d: verify finds 0 disagreements."""
    from tsaccess.policy import load_policy

    policy = load_policy(ROOT / "examples" / "company.toml")
    passwords = {u.password_env: f"pw-{u.name}-Aa1!" for u in policy.users}
    server = EphemeralServer(
        backend="docker",
        image=docker_image,
        init_dir=ROOT / "init",
        environment=passwords,
        dbname=policy.database,
    )
    with server as info:
        with tsaccess.connect(**info.params()) as conn:
            hypertables = {
                r[0]
                for r in conn.execute(
                    "SELECT format('%I.%I', hypertable_schema, hypertable_name)"
                    " FROM timescaledb_information.hypertables"
                )
            }
        assert {"public.sensor_readings", "public.financial_metrics"} <= hypertables
        dsn = (
            f"host={info.host} port={info.port} user={info.user} dbname={policy.database}"
            f" sslmode=verify-full sslrootcert={info.sslrootcert}"
        )
        env = {"PGPASSWORD": info.password, **passwords}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            capsys.readouterr()
            assert (
                cli_main(["plan", "--policy", str(ROOT / "examples/company.toml"), "--dsn", dsn])
                == 0
            )
            plan_out = capsys.readouterr().out
            code = cli_main(
                ["verify", "--policy", str(ROOT / "examples/company.toml"), "--dsn", dsn]
            )
            verify_out = capsys.readouterr().out
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    assert "Nothing to do" in plan_out, plan_out
    assert code == 0, verify_out
    assert " 0 disagreement(s): the database enforces exactly the policy" in verify_out
    assert "check(s) not tried" not in verify_out  # every user logged in with its init/ password


def test_docker_host_is_honoured(docker_image, monkeypatch):
    """DOCKER_HOST chooses the engine: a dead one is a clear error naming it, the caller's own
    engine (its DOCKER_HOST, rootless or remote, else the local socket) works."""
    callers = engine_url()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(
        tsaccess.ServerStartError,
        match=r"no Docker engine answers at unix:///nonexistent/docker.sock \(DOCKER_HOST\)",
    ):
        EphemeralServer(backend="docker", image=docker_image).start()
    monkeypatch.setenv("DOCKER_HOST", callers)
    with EphemeralServer(backend="docker", image=docker_image) as info:
        assert info.backend == "docker"
