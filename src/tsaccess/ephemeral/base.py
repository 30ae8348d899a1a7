"""What every backend of the throwaway server shares: the admin's name, :class:`ServerInfo`,
readiness as a real TLS query, free loopback ports.

The bottom of :mod:`tsaccess.ephemeral`: the backends (:mod:`~tsaccess.ephemeral.local`,
:mod:`~tsaccess.ephemeral.docker`, :mod:`~tsaccess.ephemeral.pgbouncer`) import it, and
:mod:`~tsaccess.ephemeral.server` and :mod:`~tsaccess.ephemeral.cluster` choose among them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tsaccess.catalog import timescaledb_state
from tsaccess.client.connection import connect
from tsaccess.errors import ServerStartError

__all__ = [
    "ADMIN",
    "ServerInfo",
    "Started",
    "free_port",
    "from_dsn",
    "has_timescaledb",
    "wait_ready",
]

ADMIN = "postgres"


@dataclass(frozen=True)
class ServerInfo:
    """How to reach a running throwaway server as its administrator."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    sslrootcert: str | None
    backend: str
    timescaledb: bool = False
    """True when the ``timescaledb`` extension is available *and* preloaded."""
    workdir: Path | None = None
    installation: str = ""
    """Which installation or image serves it (``PostgreSQL 15.20 in /usr/lib/...``)."""

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for :func:`tsaccess.connect` (admin unless overridden)."""
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }
        if self.sslrootcert:
            base.update(sslmode="verify-full", sslrootcert=self.sslrootcert)
        else:
            base.update(sslmode="require")
        base.update(overrides)
        return base

    def with_database(self, dbname: str) -> ServerInfo:
        """The same server, another database."""
        return replace(self, dbname=dbname)


Started = tuple[ServerInfo, Callable[[], None]]
"""A backend's result: the server and how to stop and delete it."""


def from_dsn(dsn: str) -> ServerInfo:
    d = conninfo_to_dict(dsn)
    return ServerInfo(
        host=str(d.get("host") or os.environ.get("PGHOST") or "localhost"),
        port=int(d.get("port") or os.environ.get("PGPORT") or 5432),
        user=str(d.get("user") or os.environ.get("PGUSER") or ADMIN),
        password=str(d.get("password") or os.environ.get("PGPASSWORD") or ""),
        dbname=str(d.get("dbname") or "postgres"),
        sslrootcert=str(d.get("sslrootcert") or os.environ.get("PGSSLROOTCERT") or "") or None,
        backend="dsn",
        installation="an existing server (TSACCESS_TEST_DSN or dsn=)",
    )


def wait_ready(info: ServerInfo, *, timeout: float, log_tail: Callable[[], str]) -> None:
    """Readiness is a real query over TLS as the admin, not an open port."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with connect(**info.params(connect_timeout=5), autocommit=True) as conn:
                conn.execute("SELECT 1")
                return
        except (psycopg.OperationalError, OSError) as exc:
            last = exc
            time.sleep(0.1)
    raise ServerStartError(
        f"server did not accept a TLS login within {timeout:.0f} s ({last}); server log:\n"
        f"{log_tail()}"
    )


def has_timescaledb(info: ServerInfo) -> bool:
    with connect(**info.params(), autocommit=True) as conn:
        state = timescaledb_state(conn)
    return state.available and state.preloaded


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
