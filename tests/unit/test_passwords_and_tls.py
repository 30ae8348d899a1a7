"""Passwords (sources, file modes, SCRAM) and TLS parameter resolution: pure logic."""

from __future__ import annotations

import os

import pytest

from tsaccess import InsecureConnectionError, PasswordSourceError
from tsaccess.client.connection import secure_params
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
    from tsaccess.client.params import split_connection_kwargs

    libpq, python = split_connection_kwargs({"host": "h", "row_factory": dict_row})
    assert (libpq, python) == ({"host": "h"}, {"row_factory": dict_row})
    with pytest.raises(TsaccessError, match="unknown connection parameter 'kwargs'"):
        split_connection_kwargs({"kwargs": {}})


# --- an explicitly given empty value counts, as in libpq ------------------------------------


@pytest.mark.parametrize(
    ("conninfo", "params"),
    [
        ("", {"host": ""}),  # libpq: host='' is the default socket; PGHOST is not read
        ("host=''", {}),
        ("postgresql://:1/db?host=", {}),
        ("postgresql:///db?host=", {}),
    ],
)
def test_an_explicit_empty_host_is_the_default_socket(clean_env, conninfo, params):
    clean_env.setenv("PGHOST", "db.example.com")
    with pytest.raises(InsecureConnectionError, match=r"empty host .*Unix-domain socket"):
        secure_params(conninfo, **params)


def test_empty_values_from_the_environment_and_arguments_count(clean_env):
    clean_env.setenv("PGHOST", "")  # libpq: getenv() is not NULL -> host '' -> socket
    with pytest.raises(InsecureConnectionError, match=r"empty host .* PGHOST"):
        secure_params(port=5432)
    clean_env.setenv("PGHOST", "h")
    with pytest.raises(InsecureConnectionError, match="unknown sslmode ''"):
        secure_params(sslmode="")  # libpq: invalid sslmode value ""
    with pytest.raises(InsecureConnectionError, match="requiressl=0 from argument"):
        secure_params(requiressl="")  # libpq: not '1...' -> sslmode=prefer


# --- service files, read exactly as libpq's parseServiceFile reads them --------------------


def _service(clean_env, tmp_path, text: str | bytes) -> str:
    f = tmp_path / "pg_service.conf"
    if isinstance(text, str):
        f.write_text(text)
    else:
        f.write_bytes(text)
    clean_env.setenv("PGSERVICEFILE", str(f))
    return str(f)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        # libpq keeps the FIRST value of a repeated keyword (configparser kept the last)
        ("[s]\nhost=/run/sock\nhost=db\n", "host='/run/sock' from service file"),
        ("[s]\nhost=db\nsslmode=disable\nsslmode=require\n", "sslmode='disable' from service"),
        # no [DEFAULT] inheritance: s has no host, so PGHOST (a socket here) is used
        ("[DEFAULT]\nhost=db\nsslmode=require\n[s]\nport=1\n", "environment variable PGHOST"),
        # the wanted section ends at the next header: a second [s] is never read
        ("[s]\nport=1\n[o]\n[s]\nhost=db\n", "environment variable PGHOST"),
        # the header only has to start with [s]
        ("[s] trailing words\nhost=/run/sock\n", "host='/run/sock' from service file"),
        # whitespace around the line is trimmed, around '=' it is not (value ' /x' is kept)
        ("  [s]\r\n\thost=/run/sock \r\n", "host='/run/sock' from service file"),
        # a C string ends at NUL: libpq reads host=/run/sock
        (b"[s]\nhost=/run/sock\0=db\n", "host='/run/sock' from service file"),
        ("[s]\nhost=\n", r"empty host .*from service file"),  # '' given: PGHOST not read
    ],
)
def test_service_file_values_are_libpq_s(clean_env, tmp_path, text, match):
    _service(clean_env, tmp_path, text)
    clean_env.setenv("PGHOST", "/run/pg")
    with pytest.raises(InsecureConnectionError, match=match):
        secure_params("service=s")


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("[s]\nhost: db\n", 2, "not 'keyword=value'"),
        ("[s]\nhost = db\n", 2, "'host ' is not a libpq connection keyword"),
        ("[s]\nhost=db\nrequiressl=1\n", 3, "'requiressl' is not a libpq connection keyword"),
        ("[s]\nhost=db\nbogus=1\n", 3, "'bogus' is not"),
        ("[s]\nservice=o\n", 2, "nested service"),
        ("[s]\nldap://ldap.example.com/dc=x?y?one?(cn=s)\n", 2, "LDAP lookup"),
        ("host=db\n[s]\nport=1\n", 1, "outside any \\[section\\]"),
        ("[s]\n#" + "x" * 1021 + "\nhost=db\n", 2, "longer than 1022 bytes"),
    ],
)
def test_service_file_lines_libpq_would_refuse_are_refused(clean_env, tmp_path, text, line, why):
    path = _service(clean_env, tmp_path, text)
    with pytest.raises(InsecureConnectionError, match=why) as err:
        secure_params("service=s")
    assert f"service file {path}, line {line}:" in str(err.value)


