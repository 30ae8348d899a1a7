"""Fixtures for ``tsaccess monitor``: a throwaway server of its own that logs as ``jsonlog``
(failed logins are read from it; the shared test server keeps its plain ``server.log``), and
the company policy applied in a fresh database of it, with helpers to collect as the policy's
monitoring user.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

import tsaccess
from tests.fix_server import fresh_db, skip_or_fail
from tests.helpers import Company, apply_company
from tsaccess.ephemeral import EphemeralServer, ServerInfo
from tsaccess.monitor import Monitor, MonitorOptions

JSONLOG = {
    "logging_collector": "on",
    "log_destination": "'jsonlog'",
    "log_directory": "'log'",
}
MONITOR_USER = "monitor"


@pytest.fixture(scope="session")
def monitor_server() -> Iterator[ServerInfo]:
    """A local TimescaleDB server logging as jsonlog, for the whole session."""
    server = EphemeralServer(backend="local", settings=JSONLOG)
    try:
        info = server.start()
    except tsaccess.ServerStartError as exc:
        skip_or_fail(
            f"cannot start a local server for the monitor: {exc}", "TSACCESS_REQUIRE_TIMESCALEDB"
        )
    try:
        if not info.timescaledb:
            skip_or_fail(
                f"TimescaleDB is not available on the local server ({info.installation})",
                "TSACCESS_REQUIRE_TIMESCALEDB",
            )
        yield info
    finally:
        server.stop()


@pytest.fixture(scope="session")
def monitor_template(monitor_server: ServerInfo) -> str:
    """A closed template database with TimescaleDB (see tests.fix_server.template_db)."""
    name = f"tsaccess_mtpl_{secrets.token_hex(4)}"
    ident = sql.Identifier(name)
    with tsaccess.connect(**monitor_server.params(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    with tsaccess.connect(**monitor_server.params(dbname=name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    with tsaccess.connect(**monitor_server.params(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(ident))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    return name


@dataclass
class Monitored:
    """The company policy applied in a fresh database of the jsonlog server."""

    company: Company
    server: ServerInfo

    @property
    def policy(self) -> Any:
        return self.company.policy

    @property
    def log_dir(self) -> Path:
        assert self.server.workdir is not None
        return Path(self.server.workdir) / "data" / "log"

    def admin(self, **kw: Any) -> Any:
        return self.company.db.admin(**kw)

    def connect_monitor(self) -> Any:
        return self.company.connect(MONITOR_USER)

    def monitor(self, **options: Any) -> Monitor:
        return Monitor(self.connect_monitor, self.policy, MonitorOptions(**options))

    def dsn(self, user: str = MONITOR_USER) -> str:
        p = self.company.db.params(user=user)
        keys = ("host", "port", "dbname", "user", "sslmode", "sslrootcert")
        return " ".join(f"{k}={p[k]}" for k in keys if p.get(k) is not None)


@pytest.fixture(scope="module")
def monitored(
    monitor_server: ServerInfo, monitor_template: str, request: pytest.FixtureRequest
) -> Iterator[Monitored]:
    slug = request.module.__name__.rsplit(".", 1)[-1]
    with fresh_db(monitor_server, monitor_template, slug) as db:
        yield Monitored(apply_company(db), monitor_server)
