"""One statement, the events that changed rows: a MERGE is not recorded as an INSERT plus an
UPDATE of 0 rows, a data-modifying CTE that deleted nothing adds no DELETE event. A plain
statement that changed nothing is still recorded (it was tried)."""

from __future__ import annotations

import pytest

from tests.helpers import apply_company

MERGE_FM = (
    "MERGE INTO financial_metrics t USING (VALUES ('2026-01-01'::timestamptz, 'fees', 5))"
    " AS s(time, metric_type, amount) ON t.metric_type = s.metric_type"
    " WHEN MATCHED THEN UPDATE SET amount = t.amount + s.amount"
    " WHEN NOT MATCHED THEN INSERT (time, metric_type, amount)"
    " VALUES (s.time, s.metric_type, s.amount)"
)
MERGE_SR = (
    "MERGE INTO sensor_readings t USING (VALUES ('2026-01-01'::timestamptz, 'S1', 20.5))"
    " AS s(time, sensor_id, temperature) ON t.sensor_id = s.sensor_id"
    " WHEN MATCHED AND s.temperature IS NULL THEN DELETE"
    " WHEN MATCHED THEN UPDATE SET temperature = s.temperature"
    " WHEN NOT MATCHED THEN INSERT (time, sensor_id, temperature)"
    " VALUES (s.time, s.sensor_id, s.temperature)"
)


@pytest.fixture
def company(db):
    return apply_company(db)


def _events(db):
    with db.admin() as conn:
        return conn.execute(
            "SELECT username, operation, table_name, row_count FROM activity_audit ORDER BY id"
        ).fetchall()


def _changed(db):
    with db.admin() as conn:
        return conn.execute(
            "SELECT operation, old_data->>'amount', new_data->>'amount'"
            " FROM activity_audit_rows ORDER BY audit_id"
        ).fetchall()


def test_merge_is_recorded_as_the_actions_that_changed_rows(company):
    with company.connect("david") as conn:
        conn.execute(MERGE_FM)  # inserts
        conn.execute(MERGE_FM)  # updates
        conn.commit()
    with company.connect("bob") as conn:
        conn.execute(MERGE_SR)
        conn.execute(MERGE_SR)
        conn.commit()
    assert _events(company.db) == [
        ("david", "INSERT", "financial_metrics", 1),
        ("david", "UPDATE", "financial_metrics", 1),
        ("bob", "INSERT", "sensor_readings", 1),
        ("bob", "UPDATE", "sensor_readings", 1),
    ]
    assert _changed(company.db) == [("INSERT", None, "5.00"), ("UPDATE", "5.00", "10.00")]


def test_a_cte_records_what_each_part_changed(company):
    with company.connect("bob") as conn:
        conn.execute(
            "WITH gone AS (DELETE FROM sensor_readings WHERE sensor_id = 'nothing' RETURNING *)"
            " INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'a'), (now(), 'b')"
        )
        conn.execute(
            "WITH moved AS (DELETE FROM sensor_readings WHERE sensor_id = 'a' RETURNING *)"
            " INSERT INTO sensor_readings (time, sensor_id) SELECT time, 'moved' FROM moved"
        )
        conn.commit()
    events = _events(company.db)
    assert events == [
        ("bob", "INSERT", "sensor_readings", 2),
        ("bob", "DELETE", "sensor_readings", 1),
        ("bob", "INSERT", "sensor_readings", 1),
    ]


def test_plain_statements_that_change_nothing_are_still_recorded(company):
    with company.connect("bob") as conn:
        conn.execute("UPDATE sensor_readings SET humidity = 1 WHERE false")
        conn.execute("/* a comment */ DELETE FROM sensor_readings WHERE false")
        conn.commit()
    with company.connect("david") as conn:
        conn.execute("DELETE FROM financial_metrics WHERE false")
        conn.commit()
    assert _events(company.db) == [
        ("bob", "UPDATE", "sensor_readings", 0),
        ("bob", "DELETE", "sensor_readings", 0),
        ("david", "DELETE", "financial_metrics", 0),
    ]


def test_a_zero_row_statement_after_a_with_in_one_string_is_recorded(company):
    """A string that starts with WITH but holds more statements: the 0-row UPDATE is not taken
    for an unchanged part of the WITH (found by attacking it: it went unrecorded)."""
    with company.connect("bob") as conn:
        conn.execute(
            "WITH x AS (SELECT 1) SELECT 1;"
            " UPDATE sensor_readings SET temperature = 1 WHERE sensor_id = 'probe-hidden'"
        )
        conn.commit()
    assert _events(company.db) == [("bob", "UPDATE", "sensor_readings", 0)]
