"""Attacks on the connection layer against the real TLS + SCRAM server, for the sync and the
async client alike (the ``driver`` fixture)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

import tsaccess
from tests.helpers import untouched
from tsaccess.client.connection import secure_params

WEAK = ["disable", "allow", "prefer"]


@pytest.mark.parametrize("mode", WEAK)
def test_weak_sslmode_argument_refused_before_any_packet(tcp_trap, mode, driver):
    port, s = tcp_trap
    with pytest.raises(tsaccess.InsecureConnectionError, match=f"sslmode='{mode}' from argument"):
        driver.connect(host="127.0.0.1", port=port, user="x", password="pw", sslmode=mode)
    assert untouched(s)


def test_weak_sslmode_in_conninfo_and_uri_refused(tcp_trap, driver):
    port, s = tcp_trap
    with pytest.raises(tsaccess.InsecureConnectionError, match="connection string"):
        driver.connect(f"host=127.0.0.1 port={port} sslmode=prefer")
    with pytest.raises(tsaccess.InsecureConnectionError, match="connection string"):
        driver.connect(f"postgresql://u:secret@127.0.0.1:{port}/db?sslmode=disable")
    with pytest.raises(tsaccess.InsecureConnectionError):
        driver.create_pool(f"host=127.0.0.1 port={port}", sslmode="allow", open=True)
    assert untouched(s)


def test_weak_sslmode_from_environment_refused(tcp_trap, monkeypatch, driver):
    port, s = tcp_trap
    monkeypatch.setenv("PGSSLMODE", "disable")
    with pytest.raises(tsaccess.InsecureConnectionError, match="PGSSLMODE"):
        driver.connect(host="127.0.0.1", port=port)
    assert untouched(s)


def test_weak_sslmode_from_service_file_refused(tcp_trap, monkeypatch, tmp_path: Path, driver):
    port, s = tcp_trap
    f = tmp_path / "pg_service.conf"
    f.write_text(f"[evil]\nhost=127.0.0.1\nport={port}\nsslmode=disable\n")
    monkeypatch.setenv("PGSERVICEFILE", str(f))
    with pytest.raises(tsaccess.InsecureConnectionError, match="service file"):
        driver.connect("service=evil")
    monkeypatch.setenv("PGSERVICE", "evil")
    with pytest.raises(tsaccess.InsecureConnectionError, match="service file"):
        driver.connect()
    assert untouched(s)


def test_explicit_sslmode_beats_weaker_environment(db, monkeypatch, driver):
    """An explicit secure value wins, as in libpq, and the session really is encrypted."""
    monkeypatch.setenv("PGSSLMODE", "disable")
    with driver.connect(**db.params()) as conn:
        assert driver.tls_status(conn).ssl
        assert conn.pgconn.ssl_in_use


def test_default_is_encrypted_with_no_sslmode_anywhere(db, monkeypatch, driver):
    monkeypatch.delenv("PGSSLMODE", raising=False)
    params = db.params()
    params.pop("sslmode")
    with driver.connect(**params) as conn:  # sslrootcert given -> verify-full
        status = driver.tls_status(conn)
        assert status.ssl and status.version and status.version.startswith("TLS")
    assert secure_params(**params).sslmode == "verify-full"


def test_verify_full_rejects_wrong_host_name(db, driver):
    params = db.params(host="not-the-server.example", hostaddr="127.0.0.1")
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        driver.connect(**params)


def test_server_rejects_plain_tcp(db):
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(**{**db.params(), "sslmode": "disable", "sslrootcert": None})


def test_role_scoping_and_application_name(db, driver):
    pw = db.create_login("scoped_user")
    with db.admin(autocommit=True) as conn:
        conn.execute("CREATE ROLE readers NOLOGIN; GRANT readers TO scoped_user")
        conn.execute("CREATE ROLE others NOLOGIN")
    login = db.params(user="scoped_user", password=pw)
    with driver.connect(**login, role="readers") as conn:
        user, cur_role, app = conn.execute(
            "SELECT session_user, current_user, current_setting('application_name')"
        ).fetchone()
        assert (user, cur_role) == ("scoped_user", "readers")
        assert app == "tsaccess:scoped_user/readers"
        # pg_stat_ssl hides the session's fields from a role that is not the login user:
        # the report must still say encrypted (regression)
        hidden = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert hidden in (None, (None,))
        assert driver.tls_status(conn).ssl
    with pytest.raises(tsaccess.RoleScopeError, match="not a member of role 'others'"):
        driver.connect(**login, role="others")
    with pytest.raises(tsaccess.RoleScopeError, match="does not exist"):
        driver.connect(**login, role="Readers")


def test_pool_leaks_nothing_between_borrowers_under_8_threads(db, driver):
    pw = db.create_login("pool_user")
    with db.admin(autocommit=True) as conn:
        conn.execute(
            "CREATE ROLE pool_a NOLOGIN; CREATE ROLE pool_b NOLOGIN;"
            " GRANT pool_a, pool_b TO pool_user; CREATE SCHEMA side;"
            " GRANT USAGE, CREATE ON SCHEMA side TO pool_user"
        )
    errors: list[str] = []
    pool = driver.create_pool(
        **db.params(user="pool_user", password=pw), role="pool_a", min_size=2, max_size=3
    )

    def borrower(n: int) -> None:
        for i in range(40):
            with pool.connection() as conn:
                row = conn.execute(
                    "SELECT current_user, current_setting('search_path'),"
                    " current_setting('work_mem'), current_setting('application_name'),"
                    " (SELECT count(*) FROM pg_prepared_statements WHERE name !~ '^_pg3_'),"
                    " (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),"
                    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                    "   AND pid = pg_backend_pid()),"
                    " (SELECT count(*) FROM pg_listening_channels())"
                ).fetchone()
                expected = (
                    "pool_a",
                    '"$user", public',
                    "4MB",
                    "tsaccess:pool_user/pool_a",
                    0,
                    0,
                    0,
                    0,
                )
                if row != expected or conn.autocommit or conn.read_only:
                    errors.append(f"thread {n} round {i}: {row} autocommit={conn.autocommit}")
                conn.commit()
                # make a mess for the next borrower
                conn.execute("SET ROLE pool_b")
                conn.execute("SET search_path = side")
                conn.execute("SET work_mem = '64MB'")
                conn.execute("SELECT set_config('application_name', 'hijacked', false)")
                conn.execute(f"CREATE TEMP TABLE scratch_{n}_{i} (x int)")
                conn.execute(f"PREPARE mine_{n}_{i} AS SELECT 1")
                conn.execute("SELECT pg_try_advisory_lock(42 + %s)", (n,))
                conn.execute("LISTEN chan")
                conn.commit()
                for _ in range(6):  # auto-prepared: the reset deallocates it, psycopg agrees
                    conn.execute("SELECT %s::int", (i,))
                conn.commit()
                conn.autocommit = True
                conn.read_only = True

    threads = [threading.Thread(target=borrower, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.close()
    assert errors == []


def test_password_never_in_logs_repr_or_errors(db, caplog, driver):
    secret = "S3cr3t-Do-Not-Leak-9f8e7d"
    db.create_login("leaky", password=secret)
    caplog.set_level(logging.DEBUG, logger="tsaccess")
    texts: list[str] = []
    with capture_logs() as logs:
        conn = driver.connect(**db.params(user="leaky", password=secret))
        texts += [repr(conn), str(conn.info.dsn)]
        conn.close()
        pool = driver.create_pool(**db.params(user="leaky", password=secret), min_size=1)
        with pool.connection() as c:
            texts.append(repr(c))
        texts.append(repr(pool))
        pool.close()
        texts.append(repr(secure_params(**db.params(user="leaky", password=secret))))
        with pytest.raises(psycopg.OperationalError) as wrong:
            driver.connect(**db.params(user="leaky", password=secret + "x"))
        texts.append(str(wrong.value))
        with pytest.raises(tsaccess.InsecureConnectionError) as weak:
            driver.connect(f"postgresql://leaky:{secret}@127.0.0.1:1/x?sslmode=disable")
        texts.append(str(weak.value))
        with pytest.raises(tsaccess.TsaccessError) as bad:
            driver.connect(f"password={secret} host='unterminated")
        texts.append(str(bad.value))
    assert logs, "expected structlog events from connect()"
    texts += [str(e) for e in logs] + [r.getMessage() for r in caplog.records]
    assert all(secret not in t for t in texts), [t for t in texts if secret in t]
