"""A throwaway cluster: a primary, N streaming standbys and optionally PgBouncer.

Every node is a local ``initdb`` / ``pg_ctl`` server of :func:`find_installation` (TimescaleDB
preloaded when installed), listening on its own free port of 127.0.0.1 with TLS + SCRAM only.
Standbys are ``pg_basebackup -R`` copies of the primary with their own replication slot; they
stream over TLS (``sslmode=verify-full`` against the cluster CA) as a ``REPLICATION`` role whose
password sits in a 0600 passfile owned by the server's OS user. PgBouncer, when asked for, sits
in front of the primary in transaction mode with TLS on both sides.

All nodes share one CA, one server certificate (for ``127.0.0.1``, ``localhost`` and ``::1``)
and one admin password, so ``info.primary.params()``, ``info.standbys[0].params()`` and
``info.pgbouncer.params()`` differ only in the port.
"""

from __future__ import annotations

import contextlib
import pwd
import secrets
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from tsaccess._files import write_private
from tsaccess._log import get_logger
from tsaccess.client.connection import connect
from tsaccess.client.tls import CertificatePaths
from tsaccess.ephemeral import local
from tsaccess.ephemeral.base import ServerInfo, free_port, has_timescaledb, wait_ready
from tsaccess.ephemeral.install import PgInstallation, find_installation
from tsaccess.ephemeral.pgbouncer import (
    AUTH_USER,
    PgBouncer,
    PgBouncerConfig,
    create_auth_user,
    find_pgbouncer,
    install_auth_function,
)
from tsaccess.errors import ServerStartError
from tsaccess.passwords import Secret, scram_verifier

__all__ = ["REPLICATION_USER", "ClusterInfo", "EphemeralCluster"]

log = get_logger("tsaccess.ephemeral")

REPLICATION_USER = "tsaccess_replication"
"""The ``REPLICATION`` login role the standbys stream as."""

_PRIMARY_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "16",
    "max_replication_slots": "16",
    "hot_standby": "on",
    # A commit returns once its WAL is written (fsync stays off, so this costs next to nothing)
    # and the walsenders can ship it at once, as on a production primary. With the local
    # backend's "off", a commit's WAL waits up to wal_writer_delay before any standby sees it.
    "synchronous_commit": "on",
}
_STANDBY_SETTINGS = {
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    # The standby reports its replay position at least once a second, so the primary's
    # pg_stat_replication.replay_lsn is fresh enough to wait on (the default is 10 s).
    "wal_receiver_status_interval": "'1s'",
}


