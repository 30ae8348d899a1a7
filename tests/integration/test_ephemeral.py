"""The throwaway server: TLS + SCRAM only, cleaned up after errors and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

import tsaccess
from tsaccess import ephemeral
from tsaccess.ephemeral import EphemeralServer


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


def test_cli_demo_cleans_up_on_sigterm(tmp_path):
    before = set(Path(tempfile.gettempdir()).glob("tsaccess-pg-*"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsaccess", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server is up once this is printed
    assert "Throwaway server" in line
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    time.sleep(0.2)
    assert set(Path(tempfile.gettempdir()).glob("tsaccess-pg-*")) - before == set()


def test_missing_binaries_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("TSACCESS_PG_BINDIR", raising=False)
    monkeypatch.setattr(ephemeral, "_DEBIAN_ROOT", tmp_path / "nothing")
    with pytest.raises(tsaccess.ServerStartError, match="apt-get install postgresql"):
        ephemeral.find_bindir()