def test_service_file_what_libpq_accepts_is_accepted(clean_env, tmp_path):
    # other sections are never parsed by libpq (even broken ones); the longest line is fine
    path = _service(
        clean_env,
        tmp_path,
        "# c\n[o]\nhost: x\n[s]\n#" + "x" * 1020 + "\nhost=db\nport=6432\nsslmode=verify-ca\n",
    )
    p = secure_params("service=s")
    assert (p.sslmode, p.sslmode_source) == ("verify-ca", f"service file {path}")
    assert (p.kwargs["host"], p.kwargs["port"]) == ("db", "6432")


def test_service_lookup_is_libpq_s(clean_env, tmp_path):
    path = _service(clean_env, tmp_path, "[]\nhost=/run/sock\n[s]\nhost=db\n")
    clean_env.setenv("PGSERVICE", "s")
    assert secure_params().kwargs["host"] == "db"
    # service='' is given: libpq looks up the section [] and not PGSERVICE
    with pytest.raises(InsecureConnectionError, match="host='/run/sock'"):
        secure_params(service="")
    with pytest.raises(InsecureConnectionError, match=f"'nope' is not defined in {path}"):
        secure_params("service=nope")
    clean_env.setenv("PGSERVICEFILE", str(tmp_path / "missing"))  # libpq: not found, fails
    with pytest.raises(InsecureConnectionError, match="cannot read service file"):
        secure_params("service=s")
    clean_env.delenv("PGSERVICEFILE")
    clean_env.setenv("HOME", str(tmp_path / "home"))
    clean_env.setenv("PGSYSCONFDIR", str(tmp_path))
    (tmp_path / "pg_service.conf").write_text("[s]\nhost=sys\n")
    assert secure_params("service=s").kwargs["host"] == "sys"
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".pg_service.conf").write_text("[s]\nhost=home\n")
    assert secure_params("service=s").kwargs["host"] == "home"


def test_checked_host_is_the_host_psycopg_uses(clean_env, tmp_path):
    """psycopg splits host lists itself, reading PGHOST but not the service file: the host that
    was checked must be passed explicitly."""
    from psycopg.conninfo import conninfo_attempts

    _service(clean_env, tmp_path, "[s]\nhost=127.0.0.1\nport=5432\n")
    clean_env.setenv("PGHOST", "/run/a,/run/b")
    clean_env.setenv("PGPORT", "1")
    p = secure_params("service=s")
    assert (p.kwargs["host"], p.kwargs["port"]) == ("127.0.0.1", "5432")
    assert [a.get("host") for a in conninfo_attempts(p.kwargs)] == ["127.0.0.1"]
    clean_env.delenv("PGSERVICEFILE")
    clean_env.setenv("PGHOST", "db1,db2")
    assert secure_params(hostaddr="10.0.0.1,10.0.0.2").kwargs["host"] == "db1,db2"
