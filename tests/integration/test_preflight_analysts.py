"""Pre-flight for analysts: named cursors are checked, refusals leave DENIED audit events."""

from __future__ import annotations

import pytest
from psycopg.pq import TransactionStatus

import tsaccess
from tests.helpers import apply_company
from tsaccess import audit
from tsaccess.preflight import PreflightConnection


@pytest.fixture
def company(db):
    return apply_company(db)


def _denied_events(company):
    with company.connect("eve") as conn:
        return [
            (e.username, e.table_name, e.description)
            for e in audit.recent(conn)
            if e.operation == "DENIED"
        ]


def test_named_cursors_are_checked_before_declare(company):
    with company.connect("alice", preflight=True) as conn:
        conn.execute("SELECT 1")  # a transaction is open: a sent statement would abort it
        with conn.cursor(name="figures") as cur:
            with pytest.raises(tsaccess.PreflightDenied, match="financial_metrics"):
                cur.execute("SELECT amount FROM financial_metrics")
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        with conn.cursor(name="readings", scrollable=True) as cur:
            cur.execute("SELECT sensor_id FROM sensor_readings")
            assert cur.fetchall() == []


def test_refusals_are_recorded_as_denied_events_by_default(company):
    with company.connect("alice", preflight=True) as conn:
        with pytest.raises(tsaccess.PreflightDenied):  # idle: recorded on this connection
            conn.execute("SELECT amount FROM financial_metrics")
        conn.execute("SELECT 1")
        with pytest.raises(tsaccess.PreflightDenied):  # in a transaction: on a side connection
            conn.execute("DELETE FROM sensor_readings")
        conn.rollback()  # the event survives the caller's rollback
    events = _denied_events(company)
    assert [e[:2] for e in events] == [
        ("alice", "public.sensor_readings"),
        ("alice", "public.financial_metrics"),
    ]
    assert "pre-flight: missing SELECT (amount) on table public.financial_metrics" in events[1][2]


def test_recording_can_be_turned_off(company, monkeypatch):
    with company.connect("alice", preflight=True) as conn:
        conn.record_denied = False
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("SELECT amount FROM financial_metrics")
    with monkeypatch.context() as m:
        m.setattr(PreflightConnection, "record_denied", False)  # for every connection
        with company.connect("alice", preflight=True) as conn:
            with pytest.raises(tsaccess.PreflightDenied):
                conn.execute("SELECT amount FROM financial_metrics")
    assert _denied_events(company) == []


def test_a_pool_restores_recording_for_the_next_borrower(company):
    params = company.db.params(user="alice", password=company.passwords["alice"].reveal())
    with tsaccess.create_pool(**params, preflight=True, min_size=1, max_size=1) as pool:
        with pool.connection() as conn:
            conn.record_denied = False
        with pool.connection() as conn:
            assert conn.record_denied is True
            with pytest.raises(tsaccess.PreflightDenied):
                conn.execute("TRUNCATE financial_metrics")
    assert [e[:2] for e in _denied_events(company)] == [("alice", "public.financial_metrics")]


def test_without_the_audit_trail_a_refusal_is_still_raised(db):
    pw = db.create_login("solo")
    with db.admin(autocommit=True) as conn:
        conn.execute("CREATE TABLE secret_t (x int)")
    with tsaccess.connect(**db.info.params(user="solo", password=pw), preflight=True) as conn:
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("SELECT x FROM secret_t")
        assert conn.record_refusal("SELECT x FROM secret_t", "test") is False


def test_a_refusal_after_the_callers_own_writes_does_not_hang(company):
    """The caller's transaction created the audit table's chunk: the side connection would
    wait on it forever; the event is written in the caller's transaction instead."""
    with company.connect("bob", preflight=True) as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's1')")
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("SELECT amount FROM financial_metrics")
        conn.commit()
    assert [e[:2] for e in _denied_events(company)] == [("bob", "public.financial_metrics")]
