"""Failed logins from the server's ``jsonlog`` (PostgreSQL 15+: ``log_destination =
'jsonlog'`` with ``logging_collector = on``): one JSON object per line, each with its
``error_severity``, ``state_code`` and ``user``.

A failed login is a ``FATAL`` with SQLSTATE ``28P01`` (invalid password: a wrong password, or a
role that does not exist) or ``28000`` (invalid authorization: no ``pg_hba.conf`` line lets it
in, a certificate refused). The files are read from where they left off (a rotated-and-truncated
file from its start), so each line is read once; the first collection reads the files that are
there, so the counter survives a restart of the exporter for as long as the logs are kept.

Two sources: a path the exporter's OS user may read (a file, or the ``log_directory``), or
``postgres``: the database's own ``pg_ls_logdir()`` (``pg_monitor`` may call it) and
``pg_read_file()`` — which needs ``EXECUTE`` on it, a privilege that reads every file of the
data directory (table files included): the policy never grants it (see
``docs/howto/monitoring.md``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["FAILED_LOGIN_STATES", "UNKNOWN_USER", "ServerLog", "failed_login_user"]

FAILED_LOGIN_STATES = frozenset({"28P01", "28000"})
UNKNOWN_USER = "_unknown"
_CHUNK = 1 << 20


def failed_login_user(line: str) -> str | None:
    """The user name of a failed login on this jsonlog line; None for any other line."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    if entry.get("error_severity") != "FATAL" or entry.get("state_code") not in FAILED_LOGIN_STATES:
        return None
    user = entry.get("user")
    return user if isinstance(user, str) else ""


class ServerLog:
    """Failed logins counted from the jsonlog files of ``source`` (a path, or ``postgres``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._offsets: dict[str, int] = {}
        self._raw: Counter[str] = Counter()  # user name as logged -> failed logins

    def read(self, conn: psycopg.Connection[Any], roles: Iterable[str]) -> Counter[str]:
        """Read what is new; returns user -> failed logins, names of no role as ``_unknown``
        (anyone can try any name: the label set stays the roles')."""
        if self.source == "postgres":
            self._read_server(conn)
        else:
            self._read_path(Path(self.source))
        known = set(roles)
        out: Counter[str] = Counter()
        for user, n in self._raw.items():
            out[user if user in known else UNKNOWN_USER] += n
        return out

    def _take(self, name: str, size: int, fetch: Callable[[int, int], bytes]) -> None:
        start = self._offsets.get(name, 0)
        if size < start:  # truncated on rotation: read it again from the start
            start = 0
        while start < size:
            data = fetch(start, min(_CHUNK, size - start))
            end = data.rfind(b"\n")
            if end < 0:
                break  # a line still being written: next time
            for line in data[: end + 1].decode("utf-8", errors="replace").splitlines():
                user = failed_login_user(line)
                if user is not None:
                    self._raw[user] += 1
            start += end + 1
        self._offsets[name] = start

    def _read_path(self, path: Path) -> None:
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for f in files:
            try:
                size = f.stat().st_size
                with f.open("rb") as fh:

                    def fetch(offset: int, length: int, fh: Any = fh) -> bytes:
                        fh.seek(offset)
                        data: bytes = fh.read(length)
                        return data

                    self._take(str(f), size, fetch)
            except FileNotFoundError:
                continue  # rotated away between listing and reading

    def _read_server(self, conn: psycopg.Connection[Any]) -> None:
        rows = conn.execute(
            "SELECT pg_catalog.current_setting('log_directory') || '/' || l.name, l.size"
            " FROM pg_catalog.pg_ls_logdir() l WHERE l.name LIKE '%.json' ORDER BY l.name"
        ).fetchall()
        for name, size in rows:

            def fetch(offset: int, length: int, name: str = name) -> bytes:
                row = conn.execute(
                    "SELECT pg_catalog.pg_read_binary_file(%s, %s, %s, true)",
                    (name, offset, length),
                ).fetchone()
                return bytes(row[0]) if row and row[0] is not None else b""

            self._take(str(name), int(size), fetch)
