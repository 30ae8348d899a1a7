"""The local backend: a cluster made with ``initdb`` / ``pg_ctl`` of the installation found by
:func:`~tsaccess.ephemeral.install.find_installation`.

It listens on a free port of 127.0.0.1 only, keeps its socket in a private directory, accepts
TCP only over TLS with SCRAM (``hostnossl`` is rejected) and preloads TimescaleDB when that
installation has it. Run as root, it runs the server as an unprivileged OS user (``postgres``,
or ``TSACCESS_PG_OS_USER``), since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from tsaccess._files import write_private
from tsaccess.client.tls import CertificatePaths, create_certificates
from tsaccess.ephemeral.base import ADMIN, ServerInfo, Started, free_port, wait_ready
from tsaccess.ephemeral.install import PgInstallation, find_installation
from tsaccess.errors import ServerStartError
from tsaccess.plan.initdir import HBA_LINES

__all__ = ["start"]

_HBA_TITLE = "# tsaccess throwaway server: TLS + SCRAM only; plain TCP is rejected.\n"


def hba_text(extra: Sequence[str] = ()) -> str:
    """``pg_hba.conf``: ``extra`` lines first (first match wins), then TLS + SCRAM only."""
    return _HBA_TITLE + "".join(f"{line}\n" for line in (*extra, *HBA_LINES))


def start(*, timescaledb: bool = True, settings: Mapping[str, str] | None = None) -> Started:
    """Make and start a cluster; returns it and the function that stops and deletes it.

    Args:
        timescaledb: preload TimescaleDB when the installation has it; False gives a plain
            PostgreSQL server even where TimescaleDB is installed.
        settings: more ``postgresql.conf`` settings (values quoted as in the file), e.g.
            ``{"logging_collector": "on", "log_destination": "'jsonlog'"}``.
    """
    inst = find_installation()
    if not timescaledb:
        inst = replace(inst, timescaledb=None)
    workdir = Path(tempfile.mkdtemp(prefix="tsaccess-pg-"))
    run_as = unprivileged_user()
    stop = partial(_stop, inst.bindir, workdir, run_as)
    try:
        info = _init_and_start(inst, workdir, run_as, settings)
    except BaseException:
        stop()
        raise
    return info, stop


def unprivileged_user() -> pwd.struct_passwd | None:
    """The OS user to run the server as when we are root (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("TSACCESS_PG_OS_USER", "")
    for cand in [name] if name else ["postgres", "nobody"]:
        try:
            return pwd.getpwnam(cand)
        except KeyError:
            continue
    raise ServerStartError(
        "running as root and no unprivileged OS user to run PostgreSQL as (tried 'postgres', "
        "'nobody'); create one ('useradd -r postgres') or set TSACCESS_PG_OS_USER"
    )


def _run(
    cmd: list[str], run_as: pwd.struct_passwd | None, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    kwargs: dict[str, Any] = {}
    if run_as is not None:
        kwargs.update(user=run_as.pw_uid, group=run_as.pw_gid, extra_groups=[])
        env.update(HOME=str(cwd), USER=run_as.pw_name, LOGNAME=run_as.pw_name)
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def chown(run_as: pwd.struct_passwd | None, *paths: Path) -> None:
    """Give ``paths`` to the OS user the server runs as (nothing to do when not root)."""
    if run_as is not None:
        for p in paths:
            os.chown(p, run_as.pw_uid, run_as.pw_gid)


def make_certificates(workdir: Path, run_as: pwd.struct_passwd | None) -> CertificatePaths:
    """A CA and a server certificate for the loopback names in ``workdir/ssl``, usable by the
    server's OS user."""
    ssl_dir = workdir / "ssl"
    certs = create_certificates(ssl_dir, ("localhost", "127.0.0.1", "::1"))
    chown(run_as, ssl_dir, certs.server_key, certs.server_cert)
    return certs


def server_settings(
    inst: PgInstallation, port: int, sock: Path, certs: CertificatePaths
) -> dict[str, str]:
    """The ``postgresql.conf`` settings of a throwaway server (values quoted as in the file)."""
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{sock}'",
        "ssl": "on",
        "ssl_cert_file": f"'{certs.server_cert}'",
        "ssl_key_file": f"'{certs.server_key}'",
        "ssl_min_protocol_version": "'TLSv1.2'",
        "password_encryption": "'scram-sha-256'",
        "fsync": "off",  # a throwaway server: durability buys nothing
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "shared_buffers": "'256MB'",
        "log_min_messages": "warning",
    }
    if inst.timescaledb:
        settings["shared_preload_libraries"] = "'timescaledb'"
        settings["timescaledb.telemetry_level"] = "off"
    return settings


def append_settings(data: Path, settings: Mapping[str, str], title: str) -> None:
    """Append ``settings`` to ``data/postgresql.conf`` (later lines win over earlier ones)."""
    with (data / "postgresql.conf").open("a") as f:
        f.write(f"\n# {title}\n")
        f.writelines(f"{k} = {v}\n" for k, v in settings.items())


def pg_ctl_start(
    bindir: Path, data: Path, logfile: Path, run_as: pwd.struct_passwd | None, cwd: Path
) -> None:
    """``pg_ctl start -w``; raises :class:`ServerStartError` with the log's tail on failure."""
    res = _run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t", "60", "start"],
        run_as,
        cwd,
    )
    if res.returncode != 0:
        tail = logfile.read_text(errors="replace")[-1500:] if logfile.exists() else res.stderr
        raise ServerStartError(f"pg_ctl start failed (exit {res.returncode}): {tail.strip()}")


