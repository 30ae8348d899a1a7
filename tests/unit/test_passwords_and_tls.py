"""Passwords (sources, file modes, SCRAM) and TLS parameter resolution: pure logic."""

from __future__ import annotations

import os

import pytest

from tsaccess import InsecureConnectionError, PasswordSourceError
from tsaccess.connection import secure_params
from tsaccess.passwords import (
    Secret,
    read_pgpass,
    resolve_passwords,
    scram_matches,
    scram_verifier,
    write_pgpass,
)


def test_secret_never_shows_itself():
    s = Secret("hunter2")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert "hunter2" not in f"{s} {s!r} {[s]} { ({'pw': s}) }"
    assert s.reveal() == "hunter2"


def test_scram_verifier_roundtrip():
    v = scram_verifier(Secret("pw"), salt=b"0123456789abcdef")
    assert v.startswith("SCRAM-SHA-256$4096:")
    assert scram_matches(Secret("pw"), v)
    assert not scram_matches(Secret("pw2"), v)
    assert not scram_matches(Secret("pw"), "md5abc")


def test_pgpass_roundtrip_and_mode(tmp_path):
    f = write_pgpass(tmp_path / "p", {"alice": Secret("a:b\\c"), "bob": Secret("x")}, host="h")
    assert f.stat().st_mode & 0o777 == 0o600
    got = read_pgpass(f)
    assert got["alice"].reveal() == "a:b\\c"
    os.chmod(f, 0o640)
    with pytest.raises(PasswordSourceError, match="chmod 600"):
        read_pgpass(f)


def test_resolution_order(tmp_path):
    f = write_pgpass(tmp_path / "p", {"alice": Secret("from-file"), "bob": Secret("b")})
    got = resolve_passwords(
        ["alice", "bob", "carol"], passwords_file=f, environ={"TSACCESS_PASSWORD_ALICE": "from-env"}
    )
    assert got["alice"].reveal() == "from-env"
    assert got["bob"].reveal() == "b"
    assert "carol" not in got
    gen = resolve_passwords(["carol"], generate=True, environ={})
    assert len(gen["carol"].reveal()) >= 24


@pytest.fixture
def clean_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("PG"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("PGSYSCONFDIR", "/nonexistent")
    return monkeypatch


def test_default_sslmode(clean_env):
    assert secure_params("host=h").sslmode == "require"
    assert secure_params("host=h", sslrootcert="/ca.crt").sslmode == "verify-full"
    clean_env.setenv("PGSSLROOTCERT", "/ca.crt")
    assert secure_params("host=h").sslmode == "verify-full"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "bogus"])
def test_weak_or_unknown_modes_refused(clean_env, mode):
    with pytest.raises(InsecureConnectionError):
        secure_params(f"host=h sslmode={mode}")


def test_precedence_is_libpq_s(clean_env, tmp_path):
    svc = tmp_path / "svc"
    svc.write_text("[s]\nhost=h\nsslmode=verify-ca\n[weak]\nhost=h\nsslmode=allow\n")
    clean_env.setenv("PGSERVICEFILE", str(svc))
    clean_env.setenv("PGSSLMODE", "disable")
    # explicit beats service beats environment
    assert secure_params("service=s sslmode=require").sslmode == "require"
    assert secure_params("service=s").sslmode == "verify-ca"
    with pytest.raises(InsecureConnectionError, match="environment variable PGSSLMODE"):
        secure_params("host=h")
    with pytest.raises(InsecureConnectionError, match="service file"):
        secure_params("service=weak")
    clean_env.delenv("PGSSLMODE")
    clean_env.setenv("PGREQUIRESSL", "1")
    assert secure_params("host=h").sslmode == "require"


def test_gssencmode_require_refused(clean_env):
    with pytest.raises(InsecureConnectionError, match="gssencmode"):
        secure_params("host=h gssencmode=require")


def test_secure_params_repr_hides_password(clean_env):
    p = secure_params("host=h user=u password=topsecret")
    assert "topsecret" not in repr(p)


@pytest.mark.parametrize(
    "conninfo",
    [
        "host=/var/run/postgresql",
        "host=@abstract",
        "host=h,/tmp",
        "host=h, port=1,2",
        "postgresql://u@%2Fvar%2Frun%2Fpostgresql/db",
        "postgresql:///db?host=/tmp",
        "",
    ],
)
def test_unix_socket_hosts_refused(clean_env, conninfo):
    with pytest.raises(InsecureConnectionError, match=r"Unix-domain socket|no host given"):
        secure_params(conninfo)


def test_hostaddr_makes_a_host_tcp(clean_env):
    assert secure_params("hostaddr=127.0.0.1").sslmode == "require"
    assert secure_params("host=/tmp hostaddr=127.0.0.1").sslmode == "require"
    with pytest.raises(InsecureConnectionError, match="Unix-domain socket"):
        secure_params("host=db,/tmp hostaddr=10.0.0.1,")


def test_tls_version_floor(clean_env):
    assert secure_params("host=h").kwargs["ssl_min_protocol_version"] == "TLSv1.2"
    assert (
        secure_params("host=h ssl_min_protocol_version=TLSv1.3").kwargs["ssl_min_protocol_version"]
        == "TLSv1.3"
    )
    for bad in ("TLSv1", "TLSv1.1", "SSLv3", "bogus"):
        with pytest.raises(InsecureConnectionError, match="ssl_min_protocol_version"):
            secure_params(f"host=h ssl_min_protocol_version={bad}")


def test_requiressl_1_means_require_and_is_folded_in(clean_env):
    p = secure_params(host="h", requiressl="1")
    assert (p.sslmode, p.sslmode_source) == ("require", "argument requiressl")
    assert "requiressl" not in p.kwargs


def test_connection_kwargs_split_from_libpq_parameters():
    from psycopg.rows import dict_row

    from tsaccess import TsaccessError
    from tsaccess.params import split_connection_kwargs

    libpq, python = split_connection_kwargs({"host": "h", "row_factory": dict_row})
    assert (libpq, python) == ({"host": "h"}, {"row_factory": dict_row})
    with pytest.raises(TsaccessError, match="unknown connection parameter 'kwargs'"):
        split_connection_kwargs({"kwargs": {}})
