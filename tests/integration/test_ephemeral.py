"""The throwaway server: TLS + SCRAM only, cleaned up after errors and signals."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

import tsaccess
from tsaccess import ephemeral
from tsaccess.ephemeral import EphemeralServer, install


def _postmaster_alive(workdir: Path) -> bool:
    pidfile = workdir / "data" / "postmaster.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().split()[0]), 0)
    except (OSError, ValueError):
        return False
    return True


def test_local_server_is_deleted_after_an_exception():
    server = EphemeralServer(backend="local")
    with pytest.raises(RuntimeError, match="boom"), server as info:
        workdir = info.workdir
        assert workdir is not None
        with tsaccess.connect(**info.params()) as conn:
            row = conn.execute(
                "SELECT current_setting('ssl'), current_setting('password_encryption')"
            ).fetchone()
            assert row == ("on", "scram-sha-256")
        raise RuntimeError("boom")
    assert not workdir.exists()
    assert not _postmaster_alive(workdir)


def test_server_rejects_password_less_and_md5_logins():
    with EphemeralServer(backend="local") as info:
        with pytest.raises(psycopg.OperationalError, match="password"):
            tsaccess.connect(**info.params(password="wrong"))


def test_cli_demo_cleans_up_on_sigterm():
    # a temp folder of its own (readable by the server's OS user): other test runs on this
    # machine make tsaccess-pg-* folders in the shared one at the same time
    private_tmp = Path(tempfile.mkdtemp(prefix="tsaccess-sigterm-"))
    private_tmp.chmod(0o755)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tsaccess", "demo"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "TMPDIR": str(private_tmp)},
        )
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]  # a warning may come first
        up = next((x for x in lines if "Throwaway server" in x), None)
        assert up is not None, lines  # the server is up
        port = int(re.search(r"on 127\.0\.0\.1:(\d+)", up).group(1))
        assert [p.name.startswith("tsaccess-pg-") for p in private_tmp.iterdir()] == [True]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        # the process unwinds before it exits: the server is stopped and its folder deleted
        assert list(private_tmp.iterdir()) == []
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)


def test_missing_binaries_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("TSACCESS_PG_BINDIR", raising=False)
    monkeypatch.setattr(install, "DEBIAN_ROOT", tmp_path / "nothing")
    with pytest.raises(tsaccess.ServerStartError, match="apt-get install postgresql"):
        ephemeral.find_bindir()


def _decoy_path(tmp_path: Path, real: Path) -> Path:
    """A PATH entry with symlinks to the server binaries and a lying pg_config beside them."""
    decoy = tmp_path / "bin"
    decoy.mkdir()
    for exe in ("initdb", "pg_ctl", "postgres"):
        (decoy / exe).symlink_to(real / exe)
    fake = decoy / "pg_config"
    fake.write_text("#!/bin/sh\necho /nonexistent\n")
    fake.chmod(0o755)
    return decoy


@pytest.mark.timescaledb
def test_timescaledb_found_through_symlinks_and_a_lying_pg_config(monkeypatch, tmp_path):
    real = ephemeral.find_installation().bindir
    decoy = _decoy_path(tmp_path, real)
    monkeypatch.setenv("PATH", f"{decoy}:{os.environ['PATH']}")
    monkeypatch.delenv("TSACCESS_PG_BINDIR", raising=False)
    inst = ephemeral.find_installation()
    assert inst.bindir == real  # resolved, not the symlinks' folder
    assert inst.timescaledb is not None
    assert str(decoy / "initdb") in inst.found_via
    assert str(real) in inst.describe() and inst.timescaledb in inst.describe()
    with EphemeralServer(backend="local") as info:
        assert info.timescaledb
        assert str(real) in info.installation


def test_pg_bindir_without_timescaledb_reports_it(monkeypatch, tmp_path):
    """A bindir whose installation has no TimescaleDB says so instead of guessing."""
    real = ephemeral.find_installation().bindir
    other = tmp_path / "pg" / "bin"
    other.mkdir(parents=True)
    for exe in ("initdb", "pg_ctl", "postgres"):
        (other / exe).write_bytes((real / exe).read_bytes())
        (other / exe).chmod(0o755)
    (other / "pg_config").write_text(
        f"#!/bin/sh\ncase $1 in --sharedir) echo {tmp_path}/share;; *) echo {tmp_path}/lib;; esac\n"
    )
    (other / "pg_config").chmod(0o755)
    monkeypatch.setenv("TSACCESS_PG_BINDIR", str(other))
    inst = ephemeral.find_installation()
    assert inst.bindir == other and inst.found_via == "TSACCESS_PG_BINDIR"
    assert inst.timescaledb is None
    assert "no TimescaleDB" in inst.describe()