def log_tail(logfile: Path) -> Callable[[], str]:
    """A function returning the last lines of ``logfile`` (for error messages)."""

    def tail() -> str:
        return logfile.read_text(errors="replace")[-1500:] if logfile.exists() else ""

    return tail


def init_and_start(
    inst: PgInstallation,
    node_dir: Path,
    run_as: pwd.struct_passwd | None,
    certs: CertificatePaths,
    *,
    hba_lines: Sequence[str] = (),
    settings: Mapping[str, str] | None = None,
    backend: str = "local",
) -> ServerInfo:
    """``initdb`` a server in ``node_dir/data``, start it and wait for a TLS login.

    Args:
        node_dir: an existing directory (owned by ``run_as``) for ``data``, ``socket`` and
            ``server.log``.
        hba_lines: ``pg_hba.conf`` lines put before the TLS-only ones (first match wins).
        settings: extra ``postgresql.conf`` settings, over :func:`server_settings`.
    """
    bindir = inst.bindir
    data, sock = node_dir / "data", node_dir / "socket"
    sock.mkdir()
    password = secrets.token_urlsafe(24)
    pwfile = node_dir / "pwfile"
    write_private(pwfile, password + "\n")
    chown(run_as, node_dir, sock, pwfile)
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", ADMIN, f"--pwfile={pwfile}"]
    initdb += ["--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"]
    res = _run(initdb, run_as, node_dir)
    pwfile.unlink()
    if res.returncode != 0:
        raise ServerStartError(
            f"initdb failed (exit {res.returncode}): {res.stderr.strip()[-1500:]}"
        )
    (data / "pg_hba.conf").write_text(hba_text(hba_lines))
    port = free_port()
    append_settings(
        data,
        {**server_settings(inst, port, sock, certs), **(settings or {})},
        "tsaccess throwaway server",
    )
    chown(run_as, data / "pg_hba.conf")
    logfile = node_dir / "server.log"
    pg_ctl_start(bindir, data, logfile, run_as, node_dir)
    info = ServerInfo(
        host="127.0.0.1",
        port=port,
        user=ADMIN,
        password=password,
        dbname="postgres",
        sslrootcert=str(certs.ca_cert),
        backend=backend,
        workdir=node_dir,
        installation=inst.describe(),
    )
    wait_ready(info, timeout=30, log_tail=log_tail(logfile))
    return info


def _init_and_start(
    inst: PgInstallation,
    workdir: Path,
    run_as: pwd.struct_passwd | None,
    settings: Mapping[str, str] | None = None,
) -> ServerInfo:
    certs = make_certificates(workdir, run_as)
    return init_and_start(inst, workdir, run_as, certs, settings=settings)


def stop_node(bindir: Path, data: Path, run_as: pwd.struct_passwd | None, cwd: Path) -> None:
    """Stop the server of ``data`` at once (``-m immediate``); SIGKILL it if that fails."""
    if (data / "postmaster.pid").exists():
        res = _run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            run_as,
            cwd,
            timeout=60,
        )
        if res.returncode != 0:  # last resort: kill the postmaster we started
            with contextlib.suppress(OSError, ValueError):
                pid = int((data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)


def _stop(bindir: Path, workdir: Path, run_as: pwd.struct_passwd | None) -> None:
    stop_node(bindir, workdir / "data", run_as, workdir)
    shutil.rmtree(workdir, ignore_errors=True)
