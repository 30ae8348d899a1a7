"""A throwaway PostgreSQL server with TLS and SCRAM, for the demo, the examples and the tests.

Backends, tried in this order by ``backend="auto"``:

1. ``dsn``: an existing server given as ``dsn=`` or ``TSACCESS_TEST_DSN`` (an admin login);
2. ``docker``: the ``timescale/timescaledb`` image through testcontainers, when a Docker engine
   answers;
3. ``local``: a cluster made with ``initdb`` / ``pg_ctl`` found on ``PATH``, through
   ``pg_config --bindir`` or in ``/usr/lib/postgresql/*/bin``. It listens on a free port of
   127.0.0.1 only, keeps its socket in a private directory, accepts TCP only over TLS with
   SCRAM passwords (``hostnossl`` is rejected) and preloads TimescaleDB when it is installed.
   Run as root, it runs the server as an unprivileged OS user (``postgres``, or
   ``TSACCESS_PG_OS_USER``), since PostgreSQL refuses to run as root.

Everything a local or Docker server made is stopped and deleted on ``stop()``, when the ``with``
block ends (also after an exception or Ctrl-C) and at interpreter exit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tsaccess._log import get_logger
from tsaccess.errors import ServerStartError
from tsaccess.tls import create_certificates

__all__ = ["Backend", "EphemeralServer", "ServerInfo", "find_bindir"]

log = get_logger("tsaccess.ephemeral")

Backend = Literal["auto", "dsn", "docker", "local"]
DEFAULT_IMAGE = "timescale/timescaledb:latest-pg16"
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_ADMIN = "postgres"


@dataclass(frozen=True)
class ServerInfo:
    """How to reach a running throwaway server as its administrator."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    sslrootcert: str | None
    backend: str
    timescaledb: bool = False
    """True when the ``timescaledb`` extension is available *and* preloaded."""
    workdir: Path | None = None

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for :func:`tsaccess.connect` (admin unless overridden)."""
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }
        if self.sslrootcert:
            base.update(sslmode="verify-full", sslrootcert=self.sslrootcert)
        else:
            base.update(sslmode="require")
        base.update(overrides)
        return base

    def with_database(self, dbname: str) -> ServerInfo:
        return replace(self, dbname=dbname)


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Looks at ``TSACCESS_PG_BINDIR``, ``PATH``, ``pg_config --bindir`` and
    ``/usr/lib/postgresql/*/bin`` (newest first).
    """
    tried: list[str] = []
    env = os.environ.get("TSACCESS_PG_BINDIR")
    candidates: list[Path] = [Path(env)] if env else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates += sorted(_DEBIAN_ROOT.glob("*/bin"), key=version, reverse=True)
    for cand in candidates:
        tried.append(str(cand))
        if all((cand / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return cand
    raise ServerStartError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in "
        f"{', '.join(tried) or 'PATH'}. Install them (Debian/Ubuntu: "
        "'apt-get install postgresql'), or set TSACCESS_PG_BINDIR, or give a server with "
        "TSACCESS_TEST_DSN."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docker_answers() -> bool:
    """True when a Docker engine answers (the probe fails in ~0.1 s where none runs)."""
    try:
        import docker  # type: ignore[import-untyped]  # testcontainers' dependency
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception:
        return False
    return True


_HBA = """\
# tsaccess throwaway server: TCP only over TLS with SCRAM; plain TCP is rejected.
local     all all                scram-sha-256
hostssl   all all 127.0.0.1/32   scram-sha-256
hostssl   all all ::1/128        scram-sha-256
hostnossl all all 0.0.0.0/0      reject
hostnossl all all ::/0           reject
"""


class EphemeralServer:
    """Start a throwaway server; use as a context manager or call ``start()`` / ``stop()``.

    Args:
        dsn: an existing server (admin login) to use instead of starting one. Defaults to
            ``TSACCESS_TEST_DSN``.
        backend: ``auto`` (dsn, then docker, then local), or force one.
        image: the Docker image for the docker backend.
        keep: leave the server running on ``stop()`` (the demo's ``--keep``).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        backend: Backend = "auto",
        image: str = DEFAULT_IMAGE,
        keep: bool = False,
    ) -> None:
        self._dsn = dsn if dsn is not None else os.environ.get("TSACCESS_TEST_DSN") or None
        self._backend = backend
        self._image = image
        self.keep = keep
        self.info: ServerInfo | None = None
        self._cleanup: weakref.finalize | None = None  # type: ignore[type-arg]

    def __repr__(self) -> str:
        state = (
            f"{self.info.backend} on {self.info.host}:{self.info.port}" if self.info else "stopped"
        )
        return f"<EphemeralServer {state}>"

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> ServerInfo:
        """Start (or attach to) the server and wait until a real TLS query succeeds."""
        if self.info is not None:
            return self.info
        backend = self._backend
        if backend == "auto":
            if self._dsn:
                backend = "dsn"
            elif _docker_answers():
                backend = "docker"
            else:
                backend = "local"
        t0 = time.perf_counter()
        if backend == "dsn":
            if not self._dsn:
                raise ServerStartError("backend 'dsn' needs dsn= or TSACCESS_TEST_DSN")
            self.info = self._from_dsn(self._dsn)
        elif backend == "docker":
            self.info = self._start_docker()
        else:
            self.info = self._start_local()
        self.info = replace(self.info, timescaledb=_has_timescaledb(self.info))
        log.info(
            "server ready",
            backend=self.info.backend,
            port=self.info.port,
            timescaledb=self.info.timescaledb,
            seconds=round(time.perf_counter() - t0, 3),
        )
        return self.info

    def stop(self) -> None:
        """Stop the server and delete its files (unless ``keep``). Safe to call twice."""
        if self._cleanup is not None:
            if self.keep:
                self._cleanup.detach()  # leave it running, also at interpreter exit
            else:
                self._cleanup()
        self._cleanup = None
        self.info = None

    # -- backends ---------------------------------------------------------------------------

    @staticmethod
    def _from_dsn(dsn: str) -> ServerInfo:
        d = conninfo_to_dict(dsn)
        return ServerInfo(
            host=str(d.get("host") or os.environ.get("PGHOST") or "localhost"),
            port=int(d.get("port") or os.environ.get("PGPORT") or 5432),
            user=str(d.get("user") or os.environ.get("PGUSER") or _ADMIN),
            password=str(d.get("password") or os.environ.get("PGPASSWORD") or ""),
            dbname=str(d.get("dbname") or "postgres"),
            sslrootcert=str(d.get("sslrootcert") or os.environ.get("PGSSLROOTCERT") or "") or None,
            backend="dsn",
        )

    def _start_docker(self) -> ServerInfo:  # pragma: no cover - needs a Docker engine
        from testcontainers.core.container import DockerContainer

        workdir = Path(tempfile.mkdtemp(prefix="tsaccess-docker-"))
        create_certificates(workdir, ("localhost", "127.0.0.1"))
        (workdir / "pg_hba.conf").write_text(
            _HBA.replace(
                "local     all all                scram-sha-256",
                "local     all all                trust",
            )
        )
        password = secrets.token_urlsafe(24)
        # The image's entrypoint runs as root: copy the key so that postgres owns it (0600).
        script = (
            "cp /tsaccess-ssl/server.crt /tsaccess-ssl/server.key /tsaccess-ssl/pg_hba.conf "
            "/var/lib/postgresql/ && chown postgres /var/lib/postgresql/server.* "
            "/var/lib/postgresql/pg_hba.conf && chmod 600 /var/lib/postgresql/server.key && "
            "exec docker-entrypoint.sh postgres -c ssl=on "
            "-c ssl_cert_file=/var/lib/postgresql/server.crt "
            "-c ssl_key_file=/var/lib/postgresql/server.key "
            "-c hba_file=/var/lib/postgresql/pg_hba.conf "
            "-c password_encryption=scram-sha-256 -c shared_preload_libraries=timescaledb"
        )
        container = (
            DockerContainer(self._image)
            .with_env("POSTGRES_PASSWORD", password)
            .with_env("TIMESCALEDB_TELEMETRY", "off")
            .with_volume_mapping(str(workdir), "/tsaccess-ssl", "ro")
            .with_exposed_ports(5432)
            .with_kwargs(entrypoint=["sh", "-c", script])
        )
        container.start()

        def cleanup() -> None:
            with contextlib.suppress(Exception):
                container.stop()
            shutil.rmtree(workdir, ignore_errors=True)

        self._cleanup = weakref.finalize(self, cleanup)
        info = ServerInfo(
            host="127.0.0.1",
            port=int(container.get_exposed_port(5432)),
            user=_ADMIN,
            password=password,
            dbname="postgres",
            sslrootcert=str(workdir / "ca.crt"),
            backend="docker",
            workdir=workdir,
        )
        _wait_ready(info, timeout=90, log_tail=lambda: container.get_logs()[1].decode()[-2000:])
        return info

    def _start_local(self) -> ServerInfo:
        bindir = find_bindir()
        workdir = Path(tempfile.mkdtemp(prefix="tsaccess-pg-"))
        run_as = _unprivileged_user()
        try:
            info = _init_and_start(bindir, workdir, run_as)
        except BaseException:
            _stop_local(bindir, workdir, run_as)
            raise
        self._cleanup = weakref.finalize(self, _stop_local, bindir, workdir, run_as)
        return info


def _unprivileged_user() -> pwd.struct_passwd | None:
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


def _timescaledb_installed(bindir: Path) -> bool:
    pg_config = bindir / "pg_config"
    if not pg_config.is_file():
        return False
    out = subprocess.run(
        [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False, timeout=10
    ).stdout.strip()
    return bool(out) and (Path(out) / "extension" / "timescaledb.control").is_file()


def _init_and_start(bindir: Path, workdir: Path, run_as: pwd.struct_passwd | None) -> ServerInfo:
    data, sock, ssl_dir = workdir / "data", workdir / "socket", workdir / "ssl"
    sock.mkdir()
    certs = create_certificates(ssl_dir, ("localhost", "127.0.0.1", "::1"))
    password = secrets.token_urlsafe(24)
    pwfile = workdir / "pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    if run_as is not None:
        for p in (workdir, sock, ssl_dir, pwfile, certs.server_key, certs.server_cert):
            os.chown(p, run_as.pw_uid, run_as.pw_gid)
    res = _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            _ADMIN,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        run_as,
        workdir,
    )
    pwfile.unlink()
    if res.returncode != 0:
        raise ServerStartError(
            f"initdb failed (exit {res.returncode}): {res.stderr.strip()[-1500:]}"
        )
    (data / "pg_hba.conf").write_text(_HBA)
    port = _free_port()
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
    if _timescaledb_installed(bindir):
        settings["shared_preload_libraries"] = "'timescaledb'"
        settings["timescaledb.telemetry_level"] = "off"
    with (data / "postgresql.conf").open("a") as f:
        f.write("\n# tsaccess throwaway server\n")
        f.writelines(f"{k} = {v}\n" for k, v in settings.items())
    if run_as is not None:
        os.chown(data / "pg_hba.conf", run_as.pw_uid, run_as.pw_gid)
    logfile = workdir / "server.log"
    res = _run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t", "60", "start"],
        run_as,
        workdir,
    )
    if res.returncode != 0:
        tail = logfile.read_text(errors="replace")[-1500:] if logfile.exists() else res.stderr
        raise ServerStartError(f"pg_ctl start failed (exit {res.returncode}): {tail.strip()}")
    info = ServerInfo(
        host="127.0.0.1",
        port=port,
        user=_ADMIN,
        password=password,
        dbname="postgres",
        sslrootcert=str(certs.ca_cert),
        backend="local",
        workdir=workdir,
    )
    _wait_ready(info, timeout=30, log_tail=lambda: logfile.read_text(errors="replace")[-1500:])
    return info


def _stop_local(bindir: Path, workdir: Path, run_as: pwd.struct_passwd | None) -> None:
    data = workdir / "data"
    if (data / "postmaster.pid").exists():
        res = _run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            run_as,
            workdir,
            timeout=60,
        )
        if res.returncode != 0:  # last resort: kill the postmaster we started
            with contextlib.suppress(OSError, ValueError):
                pid = int((data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(info: ServerInfo, *, timeout: float, log_tail: Callable[[], str]) -> None:
    """Readiness is a real query over TLS as the admin, not an open port."""
    from tsaccess.connection import connect

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with connect(**info.params(connect_timeout=5), autocommit=True) as conn:
                conn.execute("SELECT 1")
                return
        except (psycopg.OperationalError, OSError) as exc:
            last = exc
            time.sleep(0.1)
    raise ServerStartError(
        f"server did not accept a TLS login within {timeout:.0f} s ({last}); server log:\n"
        f"{log_tail()}"
    )


def _has_timescaledb(info: ServerInfo) -> bool:
    from tsaccess.connection import connect

    with connect(**info.params(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_available_extensions"
            " WHERE name = 'timescaledb'),"
            " pg_catalog.current_setting('shared_preload_libraries') ~ 'timescaledb'"
        ).fetchone()
    return bool(row and row[0] and row[1])
