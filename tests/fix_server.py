"""Fixtures: one throwaway TLS server per test session, a fresh database per test.

The server comes from ``tsaccess.ephemeral.EphemeralServer`` (``TSACCESS_TEST_DSN``, Docker or a
local ``initdb`` cluster; ``TSACCESS_TEST_BACKEND`` forces one). Each test that asks for ``db``
gets a database cloned from a template (with TimescaleDB when the server has it); roles the test
creates are dropped afterwards.

Tests marked ``timescaledb`` skip with the reason when the server lacks TimescaleDB — or fail,
when ``TSACCESS_REQUIRE_TIMESCALEDB=1`` (CI sets it, so a missing TimescaleDB cannot hide behind
skips). Tests marked ``docker`` likewise need a Docker engine and ``TSACCESS_TEST_IMAGE``;
``TSACCESS_REQUIRE_DOCKER=1`` turns their skips into failures.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import psycopg
import pytest
from psycopg import sql

import tsaccess
from tsaccess.ephemeral import EphemeralServer, ServerInfo


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ServerInfo]:
    server = EphemeralServer()
    try:
        info = server.start()
    except tsaccess.ServerStartError as exc:
        pytest.fail(f"cannot start the throwaway server: {exc}")
    try:
        yield info
    finally:
        server.stop()


@pytest.fixture(scope="session")
def template_db(pg_server: ServerInfo) -> Iterator[str]:
    name = f"tsaccess_tpl_{secrets.token_hex(4)}"
    with tsaccess.connect(**pg_server.params(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    if pg_server.timescaledb:
        with tsaccess.connect(**pg_server.params(dbname=name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    with tsaccess.connect(**pg_server.params(), autocommit=True) as conn:
        # TimescaleDB's scheduler connects to every database with the extension, and CREATE
        # DATABASE ... TEMPLATE needs a template nobody is connected to: a database that allows
        # no connections gets no scheduler, so close the template and end its sessions.
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(ident))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    yield name
    with tsaccess.connect(**pg_server.params(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@dataclass
class TestDb:
    """A fresh database on the throwaway server, with helpers to connect to it."""

    __test__ = False
    info: ServerInfo

    @property
    def name(self) -> str:
        return self.info.dbname

    def params(self, **overrides: Any) -> dict[str, Any]:
        return self.info.params(**overrides)

    def admin(self, **kw: Any) -> psycopg.Connection[Any]:
        return tsaccess.connect(**self.info.params(), **kw)

    def connect_as(self, user: str, password: str, **kw: Any) -> psycopg.Connection[Any]:
        return tsaccess.connect(**self.info.params(user=user, password=password), **kw)

    def create_login(self, name: str, *, password: str | None = None) -> str:
        """Create a login role with a SCRAM password; returns the password."""
        password = password or secrets.token_urlsafe(16)
        with self.admin(autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        return password


def _roles(info: ServerInfo) -> set[str]:
    with tsaccess.connect(**info.params(), autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")}


@contextmanager
def fresh_db(pg_server: ServerInfo, template_db: str, slug: str) -> Iterator[TestDb]:
    """A database cloned from the template; dropped afterwards with the roles made meanwhile."""
    slug = re.sub(r"[^a-z0-9]+", "_", slug.lower())[:30]
    name = f"t_{slug}_{secrets.token_hex(3)}"
    before = _roles(pg_server)
    with tsaccess.connect(**pg_server.params(), autocommit=True) as conn:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_db)
        )
        for attempt in range(3):  # a scheduler that raced the template's closing: end it
            try:
                conn.execute(create)
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 2:
                    raise
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (template_db,),
                )
    try:
        yield TestDb(pg_server.with_database(name))
    finally:
        with tsaccess.connect(**pg_server.params(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            for role in sorted(_roles(pg_server) - before):
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def db(pg_server: ServerInfo, template_db: str, request: pytest.FixtureRequest) -> Iterator[TestDb]:
    with fresh_db(pg_server, template_db, request.node.name) as made:
        yield made


@pytest.fixture(scope="module")
def module_db(
    pg_server: ServerInfo, template_db: str, request: pytest.FixtureRequest
) -> Iterator[TestDb]:
    """One database for a whole test module (tests that share it restore what they change)."""
    with fresh_db(pg_server, template_db, request.module.__name__.rsplit(".", 1)[-1]) as made:
        yield made


def _required(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str, require_var: str) -> NoReturn:
    """Skip with ``reason``, or fail when ``require_var`` says this must not be skipped."""
    if _required(require_var):
        pytest.fail(f"{reason} ({require_var} is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture
def timescaledb(pg_server: ServerInfo) -> None:
    if not pg_server.timescaledb:
        skip_or_fail(
            f"TimescaleDB is not available on the {pg_server.backend} test server "
            f"({pg_server.installation}); install it (../shared/timescaledb/install.sh) or give "
            "a server with it in TSACCESS_TEST_DSN",
            "TSACCESS_REQUIRE_TIMESCALEDB",
        )


@pytest.fixture(autouse=True)
def _marked_timescaledb(request: pytest.FixtureRequest) -> None:
    """``@pytest.mark.timescaledb`` works like the ``timescaledb`` fixture."""
    if request.node.get_closest_marker("timescaledb") is not None:
        request.getfixturevalue("timescaledb")


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The image for tests that start their own container (``TSACCESS_TEST_IMAGE``)."""
    from tsaccess.ephemeral.docker import _client, _ensure_image, default_image

    image = default_image()
    client = _client()
    if client is None:
        from tsaccess.ephemeral.engine import probe

        skip_or_fail(probe() or "no Docker engine answers", "TSACCESS_REQUIRE_DOCKER")
    try:
        _ensure_image(client, image)
    except tsaccess.ServerStartError as exc:
        skip_or_fail(str(exc), "TSACCESS_REQUIRE_DOCKER")
    finally:
        client.close()
    return image


@pytest.fixture
def tcp_trap() -> Iterator[tuple[int, socket.socket]]:
    """A listening loopback port nobody should reach: (port, socket); see helpers.untouched."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    yield s.getsockname()[1], s
    s.close()