@dataclass(frozen=True)
class ClusterInfo:
    """How to reach the nodes of a running :class:`EphemeralCluster` as their administrator."""

    primary: ServerInfo
    standbys: tuple[ServerInfo, ...]
    """In order; ``standby_names[i]`` is the ``application_name`` of ``standbys[i]`` in the
    primary's ``pg_stat_replication``."""
    standby_names: tuple[str, ...]
    pgbouncer: ServerInfo | None = None
    """PgBouncer in front of the primary (same login, same CA, its own port), or None."""
    pgbouncer_version: str | None = None
    """``pgbouncer --version``, e.g. ``1.18.0``."""
    pgbouncer_prepared_statements: bool = False
    """Whether PgBouncer keeps protocol-level prepared statements (1.21+,
    ``max_prepared_statements``). Without it, give psycopg connections through PgBouncer
    ``conn.prepare_threshold = None``: in transaction mode a statement prepared on one server
    connection is missing (or already taken) on the next."""
    pgbouncer_auth_dbname: bool = False
    """Whether PgBouncer runs ``auth_query`` in ``postgres`` (1.20+, ``auth_dbname``). Without
    it the lookup runs in the client's database as ``pgbouncer_auth_user``: that database needs
    the lookup function (every database created from ``template1`` has it) and must let
    ``pgbouncer_auth_user`` connect."""
    pgbouncer_auth_user: str | None = None
    pool_mode: str = "transaction"
    default_pool_size: int = 1
    replication_user: str = REPLICATION_USER
    timescaledb: bool = False
    """True when every node has TimescaleDB available and preloaded."""
    workdir: Path | None = field(default=None, repr=False)

    @property
    def nodes(self) -> tuple[ServerInfo, ...]:
        """The primary, then the standbys (not PgBouncer)."""
        return (self.primary, *self.standbys)

    def multi_host_params(
        self, *, nodes: Sequence[ServerInfo] | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """libpq multi-host keyword arguments for :func:`tsaccess.connect` over all nodes.

        ``host`` and ``port`` list every node (primary first unless ``nodes`` says otherwise);
        pass ``target_session_attrs="read-write"`` (or ``"read-only"``, ``"prefer-standby"``,
        ``"standby"``, ``"primary"``) to choose, and ``load_balance_hosts="random"`` (libpq 16+)
        to shuffle.
        """
        chosen = tuple(nodes) if nodes is not None else self.nodes
        if not chosen:
            raise ValueError("multi_host_params needs at least one node")
        return self.primary.params(
            host=",".join(n.host for n in chosen),
            port=",".join(str(n.port) for n in chosen),
            **overrides,
        )

    def node_of_port(self, port: int) -> str:
        """``primary``, a standby name or ``pgbouncer`` for a port (e.g. ``conn.info.port``)."""
        if port == self.primary.port:
            return "primary"
        for name, standby in zip(self.standby_names, self.standbys, strict=True):
            if port == standby.port:
                return name
        if self.pgbouncer is not None and port == self.pgbouncer.port:
            return "pgbouncer"
        raise KeyError(f"no node of this cluster listens on port {port}")

    def prepare_pgbouncer_database(self, dbname: str) -> None:
        """Let PgBouncer log users in to ``dbname`` whatever its grants.

        Only needed without ``pgbouncer_auth_dbname`` (PgBouncer before 1.20), for a database
        that revokes ``CONNECT`` from ``PUBLIC`` or was not created from ``template1``: installs
        the lookup function there and grants ``CONNECT`` to ``pgbouncer_auth_user``.
        """

        if self.pgbouncer_auth_user is None:
            raise ValueError("this cluster has no PgBouncer")
        with connect(**self.primary.params(dbname=dbname), autocommit=True) as conn:
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(dbname), sql.Identifier(self.pgbouncer_auth_user)
                )
            )
            install_auth_function(conn)

    def current_lsn(self) -> str:
        """The primary's current WAL insert position (``pg_current_wal_insert_lsn()``): the end
        of every record already committed, flushed or not."""

        with connect(**self.primary.params(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_catalog.pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def wait_replayed(self, lsn: str | None = None, *, timeout: float = 30) -> str:
        """Wait until every standby has replayed ``lsn`` (default: the primary's current LSN).

        Asks each standby for ``pg_last_wal_replay_lsn()``, so after it returns a read on any
        standby sees everything committed on the primary before ``lsn``.

        Returns:
            the LSN waited for.

        Raises:
            TimeoutError: a standby had not replayed it within ``timeout`` seconds.
        """

        target = lsn or self.current_lsn()
        deadline = time.monotonic() + timeout
        for name, standby in zip(self.standby_names, self.standbys, strict=True):
            with connect(**standby.params(), autocommit=True) as conn:
                while True:
                    row = conn.execute(
                        "SELECT pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn, "
                        "pg_catalog.pg_last_wal_replay_lsn()::text",
                        (target,),
                    ).fetchone()
                    assert row is not None
                    if row[0]:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"standby {name} (port {standby.port}) replayed up to {row[1]}, "
                            f"not {target}, within {timeout} s"
                        )
                    time.sleep(0.02)
        return target

    def replication(self) -> list[dict[str, Any]]:
        """The primary's ``pg_stat_replication`` joined with ``pg_stat_ssl``, one dict a row
        (``application_name``, ``state``, ``replay_lsn``, ``ssl``, ...)."""

        with (
            connect(**self.primary.params(), autocommit=True) as conn,
            conn.cursor(row_factory=psycopg.rows.dict_row) as cur,
        ):
            return cur.execute(
                "SELECT r.pid, r.usename::text, r.application_name, r.client_addr::text,"
                " r.state, r.sent_lsn::text, r.replay_lsn::text, r.sync_state,"
                " s.ssl, s.version AS ssl_version"
                " FROM pg_catalog.pg_stat_replication r"
                " LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = r.pid"
                " ORDER BY r.application_name"
            ).fetchall()


class EphemeralCluster:
    """Start a throwaway primary with ``standbys`` streaming standbys (and PgBouncer).

    Use as a context manager (``with EphemeralCluster(standbys=2) as cluster:``) or call
    :meth:`start` / :meth:`stop`. Everything is stopped and deleted on exit, after an
    exception, on :meth:`stop` and at interpreter exit (unless ``keep``).

    Args:
        standbys: how many physical streaming standbys (0 is allowed).
        pgbouncer: start PgBouncer in front of the primary.
        pool_mode: PgBouncer's ``pool_mode``.
        default_pool_size: server connections per (database, user) pair; 1 makes two clients
            share one server connection, transaction by transaction.
        max_prepared_statements: PgBouncer 1.21+ only.
        keep: leave everything running on :meth:`stop` (for a demo's ``--keep``).
    """

    def __init__(
        self,
        standbys: int = 2,
        *,
        pgbouncer: bool = True,
        pool_mode: str = "transaction",
        default_pool_size: int = 1,
        max_prepared_statements: int = 100,
        keep: bool = False,
    ) -> None:
        if standbys < 0:
            raise ValueError("standbys must be 0 or more")
        if default_pool_size < 1:
            raise ValueError("default_pool_size must be 1 or more")
        self._standbys = standbys
        self._pgbouncer = pgbouncer
        self._pool_mode = pool_mode
        self._pool_size = default_pool_size
        self._max_prepared = max_prepared_statements
        self.keep = keep
        self.info: ClusterInfo | None = None
        self._cleanup: weakref.finalize[Any, EphemeralCluster] | None = None

    def __repr__(self) -> str:
        if self.info is None:
            return "<EphemeralCluster stopped>"
        ports = ",".join(str(n.port) for n in self.info.nodes)
        bouncer = f" pgbouncer {self.info.pgbouncer.port}" if self.info.pgbouncer else ""
        return f"<EphemeralCluster nodes on 127.0.0.1:{ports}{bouncer}>"

    def __enter__(self) -> ClusterInfo:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> ClusterInfo:
        """Start every node and wait until each standby streams and PgBouncer answers."""
        if self.info is not None:
            return self.info
        t0 = time.perf_counter()
        inst = find_installation()
        run_as = local.unprivileged_user()
        workdir = Path(tempfile.mkdtemp(prefix="tsaccess-cluster-"))
        stoppers: list[Callable[[], None]] = []
        self._cleanup = weakref.finalize(self, _stop_all, stoppers, workdir)
        try:
            self.info = _start(self, inst, workdir, run_as, stoppers)
        except BaseException:
            self.stop()
            raise
        log.info(
            "cluster ready",
            standbys=len(self.info.standbys),
            ports=[n.port for n in self.info.nodes],
            pgbouncer_port=self.info.pgbouncer.port if self.info.pgbouncer else None,
            pgbouncer_version=self.info.pgbouncer_version,
            timescaledb=self.info.timescaledb,
            seconds=round(time.perf_counter() - t0, 3),
        )
        return self.info

    def stop(self) -> None:
        """Stop PgBouncer and every node, then delete the files (unless ``keep``)."""
        if self._cleanup is not None:
            if self.keep:
                self._cleanup.detach()
            else:
                self._cleanup()
        self._cleanup = None
        self.info = None


def _stop_all(stoppers: list[Callable[[], None]], workdir: Path) -> None:
    for stop in reversed(stoppers):  # PgBouncer, then standbys, then the primary
        with contextlib.suppress(Exception):
            stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _admin(info: ServerInfo, **overrides: Any) -> psycopg.Connection[Any]:

    return connect(**info.params(**overrides), autocommit=True)


def _start(
    cluster: EphemeralCluster,
    inst: PgInstallation,
    workdir: Path,
    run_as: pwd.struct_passwd | None,
    stoppers: list[Callable[[], None]],
) -> ClusterInfo:
    if cluster._pgbouncer:
        find_pgbouncer()  # fail before starting anything when it is not installed
    local.chown(run_as, workdir)
    certs = local.make_certificates(workdir, run_as)
    repl_password = Secret(secrets.token_urlsafe(24))

    primary_dir = workdir / "primary"
    primary_dir.mkdir()
    stoppers.append(lambda: local.stop_node(inst.bindir, primary_dir / "data", run_as, primary_dir))
    primary = local.init_and_start(
        inst,
        primary_dir,
        run_as,
        certs,
        hba_lines=[f"hostssl replication {REPLICATION_USER} 127.0.0.1/32 scram-sha-256"],
        settings=_PRIMARY_SETTINGS,
        backend="local-primary",
    )
    bouncer_password = Secret(secrets.token_urlsafe(24)) if cluster._pgbouncer else None
    with _admin(primary) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(REPLICATION_USER), sql.Literal(scram_verifier(repl_password))
            )
        )
        if bouncer_password is not None:
            create_auth_user(conn, bouncer_password)
    if bouncer_password is not None:
        for db in ("postgres", "template1"):
            with _admin(primary, dbname=db) as conn:
                install_auth_function(conn)

    # libpq's passfile for the walreceivers and pg_basebackup: readable by the server's OS
    # user only. "replication" is the database name libpq matches for replication connections.
    passfile = workdir / "replication.pgpass"
    write_private(
        passfile,
        f"{primary.host}:{primary.port}:replication:{REPLICATION_USER}:{repl_password.reveal()}\n",
    )
    local.chown(run_as, passfile)

    names = tuple(f"standby{i}" for i in range(1, cluster._standbys + 1))
    standbys = [
        _start_standby(inst, workdir, run_as, certs, primary, passfile, name, stoppers)
        for name in names
    ]
    _wait_streaming(primary, names, timeout=30)

    bouncer_info: ServerInfo | None = None
    bouncer: PgBouncer | None = None
    if bouncer_password is not None:
        bouncer = PgBouncer(
            PgBouncerConfig(
                server=primary,
                certs=certs,
                auth_password=bouncer_password,
                pool_mode=cluster._pool_mode,
                default_pool_size=cluster._pool_size,
                max_prepared_statements=cluster._max_prepared,
            ),
            workdir / "pgbouncer",
            run_as,
        )
        stoppers.append(bouncer.stop)
        bouncer_info = bouncer.start()

    has_ts = all(has_timescaledb(n) for n in (primary, *standbys))
    primary = replace(primary, timescaledb=has_ts)
    return ClusterInfo(
        primary=primary,
        standbys=tuple(replace(s, timescaledb=has_ts) for s in standbys),
        standby_names=names,
        pgbouncer=replace(bouncer_info, timescaledb=has_ts) if bouncer_info else None,
        pgbouncer_version=bouncer.version if bouncer else None,
        pgbouncer_prepared_statements=bouncer.prepared_statements if bouncer else False,
        pgbouncer_auth_dbname=bouncer.auth_dbname if bouncer else False,
        pgbouncer_auth_user=AUTH_USER if bouncer else None,
        pool_mode=cluster._pool_mode,
        default_pool_size=cluster._pool_size,
        timescaledb=has_ts,
        workdir=workdir,
    )


