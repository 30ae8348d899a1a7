"""Pre-flight connections: refuse before sending, refresh when privileges change; for the sync
and the async client (the ``driver`` fixture: the same checker behind both)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus
from structlog.testing import capture_logs

import tsaccess
from tests.helpers import apply_company
from tsaccess import audit


@pytest.fixture
def company(db):
    return apply_company(db)


def test_denied_statement_is_never_sent(company, driver):
    with driver.connect(**company.params("alice"), preflight=True) as conn:
        conn.execute("SELECT 1")
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        with capture_logs() as logs, pytest.raises(tsaccess.PreflightDenied) as err:
            conn.execute("UPDATE sensor_readings SET temperature = 0")
        # had it been sent, the server's refusal would have aborted the transaction
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        assert [m.privilege for m in err.value.missing] == ["UPDATE"]
        assert "UPDATE (temperature) on table public.sensor_readings" in str(err.value)
        assert any(e["event"] == "preflight denied" and e["db_user"] == "alice" for e in logs)
        assert conn.execute("SELECT count(*) FROM sensor_readings").fetchone() == (0,)


def test_every_statement_in_a_string_is_checked(company, driver):
    with driver.connect(**company.params("alice"), preflight=True, autocommit=True) as conn:
        with pytest.raises(tsaccess.PreflightDenied, match="financial_metrics"):
            conn.execute("SELECT 1 FROM sensor_readings; SELECT amount FROM financial_metrics")


def test_placeholders_work(company, driver):
    with driver.connect(**company.params("bob"), preflight=True) as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature) VALUES (now(), %s, %s)",
            ("s1", 20),
        )
        conn.execute(
            "SELECT * FROM sensor_readings WHERE sensor_id = %(id)s AND temperature > %(t)s"
            " AND location LIKE 'x%%'",
            {"id": "s1", "t": 1},
        )
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("SELECT amount FROM financial_metrics WHERE metric_type = %s", ("x",))
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), %s)", [("a",), ("b",)]
        )
        with pytest.raises(tsaccess.PreflightDenied):
            cur.executemany(
                "INSERT INTO financial_metrics (time, metric_type) VALUES (now(), %s)", [("a",)]
            )
        with pytest.raises(tsaccess.PreflightDenied):
            with cur.copy("COPY financial_metrics TO STDOUT"):
                pass


def test_stale_snapshot_never_causes_a_false_refusal(company, driver):
    with driver.connect(**company.params("alice"), preflight=True, autocommit=True) as conn:
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("SELECT amount FROM financial_metrics")
        with company.db.admin(autocommit=True) as admin:  # granted behind the snapshot's back
            admin.execute("GRANT SELECT ON financial_metrics TO data_analysts")
        conn.execute("SELECT amount FROM financial_metrics")  # confirmed live: allowed
        conn.execute("SELECT amount FROM financial_metrics")  # fresh snapshot: cached "allowed"
        with company.db.admin(autocommit=True) as admin:
            admin.execute("REVOKE SELECT ON financial_metrics FROM data_analysts")
        # the snapshot still says "granted": the server refuses, and the snapshot is refreshed
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT amount FROM financial_metrics")
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("SELECT amount FROM financial_metrics")


def test_set_role_refreshes_the_snapshot(company, driver):
    with company.db.admin(autocommit=True) as admin:
        admin.execute("GRANT finance_users TO carol")
        admin.execute("ALTER ROLE carol NOINHERIT")  # privileges only after SET ROLE
        admin.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO carol").format(sql.Identifier(company.db.name))
        )
        admin.execute("GRANT USAGE ON SCHEMA public TO carol")
    with driver.connect(**company.params("carol"), preflight=True, autocommit=True) as conn:
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'x')")
        conn.execute("SET ROLE finance_users")
        conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'x')")
        conn.execute("RESET ROLE")
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'x')")


def test_denials_can_be_recorded_as_audit_events(company, driver):
    with driver.connect(**company.params("alice"), preflight=True) as conn:

        def reason(verdict):
            return f"pre-flight: {'; '.join(map(str, verdict.missing))}"

        if driver.is_async:  # a coroutine function: awaited, the audit write on the sync face
            raw = driver.raw(conn)
            conn.on_denied = lambda stmt, verdict: raw.run_sync(
                audit.record_denied, stmt, reason(verdict)
            )
        else:
            conn.on_denied = lambda stmt, verdict: audit.record_denied(conn, stmt, reason(verdict))
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("DELETE FROM sensor_readings")
    with driver.connect(**company.params("eve")) as conn:
        events = audit.recent(conn)
    assert [(e.username, e.operation, e.client_asserted) for e in events] == [
        ("alice", "DENIED", True)
    ]
    assert "pre-flight: DELETE on table public.sensor_readings" in (events[0].description or "")


def test_pool_with_preflight_resets_its_state(company, driver):
    pool = driver.create_pool(
        **company.params("carol"),
        preflight=True,
        min_size=1,
        max_size=1,
    )
    try:
        with pool.connection() as conn:
            with pytest.raises(tsaccess.PreflightDenied):
                conn.execute("DELETE FROM financial_metrics")
            conn.on_denied = lambda *a: None
        with pool.connection() as conn:
            assert conn.on_denied is None
            conn.execute("SELECT count(*) FROM financial_metrics")
    finally:
        pool.close()


def test_check_function_verdicts(company, driver):
    with driver.connect(**company.params("alice")) as conn:
        assert driver.check(conn, "SELECT * FROM sensor_readings").status == "allowed"
        v = driver.check(conn, "SELECT amount FROM financial_metrics")
        assert v.status == "denied"
        assert v.missing[0].object == "public.financial_metrics"
        assert driver.check(conn, "LISTEN x").status == "allowed"  # needs no privilege
        assert driver.check(conn, "DO $$ BEGIN END $$").status == "deferred"  # runs code
        assert driver.check(conn, "SELECT * FROM pg_temp.nothing").status == "deferred"
        assert driver.check(conn, "SELEC oops").status == "deferred"
        v = driver.check(
            conn,
            sql.SQL("SELECT 1 FROM {}")
            .format(sql.Identifier("sensor_readings"))
            .as_string(driver.raw(conn)),
        )
        assert v.status == "allowed"


def test_the_per_row_audit_view_is_checked_like_the_audit_table(company, driver):
    query = "SELECT old_data, new_data FROM activity_audit_rows WHERE table_name = 'x'"
    with driver.connect(**company.params("eve")) as conn:
        assert driver.check(conn, query).status == "allowed"
        conn.execute(query)
    with driver.connect(**company.params("david")) as conn:
        v = driver.check(conn, query)
        assert v.status == "denied"
        assert v.missing[0].object == "public.activity_audit_rows"
        # and nothing reaches the private data schema
        assert (
            driver.check(conn, "SELECT * FROM tsaccess_audit.financial_metrics").status == "denied"
        )
