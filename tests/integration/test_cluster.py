"""The throwaway cluster: a primary, two streaming standbys over TLS, PgBouncer in front.

One cluster for the whole module (``default_pool_size=1``, so two PgBouncer clients share one
server connection). Tests that touch shared state use their own table or role names.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from structlog.testing import capture_logs

import tsaccess
from tests.fix_server import skip_or_fail
from tsaccess.ephemeral import ClusterInfo, EphemeralCluster, ServerInfo
from tsaccess.ephemeral import pgbouncer as pgbouncer_module


@pytest.fixture
def timescaledb(cluster: ClusterInfo) -> None:
    """Overrides the session server's fixture: these tests need TimescaleDB on the cluster."""
    if not cluster.timescaledb:
        skip_or_fail(
            f"TimescaleDB is not preloaded on the throwaway cluster ({cluster.primary.installation})",
            "TSACCESS_REQUIRE_TIMESCALEDB",
        )


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def _admin(info: ServerInfo, **kw: Any) -> tsaccess.TsConnection:
    return tsaccess.connect(**info.params(), autocommit=True, **kw)


# --- replication --------------------------------------------------------------------------


def test_standbys_are_in_recovery(cluster: ClusterInfo) -> None:
    assert len(cluster.standbys) == 2
    assert len({n.port for n in cluster.nodes}) == 3
    with _admin(cluster.primary) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    for standby in cluster.standbys:
        with _admin(standby) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            assert tsaccess.tls_status(conn).ssl


def test_replication_streams_over_tls(cluster: ClusterInfo) -> None:
    rows = cluster.replication()
    assert [r["application_name"] for r in rows] == list(cluster.standby_names)
    for r in rows:
        assert r["state"] == "streaming"
        assert r["usename"] == cluster.replication_user
        assert r["client_addr"] == "127.0.0.1/32"
        assert r["ssl"] is True, f"walsender {r['pid']} is not encrypted: {r}"
    with _admin(cluster.primary) as conn:
        (n_ssl,) = conn.execute(
            "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE s.ssl"
        ).fetchone() or (0,)
    assert n_ssl == 2


def test_replication_password_stays_out_of_the_config(cluster: ClusterInfo) -> None:
    for standby in cluster.standbys:
        with _admin(standby) as conn:
            (conninfo,) = conn.execute("SHOW primary_conninfo").fetchone() or ("",)
        assert "password" not in conninfo
        assert "sslmode=verify-full" in conninfo.replace("'", "")
        assert "channel_binding=require" in conninfo
    assert cluster.workdir is not None
    passfile = cluster.workdir / "replication.pgpass"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    if os.geteuid() == 0:
        assert passfile.stat().st_uid != 0  # the server's OS user, not root
    for info in (*cluster.nodes, cluster.pgbouncer):
        assert info is not None
        assert info.password not in repr(cluster)
        assert info.password not in repr(info)


def test_table_created_on_primary_is_readable_on_each_standby(cluster: ClusterInfo) -> None:
    table = _name("repl")
    with _admin(cluster.primary) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(sql.Identifier(table))
        )
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g, 'v' || g FROM generate_series(1, 100) g").format(
                sql.Identifier(table)
            )
        )
    lsn = cluster.wait_replayed(timeout=15)
    assert lsn
    for standby in cluster.standbys:
        with _admin(standby) as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*), max(v) FROM {}").format(sql.Identifier(table))
            ).fetchone()
        assert row == (100, "v99")


