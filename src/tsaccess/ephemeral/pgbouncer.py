"""PgBouncer in front of a throwaway server: TLS on both sides, SCRAM, transaction pooling.

Clients must use TLS (``client_tls_sslmode = require``, with the server's certificate, so
``sslmode=verify-full`` with the cluster CA works); PgBouncer checks the server's certificate
(``server_tls_sslmode = verify-full``). Logins are SCRAM-SHA-256: PgBouncer looks the verifier up
with ``auth_query`` (a ``SECURITY DEFINER`` function, run as a dedicated ``auth_user``), so roles
created after start-up can log in too. It runs as the server's unprivileged OS user and listens
on a free port of 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
from psycopg import sql

from tsaccess._files import write_private
from tsaccess.client.tls import CertificatePaths
from tsaccess.ephemeral.base import ServerInfo, free_port, wait_ready
from tsaccess.ephemeral.local import chown, log_tail
from tsaccess.errors import ServerStartError
from tsaccess.passwords import Secret, scram_verifier

__all__ = [
    "AUTH_SCHEMA",
    "AUTH_USER",
    "PgBouncer",
    "find_pgbouncer",
    "install_auth_function",
    "pgbouncer_version",
]

AUTH_USER = "tsaccess_pgbouncer"
"""The role PgBouncer logs in as to look up verifiers (``auth_user``)."""
AUTH_SCHEMA = "tsaccess_pgbouncer"
"""The schema of the ``get_auth`` lookup function."""
_AUTH_QUERY = f"SELECT usename, passwd FROM {AUTH_SCHEMA}.get_auth($1)"
_DEBIAN_PATH = Path("/usr/sbin/pgbouncer")


def find_pgbouncer() -> Path:
    """The ``pgbouncer`` executable (``PATH``, then ``/usr/sbin/pgbouncer``).

    Raises:
        ServerStartError: it is not installed.
    """
    found = shutil.which("pgbouncer")
    if found:
        return Path(found)
    if _DEBIAN_PATH.is_file() and os.access(_DEBIAN_PATH, os.X_OK):
        return _DEBIAN_PATH
    raise ServerStartError(
        "PgBouncer not found (looked for 'pgbouncer' on PATH and /usr/sbin/pgbouncer); install "
        "it: 'apt-get install pgbouncer' (Debian/Ubuntu), or start the cluster with "
        "pgbouncer=False"
    )


def pgbouncer_version(exe: Path) -> str:
    """``pgbouncer --version`` as a number, e.g. ``1.18.0``."""
    try:
        out = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerStartError(f"'{exe} --version' failed: {exc.__class__.__name__}") from exc
    m = re.search(r"PgBouncer\s+(\d+(?:\.\d+)*)", out)
    if not m:
        raise ServerStartError(f"cannot read the version of {exe} from {out.strip()[:200]!r}")
    return m.group(1)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def install_auth_function(conn: psycopg.Connection[object]) -> None:
    """Create the ``auth_query`` function in the connected database (admin, autocommit).

    ``get_auth(name)`` returns the SCRAM verifier of one login role from ``pg_shadow``; it runs
    as its owner (``SECURITY DEFINER``) with a fixed ``search_path``, and only ``AUTH_USER``
    may execute it. Install it in ``template1`` too, so databases created later have it.
    """
    schema = sql.Identifier(AUTH_SCHEMA)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
    conn.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}.get_auth(p_usename text)"
            " RETURNS TABLE(usename name, passwd text)"
            " LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
            " AS $$ SELECT s.usename, s.passwd FROM pg_catalog.pg_shadow s"
            " WHERE s.usename = p_usename $$"
        ).format(schema)
    )
    conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {}.get_auth(text) FROM PUBLIC").format(schema))
    conn.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, sql.Identifier(AUTH_USER))
    )
    conn.execute(
        sql.SQL("GRANT EXECUTE ON FUNCTION {}.get_auth(text) TO {}").format(
            schema, sql.Identifier(AUTH_USER)
        )
    )


def create_auth_user(conn: psycopg.Connection[object], password: Secret) -> None:
    """Create ``AUTH_USER`` (LOGIN, no other attribute); the server gets only a verifier."""
    conn.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(AUTH_USER), sql.Literal(scram_verifier(password))
        )
    )


@dataclass(frozen=True)
class PgBouncerConfig:
    """What a :class:`PgBouncer` serves and how."""

    server: ServerInfo
    """The server behind it (its CA also checks PgBouncer's server connections)."""
    certs: CertificatePaths
    """Certificate and key PgBouncer presents to clients (the server's: same names, same CA)."""
    auth_password: Secret
    pool_mode: str = "transaction"
    default_pool_size: int = 1
    max_prepared_statements: int = 100
    """Used only by PgBouncer 1.21 and later (protocol-level prepared statements)."""
    ignore_startup_parameters: tuple[str, ...] = ("extra_float_digits",)


class PgBouncer:
    """One PgBouncer process; :meth:`start` returns a :class:`ServerInfo` for it."""

    def __init__(
        self, config: PgBouncerConfig, workdir: Path, run_as: pwd.struct_passwd | None
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.run_as = run_as
        self.exe = find_pgbouncer()
        self.version = pgbouncer_version(self.exe)
        self.prepared_statements = _version_tuple(self.version) >= (1, 21)
        """Whether this PgBouncer keeps protocol-level prepared statements per client."""
        self.auth_dbname = _version_tuple(self.version) >= (1, 20)
        """Whether ``auth_dbname`` exists (else ``auth_query`` runs in the client's database)."""
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self._proc else "stopped"
        return f"<PgBouncer {self.version} {state}>"

    @property
    def logfile(self) -> Path:
        return self.workdir / "pgbouncer.log"

    def _ini(self, port: int, auth_file: Path) -> str:
        c = self.config
        settings: dict[str, str | int] = {
            "listen_addr": "127.0.0.1",
            "listen_port": port,
            "unix_socket_dir": "",  # TCP (TLS) only
            "logfile": str(self.logfile),
            "pidfile": str(self.workdir / "pgbouncer.pid"),
            "auth_type": "scram-sha-256",
            "auth_file": str(auth_file),
            "auth_user": AUTH_USER,
            "auth_query": _AUTH_QUERY,
            "pool_mode": c.pool_mode,
            "default_pool_size": c.default_pool_size,
            "max_client_conn": 200,
            "ignore_startup_parameters": ",".join(c.ignore_startup_parameters),
            "client_tls_sslmode": "require",
            "client_tls_cert_file": str(c.certs.server_cert),
            "client_tls_key_file": str(c.certs.server_key),
            "client_tls_ca_file": str(c.certs.ca_cert),
            "client_tls_protocols": "tlsv1.2,tlsv1.3",
            "server_tls_sslmode": "verify-full",
            "server_tls_ca_file": str(c.certs.ca_cert),
            "server_tls_protocols": "tlsv1.2,tlsv1.3",
            "server_login_retry": 1,
            # A client waiting for a server connection (pool size 1, or a failing auth_query
            # login) gets an error after 10 s instead of the default 120 s.
            "query_wait_timeout": 10,
            "log_connections": 0,
            "log_disconnections": 0,
        }
        if self.auth_dbname:
            settings["auth_dbname"] = c.server.dbname
        if self.prepared_statements:
            settings["max_prepared_statements"] = c.max_prepared_statements
        lines = [
            "[databases]",
            f"* = host={c.server.host} port={c.server.port}",
            "",
            "[pgbouncer]",
            *(f"{k} = {v}" for k, v in settings.items()),
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30) -> ServerInfo:
        """Write the configuration, start PgBouncer and wait until a TLS query passes it."""
        if self._proc is not None:
            raise ServerStartError("this PgBouncer is already running")
        self.workdir.mkdir(exist_ok=True)
        port = free_port()
        auth_file = self.workdir / "userlist.txt"
        # pgbouncer's auth_file format: "user" "password". The plain text is needed only for
        # auth_user: PgBouncer logs in with it to run auth_query. Other users' server logins
        # reuse the SCRAM keys of their own client login.
        write_private(auth_file, f'"{AUTH_USER}" "{self.config.auth_password.reveal()}"\n')
        ini = self.workdir / "pgbouncer.ini"
        write_private(ini, self._ini(port, auth_file))
        chown(self.run_as, self.workdir, auth_file, ini)
        run_as = self.run_as
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self._proc = subprocess.Popen(
            [str(self.exe), "-q", str(ini)],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal goes to us, not to it
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
        info = replace(self.config.server, port=port, backend="pgbouncer", workdir=self.workdir)
        tail = log_tail(self.logfile)
        deadline = time.monotonic() + timeout
        try:
            while self._proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(ServerStartError):
                    wait_ready(info, timeout=min(2.0, timeout), log_tail=tail)
                    break
            else:
                code = self._proc.poll()
                what = f"exited with {code}" if code is not None else f"not ready in {timeout} s"
                raise ServerStartError(f"PgBouncer {what}; its log:\n{tail()}")
        except BaseException:
            self.stop()
            raise
        return info

    def stop(self) -> None:
        """Stop PgBouncer at once (SIGTERM, then SIGKILL). Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
