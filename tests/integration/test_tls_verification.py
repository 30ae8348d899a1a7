"""An unverified server is never silent (issue 26): without a root certificate, connections and
pools warn with ``tsaccess.UnverifiedServerWarning`` once per target (host:port, per process),
naming how to verify; with one, nothing; ``tls_status()`` says whether the server was verified,
and the CLI prints it. ``sslmode=require`` stays the floor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import tsaccess
from tsaccess.client import trust as client_trust


@pytest.fixture
def no_root_cert(monkeypatch, tmp_path):
    """A home without ~/.postgresql/root.crt, no PGSSLROOTCERT, and no target warned yet."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    monkeypatch.setattr(client_trust, "_WARNED", set())
    return tmp_path


def _unverified(db, **over):
    return db.params(sslmode="require", sslrootcert=None, **over)


@contextmanager
def _recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Every UnverifiedServerWarning issued inside, whatever the filters (``always``)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got: list[warnings.WarningMessage] = []
        yield got
    got += [w for w in seen if issubclass(w.category, tsaccess.UnverifiedServerWarning)]


def test_no_root_certificate_warns_once_per_target(db, no_root_cert):
    with _recorded() as got:
        for _ in range(3):
            with tsaccess.connect(**_unverified(db)) as conn:
                status = tsaccess.tls_status(conn)
    assert len(got) == 1, [str(w.message) for w in got]
    msg = str(got[0].message)
    target = f"{db.params()['host']}:{db.params()['port']}"
    assert target in msg
    for how in ("sslrootcert=", "PGSSLROOTCERT", "~/.postgresql/root.crt"):
        assert how in msg, msg
    assert got[0].filename == __file__  # points at the caller's line
    assert status.ssl and status.verified is False
    assert "server NOT verified" in str(status)
    # another target warns once too; a pool of it warns once, not per connection
    other = _unverified(db, host="localhost")
    with _recorded() as got:
        pool = tsaccess.create_pool(**other, min_size=2, max_size=3)
        try:
            with pool.connection() as a, pool.connection() as b, pool.connection() as c:
                assert all(tsaccess.tls_status(x).verified is False for x in (a, b, c))
        finally:
            pool.close()
        with tsaccess.connect(**other):
            pass
    assert len(got) == 1, [str(w.message) for w in got]
    assert "localhost:" in str(got[0].message)


def test_a_verified_server_is_quiet_and_says_so(db, no_root_cert):
    with warnings.catch_warnings():
        warnings.simplefilter("error", tsaccess.UnverifiedServerWarning)
        with tsaccess.connect(**db.params()) as conn:  # sslrootcert: verify-full
            status = tsaccess.tls_status(conn)
        assert status.verified is True and status.verification.startswith("verify-full")
        assert "server verified (verify-full" in str(status)
        # require with ~/.postgresql/root.crt: libpq verifies the CA (not the host name)
        home = no_root_cert / ".postgresql"
        home.mkdir()
        shutil.copy(db.params()["sslrootcert"], home / "root.crt")
        with tsaccess.connect(**_unverified(db)) as conn:
            status = tsaccess.tls_status(conn)
        assert status.verified is True and status.verification.startswith("verify-ca"), status


def test_the_warning_is_filterable_and_the_floor_stays(db, no_root_cert):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=tsaccess.UnverifiedServerWarning)
        with tsaccess.connect(**_unverified(db)):
            pass
    assert not [w for w in seen if issubclass(w.category, tsaccess.UnverifiedServerWarning)]
    assert issubclass(tsaccess.UnverifiedServerWarning, UserWarning)
    with pytest.raises(tsaccess.InsecureConnectionError):
        tsaccess.connect(**db.params(sslmode="prefer", sslrootcert=None))


def test_the_cli_prints_whether_the_server_was_verified(db, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("PGSSLROOTCERT", None)
    p = db.params()
    base = f"host={p['host']} port={p['port']} user={p['user']} dbname={p['dbname']}"

    def roles(dsn: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tsaccess", "audit", "roles", "--dsn", dsn],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**env, "PGPASSWORD": p["password"]},
            timeout=120,
            check=False,
        )

    res = roles(f"{base} sslmode=require")
    assert res.returncode == 0, res.stderr
    warned = [x for x in res.stderr.splitlines() if x.startswith("tsaccess: warning: ")]
    assert len(warned) == 1 and "PGSSLROOTCERT" in warned[0], res.stderr
    assert "server NOT verified" in res.stderr and "Traceback" not in res.stderr
    res = roles(f"{base} sslrootcert={p['sslrootcert']}")
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr
    assert "server verified (verify-full" in res.stderr, res.stderr
