""" "TLS only, refused before a packet is sent": every path that would not be TLS, tried, with the
sync and the async client (the ``driver`` fixture)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

import tsaccess
from tests.helpers import untouched
from tsaccess.ephemeral.base import free_port
from tsaccess.ephemeral.install import find_installation
from tsaccess.ephemeral.local import (
    _run,
    append_settings,
    chown,
    hba_text,
    pg_ctl_start,
    stop_node,
    unprivileged_user,
)

PORT = 5499


@pytest.fixture
def socket_trap() -> Iterator[tuple[str, socket.socket]]:
    """A Unix-domain socket where libpq would look for a server on port PORT in a temporary
    directory; it records whether anything connected."""
    d = tempfile.mkdtemp(prefix="tsaccess-sock-", dir="/tmp")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(f"{d}/.s.PGSQL.{PORT}")
    s.listen(8)
    s.setblocking(False)
    yield d, s
    s.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def no_pg_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for k in ("PGHOST", "PGHOSTADDR", "PGPORT", "PGSERVICE", "PGSERVICEFILE", "PGSSLMODE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PGSYSCONFDIR", str(tmp_path / "none"))
    return monkeypatch


def test_unix_socket_hosts_refused_before_any_packet(
    socket_trap, tcp_trap, no_pg_env, tmp_path, driver
):
    d, trap = socket_trap
    tcp_port, tcp = tcp_trap
    login = {"user": "u", "password": "pw", "dbname": "x"}
    fix = "give host=<the server's name or IP address>"
    attempts = {
        "argument host": lambda: driver.connect(host=d, port=PORT, **login),
        "connection string": lambda: driver.connect(f"host={d} port={PORT} user=u"),
        "URI %2F": lambda: driver.connect(f"postgresql://u:pw@{quote(d, safe='')}:{PORT}/x"),
        "host list": lambda: driver.connect(
            host=f"{d},127.0.0.1", port=f"{PORT},{tcp_port}", **login
        ),
        "pool": lambda: driver.create_pool(host=d, port=PORT, **login, timeout=5),
    }
    for what, attempt in attempts.items():
        with pytest.raises(tsaccess.InsecureConnectionError, match="Unix-domain socket") as err:
            attempt()
        assert d in str(err.value) and fix in str(err.value), what
    service = tmp_path / "pg_service.conf"
    service.write_text(f"[sock]\nhost={d}\nport={PORT}\nsslmode=require\n")
    no_pg_env.setenv("PGSERVICEFILE", str(service))
    with pytest.raises(tsaccess.InsecureConnectionError, match="service file"):
        driver.connect("service=sock", **login)
    no_pg_env.delenv("PGSERVICEFILE")
    no_pg_env.setenv("PGHOST", d)
    no_pg_env.setenv("PGPORT", str(PORT))
    with pytest.raises(tsaccess.InsecureConnectionError, match="environment variable PGHOST"):
        driver.connect(**login)
    no_pg_env.delenv("PGHOST")
    # no host anywhere: libpq's default is its socket directory
    with pytest.raises(tsaccess.InsecureConnectionError, match="no host given"):
        driver.connect(port=PORT, **login)
    assert untouched(trap) and untouched(tcp)


@pytest.mark.filterwarnings("ignore::tsaccess.UnverifiedServerWarning")  # no root cert: on purpose
def test_libpq_s_reading_refused_before_any_packet(
    socket_trap, tcp_trap, no_pg_env, tmp_path, driver
):
    """What libpq really uses, not what a looser reading suggests: an explicitly empty host is
    its default socket (PGHOST is not read), a service file's first value wins, there is no
    [DEFAULT] section, a line it cannot parse is refused, service='' is the section []."""
    d, trap = socket_trap
    tcp_port, tcp = tcp_trap
    login = {"user": "u", "password": "pw", "dbname": "x", "connect_timeout": 2}
    no_pg_env.setenv("PGHOST", "127.0.0.1")
    with pytest.raises(tsaccess.InsecureConnectionError, match=r"empty host .* argument host"):
        driver.connect(host="", port=tcp_port, **login)
    with pytest.raises(tsaccess.InsecureConnectionError, match=r"empty host .* connection str"):
        driver.connect(f"postgresql://u:pw@:{tcp_port}/x?host=&connect_timeout=2")
    service = tmp_path / "pg_service.conf"
    service.write_text(
        f"[dup]\nhost={d}\nhost=127.0.0.1\nport={PORT}\n"
        f"[DEFAULT]\nhost=127.0.0.1\nsslmode=require\n[def]\nport={PORT}\n"
        f"[colon]\nhost:127.0.0.1\nport={PORT}\n"
        f"[]\nhost={d}\nport={PORT}\n"
        f"[s]\nhost=127.0.0.1\nport={tcp_port}\n"
    )
    no_pg_env.setenv("PGSERVICEFILE", str(service))
    with pytest.raises(tsaccess.InsecureConnectionError, match=f"host='{d}' from service file"):
        driver.connect(service="dup", **login)
    no_pg_env.setenv("PGHOST", d)  # what libpq uses when [DEFAULT] is not inherited
    with pytest.raises(tsaccess.InsecureConnectionError, match="environment variable PGHOST"):
        driver.connect(service="def", **login)
    with pytest.raises(tsaccess.InsecureConnectionError, match=f"{service}, line 11: not .keyw"):
        driver.connect(service="colon", **login)
    no_pg_env.setenv("PGSERVICE", "s")
    with pytest.raises(tsaccess.InsecureConnectionError, match=f"host='{d}' from service file"):
        driver.connect(service="", **login)
    assert untouched(trap) and untouched(tcp)
    # psycopg splits PGHOST's list itself and never reads the service file: the service's host
    # (checked, TCP) must be the one used, not PGHOST's sockets
    no_pg_env.setenv("PGHOST", f"{d},{d}")
    with pytest.raises((psycopg.OperationalError, tsaccess.TsaccessError)) as err:
        driver.connect(service="s", **login)
    assert not isinstance(err.value, tsaccess.InsecureConnectionError), err.value
    assert untouched(trap) and not untouched(tcp)


def test_real_server_socket_is_refused_without_a_login(pg_server, db, driver):
    """The test server accepts SCRAM logins on its socket (``local ... scram-sha-256``):
    tsaccess must not even try."""
    if pg_server.workdir is None or not (pg_server.workdir / "socket").is_dir():
        pytest.skip("the server's socket directory is not on this machine")
    params = db.params(host=str(pg_server.workdir / "socket"))
    with pytest.raises(tsaccess.InsecureConnectionError, match="Unix-domain socket"):
        driver.connect(**params)
    # hostaddr makes it TCP (the host name is then only checked against the certificate)
    with driver.connect(**db.params(host="localhost", hostaddr="127.0.0.1")) as conn:
        assert driver.tls_status(conn).ssl


def test_sslkeylogfile_refused_from_every_source(db, tcp_trap, no_pg_env, tmp_path, driver):
    port, trap = tcp_trap
    keys = tmp_path / "keys.log"
    with pytest.raises(tsaccess.InsecureConnectionError, match="sslkeylogfile from argument"):
        driver.connect(**db.params(sslkeylogfile=str(keys)))
    with pytest.raises(tsaccess.InsecureConnectionError, match="connection string"):
        driver.connect(f"host=127.0.0.1 port={port} sslkeylogfile={keys}")
    with pytest.raises(tsaccess.InsecureConnectionError, match="sslkeylogfile"):
        driver.connect(f"postgresql://u@127.0.0.1:{port}/x?sslkeylogfile={quote(str(keys))}")
    with pytest.raises(tsaccess.InsecureConnectionError, match="sslkeylogfile"):
        driver.create_pool(**db.params(sslkeylogfile=str(keys)))
    service = tmp_path / "svc"
    service.write_text(f"[k]\nhost=127.0.0.1\nport={port}\nsslkeylogfile={keys}\n")
    no_pg_env.setenv("PGSERVICEFILE", str(service))
    with pytest.raises(tsaccess.InsecureConnectionError, match="service file"):
        driver.connect("service=k")
    assert not keys.exists()
    assert untouched(trap)


def test_tls_below_1_2_refused_and_1_2_made_explicit(db, tcp_trap, no_pg_env, tmp_path, driver):
    port, trap = tcp_trap
    with pytest.raises(tsaccess.InsecureConnectionError, match="ssl_min_protocol_version='TLSv1'"):
        driver.connect(**db.params(ssl_min_protocol_version="TLSv1"))
    with pytest.raises(tsaccess.InsecureConnectionError, match="ssl_max_protocol_version"):
        driver.connect(f"host=127.0.0.1 port={port} ssl_max_protocol_version=TLSv1.1")
    service = tmp_path / "svc"
    service.write_text(f"[old]\nhost=127.0.0.1\nport={port}\nssl_min_protocol_version=TLSv1.1\n")
    no_pg_env.setenv("PGSERVICEFILE", str(service))
    with pytest.raises(tsaccess.InsecureConnectionError, match="service file"):
        driver.connect("service=old")
    no_pg_env.setenv("PGSSLMINPROTOCOLVERSION", "TLSv1")
    with pytest.raises(tsaccess.InsecureConnectionError, match="PGSSLMINPROTOCOLVERSION"):
        driver.connect(host="127.0.0.1", port=port)
    assert untouched(trap)
    no_pg_env.delenv("PGSSLMINPROTOCOLVERSION")
    with driver.connect(**db.params()) as conn:
        assert conn.pgconn.info  # libpq's view of the options it used
        used = {o.keyword: o.val for o in conn.pgconn.info}
        assert used[b"ssl_min_protocol_version"] == b"TLSv1.2"
        assert driver.tls_status(conn).version in ("TLSv1.2", "TLSv1.3")
    with driver.connect(**db.params(ssl_min_protocol_version="TLSv1.3")) as conn:
        assert driver.tls_status(conn).version == "TLSv1.3"


def test_requiressl_0_is_refused_by_name(tcp_trap, no_pg_env, tmp_path, driver):
    port, trap = tcp_trap
    base = {"host": "127.0.0.1", "port": port, "user": "u"}
    attempts = [
        lambda: driver.connect(f"host=127.0.0.1 port={port} requiressl=0"),
        lambda: driver.connect(f"postgresql://u@127.0.0.1:{port}/x?requiressl=0"),
        lambda: driver.connect(**base, requiressl="0"),
        # libpq applies sslmode and requiressl in the order given: refused either way
        lambda: driver.connect(**base, sslmode="require", requiressl="0"),
    ]
    for attempt in attempts:
        with pytest.raises(tsaccess.InsecureConnectionError, match="requiressl=0") as err:
            attempt()
        assert "sslmode='prefer' from connection string" not in str(err.value)
    service = tmp_path / "svc"
    service.write_text(f"[r]\nhost=127.0.0.1\nport={port}\nrequiressl=0\n")
    no_pg_env.setenv("PGSERVICEFILE", str(service))
    # requiressl is no keyword of a service file: libpq calls the line a syntax error
    with pytest.raises(tsaccess.InsecureConnectionError, match="line 4: 'requiressl'"):
        driver.connect("service=r")
    assert untouched(trap)


@pytest.fixture(scope="module")
def plain_server() -> Iterator[int]:
    """A real PostgreSQL server with ``ssl = off`` on 127.0.0.1 (port returned)."""
    try:
        inst = find_installation()
    except tsaccess.ServerStartError as exc:
        pytest.skip(f"no local PostgreSQL installation: {exc}")
    node = Path(tempfile.mkdtemp(prefix="tsaccess-plain-"))
    run_as = unprivileged_user()
    (node / "socket").mkdir()
    chown(run_as, node, node / "socket")
    data = node / "data"
    try:
        res = _run(
            [str(inst.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=reject"],
            run_as,
            node,
        )
        assert res.returncode == 0, res.stderr
        (data / "pg_hba.conf").write_text(hba_text(["host all all 127.0.0.1/32 scram-sha-256"]))
        port = free_port()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{node / 'socket'}'",
            "ssl": "off",
        }
        append_settings(data, settings, "a server without TLS")
        pg_ctl_start(inst.bindir, data, node / "server.log", run_as, node)
        yield port
    finally:
        stop_node(inst.bindir, data, run_as, node)
        shutil.rmtree(node, ignore_errors=True)


@pytest.mark.filterwarnings("ignore::tsaccess.UnverifiedServerWarning")  # no root cert: on purpose
def test_server_without_tls_raises_insecure_connection_error(plain_server, driver):
    params = {"host": "127.0.0.1", "port": plain_server, "user": "postgres", "password": "x"}
    for attempt in (
        lambda: driver.connect(**params),
        lambda: driver.connect(**params, sslmode="verify-full"),
        lambda: driver.create_pool(**params, timeout=60),
    ):
        with pytest.raises(tsaccess.InsecureConnectionError, match="does not offer TLS") as err:
            attempt()
        assert isinstance(err.value.__cause__, psycopg.OperationalError)
        assert "server does not support SSL" in str(err.value.__cause__)
