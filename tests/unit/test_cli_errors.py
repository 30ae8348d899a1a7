"""No traceback reaches the terminal (issue 26): a closed pipe, Ctrl-C and every expected error
end in one line on stderr and the documented exit status — no server needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tsaccess.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
POLICY = str(ROOT / "examples" / "company.toml")


def _tsaccess(*args: str, **kw):
    return subprocess.run(
        [sys.executable, "-m", "tsaccess", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kw,
    )


def test_a_closed_pipe_ends_quietly_with_141(tmp_path):
    """``tsaccess ... | head -c 0``: the reader is gone before anything is written."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tsaccess",
                "render-init",
                "--policy",
                POLICY,
                "--out",
                str(tmp_path / "init"),
                "--json",
            ],
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
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["render-init", "--policy", POLICY, "--out", "/dev/null/init"], "/dev/null/init"),
        (["plan", "--policy", POLICY, "--targets", "/nonexistent/targets.toml"], "targets"),
        (["plan", "--policy", "/nonexistent/p.toml"], "does not exist"),
        (["certs", "--out", "/dev/null/ssl"], "/dev/null/ssl"),
    ],
)
def test_expected_errors_are_one_line(args, says):
    res = _tsaccess(*args)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tsaccess: error: "), res.stderr
    assert says in lines[0]


def test_ctrl_c_is_one_line_and_130(tcp_trap):
    """Interrupted while waiting for a server that never answers."""
    port, trap = tcp_trap
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tsaccess",
            "audit",
            "recent",
            "--dsn",
            f"host=127.0.0.1 port={port} user=x dbname=x sslmode=require connect_timeout=60",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    trap.settimeout(60)
    client, _ = trap.accept()  # the client connected: it is past its imports and waits there
    try:
        time.sleep(0.5)
        assert proc.poll() is None and time.monotonic() < deadline
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        client.close()
    assert proc.returncode == 130, err
    assert err.endswith("\ntsaccess: interrupted\n") and "Traceback" not in err, err
    assert all(x.startswith("tsaccess: ") for x in err.splitlines()), err  # (a TLS warning)


def test_an_unexpected_error_is_one_line_unless_debugging(monkeypatch, capsys, tmp_path):
    import importlib

    m = importlib.import_module("tsaccess.cli.main")

    def broken(args):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(m, "cmd_render_init", broken)
    argv = ["render-init", "--policy", POLICY, "--out", str(tmp_path)]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("tsaccess: internal error: RuntimeError: something nobody planned for")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert cli_main(["--log-level", "debug", *argv]) == 1
    assert "Traceback" in capsys.readouterr().err