def _start_standby(
    inst: PgInstallation,
    workdir: Path,
    run_as: pwd.struct_passwd | None,
    certs: CertificatePaths,
    primary: ServerInfo,
    passfile: Path,
    name: str,
    stoppers: list[Callable[[], None]],
) -> ServerInfo:
    node_dir = workdir / name
    node_dir.mkdir()
    sock = node_dir / "socket"
    sock.mkdir()
    local.chown(run_as, node_dir, sock)
    data = node_dir / "data"
    conninfo = psycopg.conninfo.make_conninfo(
        host=primary.host,
        port=primary.port,
        user=REPLICATION_USER,
        passfile=str(passfile),
        sslmode="verify-full",
        sslrootcert=str(certs.ca_cert),
        channel_binding="require",  # SCRAM-SHA-256-PLUS: the login is tied to the certificate
        application_name=name,
    )
    cmd = [str(inst.bindir / "pg_basebackup"), "-d", conninfo, "-D", str(data)]
    cmd += ["-R", "-X", "stream", "-c", "fast", "-C", "-S", name, "--no-sync", "-w"]
    res = local._run(cmd, run_as, node_dir)
    if res.returncode != 0:
        raise ServerStartError(
            f"pg_basebackup for {name} failed (exit {res.returncode}): {res.stderr.strip()[-1500:]}"
        )
    stoppers.append(lambda: local.stop_node(inst.bindir, data, run_as, node_dir))
    port = free_port()
    local.append_settings(
        data,
        {"port": str(port), "unix_socket_directories": f"'{sock}'", **_STANDBY_SETTINGS},
        f"tsaccess throwaway cluster: {name}",
    )
    logfile = node_dir / "server.log"
    local.pg_ctl_start(inst.bindir, data, logfile, run_as, node_dir)
    info = replace(primary, port=port, backend="local-standby", workdir=node_dir)
    tail = local.log_tail(logfile)
    wait_ready(info, timeout=30, log_tail=tail)
    with _admin(info) as conn:
        row = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
    if not (row and row[0]):
        raise ServerStartError(f"{name} (port {port}) is not in recovery; its log:\n{tail()}")
    return info


def _wait_streaming(primary: ServerInfo, names: Sequence[str], timeout: float) -> None:
    """Wait until the primary's pg_stat_replication shows each of ``names`` streaming."""
    if not names:
        return
    deadline = time.monotonic() + timeout
    with _admin(primary) as conn:
        while True:
            rows = conn.execute(
                "SELECT application_name FROM pg_catalog.pg_stat_replication"
                " WHERE state = 'streaming'"
            ).fetchall()
            missing = set(names) - {r[0] for r in rows}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"standbys {', '.join(sorted(missing))} not streaming from the primary "
                    f"within {timeout:.0f} s (see their server.log)"
                )
            time.sleep(0.05)
