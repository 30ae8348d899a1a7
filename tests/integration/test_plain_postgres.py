"""Plain PostgreSQL where it differs: ``timescaledb = "prefer"`` and ``"require"`` on a server
without TimescaleDB preloaded (CI's own server has TimescaleDB, so these start their own)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from psycopg import sql

import tsaccess
from tests.fix_server import TestDb
from tests.helpers import apply_company
from tsaccess.demo import company_policy
from tsaccess.ephemeral import EphemeralServer, ServerInfo
from tsaccess.plan.compose import plan


@pytest.fixture(scope="module")
def plain_server() -> Iterator[ServerInfo]:
    with EphemeralServer(backend="local", timescaledb=False) as info:
        yield info


@pytest.fixture
def plain_db(plain_server: ServerInfo, request: pytest.FixtureRequest) -> TestDb:
    name = f"plain_{request.node.name[:20].lower()}"
    with tsaccess.connect(**plain_server.params(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return TestDb(plain_server.with_database(name))  # the module's server is deleted whole


def test_plain_server_reports_no_timescaledb(plain_server):
    assert plain_server.timescaledb is False
    with tsaccess.connect(**plain_server.params()) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    assert preload is not None and "timescaledb" not in preload[0]


def test_prefer_makes_plain_tables_with_a_warning_and_audits(plain_db):
    policy = company_policy().with_database(plain_db.name)
    assert policy.timescaledb == "prefer"
    with plain_db.admin() as conn:
        p = plan(conn, policy, require_passwords=False)
        conn.rollback()
    assert any("shared_preload_libraries" in w or "not installed" in w for w in p.warnings)
    assert "create_hypertable" not in p.sql()
    company = apply_company(plain_db)
    with company.connect("bob") as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) SELECT now() - i * interval '9 days',"
            " 's' FROM generate_series(1, 3) i"
        )
        conn.commit()
    with plain_db.admin() as conn:
        kinds = conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relname IN ('sensor_readings', 'financial_metrics') ORDER BY 1"
        ).fetchall()
        audited = conn.execute(
            "SELECT username, table_name, row_count FROM activity_audit WHERE operation = 'INSERT'"
        ).fetchall()
    assert kinds == [("financial_metrics", "r"), ("sensor_readings", "r")]
    assert audited == [("bob", "sensor_readings", 3)]


def test_require_is_refused_with_the_key_and_the_fix(plain_db):
    policy = dataclasses.replace(
        company_policy().with_database(plain_db.name), timescaledb="require"
    )
    with plain_db.admin() as conn, pytest.raises(tsaccess.PolicyError) as err:
        plan(conn, policy, require_passwords=False)
    assert "database.timescaledb" in str(err.value)
    assert 'timescaledb = "prefer"' in str(err.value)
