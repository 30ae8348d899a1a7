"""``nox -s docker`` decides before installing anything, with the exact cause and no traceback;
the probe asks the caller's engine (``DOCKER_HOST``), whatever socket it listens on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tsaccess.ephemeral.engine import DEFAULT_SOCKET, engine_url, probe

ROOT = Path(__file__).resolve().parents[2]


class FakeEngine:
    """A Docker engine on a Unix socket of our own: answers /_ping, knows some images, and
    refuses pulls with a registry error."""

    def __init__(self, path: Path, images: set[str]) -> None:
        self.path, self.images, self.requests = path, images, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rb")
                while True:
                    line = f.readline()
                    if not line:
                        break
                    method, path, _ = line.decode().split(" ", 2)
                    while f.readline() not in (b"\r\n", b""):
                        pass
                    self.requests.append((method, path))
                    status, body = self._answer(method, path)
                    conn.sendall(
                        f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )

    def _answer(self, method: str, path: str) -> tuple[int, bytes]:
        from urllib.parse import unquote

        if path == "/_ping":
            return 200, b"OK"
        if path.startswith("/images/") and path.endswith("/json"):
            name = unquote(path[len("/images/") : -len("/json")])
            return (200, b"{}") if name in self.images else (404, b'{"message": "no such"}')
        if method == "POST" and path.startswith("/images/create"):
            line = {"error": "Get https://registry-1.docker.io/v2/: dial tcp: no route"}
            return 200, json.dumps(line).encode() + b"\n"
        return 404, b"{}"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def engine(tmp_path) -> Iterator[FakeEngine]:
    e = FakeEngine(tmp_path / "other-engine.sock", {"local/timescaledb:15"})
    yield e
    e.close()


def test_the_probe_asks_the_engine_docker_host_names(engine):
    env = {"DOCKER_HOST": f"unix://{engine.path}"}
    assert engine_url(env) == f"unix://{engine.path}"
    assert engine_url({}) == DEFAULT_SOCKET
    assert probe("local/timescaledb:15", environ=env) is None
    assert ("GET", "/_ping") in engine.requests
    cause = probe("timescale/timescaledb:latest-pg15", environ=env)
    assert cause is not None
    assert "'timescale/timescaledb:latest-pg15' is not present" in cause
    assert "cannot be pulled (Get https://registry-1.docker.io/v2/: dial tcp: no route)" in cause
    assert f"unix://{engine.path} (DOCKER_HOST)" in cause
    assert ("POST", "/images/create?fromImage=timescale%2Ftimescaledb&tag=latest-pg15") in (
        engine.requests
    )


def test_the_probe_names_a_dead_engine(tmp_path):
    env = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    cause = probe("any:1", environ=env)
    assert cause is not None
    assert cause.startswith(f"no Docker engine answers at unix://{tmp_path}/nothing.sock")
    assert "FileNotFoundError" in cause


def test_nox_docker_skips_before_installing_with_the_cause(tmp_path):
    """Without an engine the session is skipped, with the engine's address and the error, and
    no traceback; ``--no-venv`` makes any install attempt fail the session, so a skip proves
    the decision came first."""
    pytest.importorskip("nox")
    dead = f"unix://{tmp_path}/no-engine.sock"
    env = {k: v for k, v in os.environ.items() if k != "TSACCESS_REQUIRE_DOCKER"}
    res = subprocess.run(
        [sys.executable, "-m", "nox", "-s", "docker", "--no-venv", "--envdir", str(tmp_path)],
        cwd=ROOT,
        env={**env, "DOCKER_HOST": dead},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Traceback" not in out
    assert "pip install" not in out and "install" not in out.split("Skipped")[0].lower(), out
    assert f"no Docker engine answers at {dead} (DOCKER_HOST)" in out, out
    assert "skipped" in out.lower()
    # CI: the same cause, as an error (exit 1), still no traceback
    res = subprocess.run(
        [sys.executable, "-m", "nox", "-s", "docker", "--no-venv", "--envdir", str(tmp_path)],
        cwd=ROOT,
        env={**env, "DOCKER_HOST": dead, "TSACCESS_REQUIRE_DOCKER": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "Traceback" not in out
    assert f"no Docker engine answers at {dead} (DOCKER_HOST)" in out, out