def test_primary_sees_replay_within_the_status_interval(cluster: ClusterInfo) -> None:
    """pg_stat_replication.replay_lsn (what ``apply --wait-replicas`` will watch) catches up
    within a couple of seconds: the standbys report every second."""
    with _admin(cluster.primary) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(_name("lsn"))))
        (lsn,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone() or ("",)
        deadline = time.monotonic() + 5
        while True:
            (behind,) = conn.execute(
                "SELECT count(*) FILTER (WHERE replay_lsn IS NULL OR replay_lsn < %s::pg_lsn)"
                " + 2 - count(*) FROM pg_stat_replication",
                (lsn,),
            ).fetchone() or (2,)
            if behind == 0:
                break
            assert time.monotonic() < deadline, "pg_stat_replication never showed the replay"
            time.sleep(0.05)


def test_standbys_refuse_writes(cluster: ClusterInfo) -> None:
    for standby in cluster.standbys:
        with _admin(standby) as conn:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE TABLE must_fail (x int)")
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE ROLE must_fail")


def test_wait_replayed_times_out_with_a_clear_message(cluster: ClusterInfo) -> None:
    with pytest.raises(TimeoutError, match="standby1"):
        cluster.wait_replayed("FFFF/FFFFFFFF", timeout=0.2)


@pytest.mark.timescaledb
def test_timescaledb_hypertable_is_usable_on_standbys(cluster: ClusterInfo) -> None:
    table = _name("metrics")
    ident = sql.Identifier(table)
    with _admin(cluster.primary) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute(sql.SQL("CREATE TABLE {} (ts timestamptz NOT NULL, v float8)").format(ident))
        conn.execute("SELECT create_hypertable(%s, 'ts')", (table,))
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT t, 1 FROM generate_series("
                "'2024-01-01'::timestamptz, '2024-01-20', '1 hour') t"
            ).format(ident)
        )
    cluster.wait_replayed(timeout=15)
    for standby in cluster.standbys:
        with _admin(standby) as conn:
            (preload,) = conn.execute("SHOW shared_preload_libraries").fetchone() or ("",)
            assert "timescaledb" in preload
            rows = conn.execute(
                sql.SQL(
                    "SELECT time_bucket('1 week', ts) AS w, count(*) FROM {} GROUP BY w ORDER BY w"
                ).format(ident)
            ).fetchall()
            assert sum(n for _, n in rows) == 19 * 24 + 1
            (chunks,) = conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = %s",
                (table,),
            ).fetchone() or (0,)
            assert chunks >= 3


# --- multi-host parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "want_standby"),
    [("read-write", False), ("primary", False), ("read-only", True), ("prefer-standby", True)],
)
def test_target_session_attrs_choose_the_node(
    cluster: ClusterInfo, attrs: str, want_standby: bool
) -> None:
    params = cluster.multi_host_params(target_session_attrs=attrs)
    assert params["host"] == "127.0.0.1,127.0.0.1,127.0.0.1"
    with tsaccess.connect(**params, autocommit=True) as conn:
        (in_recovery,) = conn.execute("SELECT pg_is_in_recovery()").fetchone() or (None,)
        node = cluster.node_of_port(int(conn.info.port))
        assert tsaccess.tls_status(conn).ssl
    assert in_recovery is want_standby
    assert (node in cluster.standby_names) is want_standby


def test_multi_host_params_fall_through_to_a_standby(cluster: ClusterInfo) -> None:
    """With the primary listed first, ``standby`` skips it."""
    params = cluster.multi_host_params(target_session_attrs="standby")
    with tsaccess.connect(**params) as conn:
        assert cluster.node_of_port(int(conn.info.port)) == "standby1"


# --- PgBouncer ----------------------------------------------------------------------------


def _bouncer(cluster: ClusterInfo) -> ServerInfo:
    assert cluster.pgbouncer is not None
    return cluster.pgbouncer


def test_pgbouncer_serves_tls_both_ways(cluster: ClusterInfo) -> None:
    assert cluster.pgbouncer_version
    bouncer = _bouncer(cluster)
    with tsaccess.connect(**bouncer.params(), autocommit=True) as conn:
        conn.prepare_threshold = None
        assert conn.pgconn.ssl_in_use  # client to PgBouncer
        status = tsaccess.tls_status(conn)  # PgBouncer to the server, as the server sees it
        assert status.ssl
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        (server_port,) = conn.execute("SELECT inet_server_port()").fetchone() or (0,)
        assert conn.info.port == bouncer.port
    assert server_port == cluster.primary.port


def test_pgbouncer_refuses_plain_tcp(cluster: ClusterInfo) -> None:
    bouncer = _bouncer(cluster)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host=bouncer.host,
            port=bouncer.port,
            user=bouncer.user,
            password=bouncer.password,
            dbname=bouncer.dbname,
            sslmode="disable",
            connect_timeout=5,
        )


def test_role_created_after_startup_logs_in_through_pgbouncer(cluster: ClusterInfo) -> None:
    user, password = _name("late_user"), secrets.token_urlsafe(16)
    with _admin(cluster.primary) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)
            )
        )
    try:
        bouncer = _bouncer(cluster)
        with tsaccess.connect(**bouncer.params(user=user, password=password)) as conn:
            conn.prepare_threshold = None
            assert conn.execute("SELECT current_user").fetchone() == (user,)
        with pytest.raises(psycopg.OperationalError):
            tsaccess.connect(**bouncer.params(user=user, password=password + "x"))
    finally:
        with _admin(cluster.primary) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))


