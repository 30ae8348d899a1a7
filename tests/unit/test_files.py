"""The private-file helper and login-less parameters."""

from __future__ import annotations

import stat

import pytest

from tsaccess._files import write_private
from tsaccess.client.params import without_login


def test_write_private_creates_0600_and_never_overwrites(tmp_path):
    path = tmp_path / "secret"
    write_private(path, "s3cret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "s3cret"
    with pytest.raises(FileExistsError):
        write_private(path, b"other")
    write_private(path, b"other", replace=True)
    assert path.read_bytes() == b"other"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary file left


def test_write_private_does_not_follow_a_planted_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "link", "x")
    assert target.read_text() == "keep"


def test_without_login_keeps_the_server_settings():
    params = {
        "host": "db",
        "port": 5432,
        "sslmode": "verify-full",
        "user": "admin",
        "password": "pw",
        "passfile": "/x",
        "dbname": "postgres",
    }
    assert without_login(params) == {"host": "db", "port": 5432, "sslmode": "verify-full"}