def test_database_revoking_connect_from_public_can_be_prepared(cluster: ClusterInfo) -> None:
    db, user, password = _name("locked_db"), _name("locked_user"), secrets.token_urlsafe(16)
    with _admin(cluster.primary) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db))
        )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(db), sql.Identifier(user)
            )
        )
    try:
        cluster.prepare_pgbouncer_database(db)
        params = _bouncer(cluster).params(user=user, password=password, dbname=db)
        with tsaccess.connect(**params) as conn:
            conn.prepare_threshold = None
            assert conn.execute("SELECT current_database()").fetchone() == (db,)
    finally:
        with _admin(cluster.primary) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))


def test_pool_size_one_shares_one_server_backend(cluster: ClusterInfo) -> None:
    assert cluster.default_pool_size == 1 and cluster.pool_mode == "transaction"
    bouncer = _bouncer(cluster)
    with (
        tsaccess.connect(**bouncer.params(application_name="a")) as a,
        tsaccess.connect(**bouncer.params(application_name="b")) as b,
    ):
        pids = []
        for conn in (a, b, a, b):
            conn.prepare_threshold = None
            with conn.transaction():
                (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone() or (0,)
                pids.append(pid)
    assert len(set(pids)) == 1, pids


def test_no_secret_in_logs_or_configuration(cluster: ClusterInfo) -> None:
    assert cluster.workdir is not None and cluster.pgbouncer is not None
    assert cluster.pgbouncer.workdir is not None
    repl_line = (cluster.workdir / "replication.pgpass").read_text().strip()
    auth_line = (cluster.pgbouncer.workdir / "userlist.txt").read_text().strip()
    secrets_ = {
        cluster.primary.password,
        repl_line.rsplit(":", 1)[1],
        auth_line.split(" ", 1)[1].strip('"'),
    }
    assert all(len(s) >= 20 for s in secrets_)
    files = [
        *cluster.workdir.glob("*/server.log"),
        *cluster.workdir.glob("*/data/postgresql*.conf"),
        *cluster.workdir.glob("*/data/log/*"),
        cluster.pgbouncer.workdir / "pgbouncer.log",
        cluster.pgbouncer.workdir / "pgbouncer.ini",
    ]
    assert len(files) >= 8
    for path in files:
        text = path.read_text(errors="replace")
        for secret in secrets_:
            assert secret not in text, f"a password is in {path}"


def test_pgbouncer_files_are_private(cluster: ClusterInfo) -> None:
    bouncer = _bouncer(cluster)
    assert bouncer.workdir is not None
    for name in ("userlist.txt", "pgbouncer.ini"):
        assert stat.S_IMODE((bouncer.workdir / name).stat().st_mode) == 0o600
    log = (bouncer.workdir / "pgbouncer.log").read_text()
    assert bouncer.password not in log


# --- life cycle (their own small clusters) ------------------------------------------------


def test_everything_is_stopped_and_deleted_after_an_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tsaccess")
    c = EphemeralCluster(standbys=1, pgbouncer=True)
    workdir: Path | None = None
    bouncer_pid = 0
    with (
        capture_logs() as logs,
        pytest.raises(RuntimeError, match="boom"),
        c as info,
    ):
        workdir = info.workdir
        assert info.pgbouncer is not None and info.pgbouncer.workdir is not None
        bouncer_pid = int((info.pgbouncer.workdir / "pgbouncer.pid").read_text())
        raise RuntimeError("boom")
    assert workdir is not None and not workdir.exists()
    ready = [e for e in logs if e["event"] == "cluster ready"]
    assert len(ready) == 1 and ready[0]["standbys"] == 1
    assert info.primary.password not in repr(logs)
    assert c.info is None
    with pytest.raises(ProcessLookupError):
        os.kill(bouncer_pid, 0)
    for node in (info.primary, info.standbys[0]):
        with pytest.raises(psycopg.OperationalError):
            tsaccess.connect(**node.params(connect_timeout=2))


def test_missing_pgbouncer_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(pgbouncer_module, "_DEBIAN_PATH", tmp_path / "pgbouncer")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(tsaccess.ServerStartError, match="apt-get install pgbouncer"):
        EphemeralCluster(standbys=0, pgbouncer=True).start()
    assert list(tmp_path.iterdir()) == []  # nothing was started, nothing left behind
