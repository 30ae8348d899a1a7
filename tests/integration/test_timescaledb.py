"""Behaviour that needs TimescaleDB (skipped with the reason when the server lacks it)."""

from __future__ import annotations

import pytest

from tests.helpers import apply_company

pytestmark = pytest.mark.usefixtures("timescaledb")


def test_company_tables_are_hypertables_and_audit_names_the_hypertable(db):
    company = apply_company(db)
    with db.admin() as conn:
        names = {
            r[0]
            for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
        assert {"sensor_readings", "financial_metrics", "activity_audit"} <= names
        data = conn.execute(
            "SELECT hypertable_schema, hypertable_name FROM timescaledb_information.hypertables"
            " WHERE hypertable_schema = 'tsaccess_audit'"
        ).fetchall()
        assert data == [("tsaccess_audit", "financial_metrics")]  # per-row data, retention-ready
    with company.connect("bob") as conn:  # rows spread over several chunks
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) SELECT now() - i * interval"
            " '3 days', 's' FROM generate_series(0, 10) i"
        )
        conn.commit()
    with company.connect("david") as conn:  # per-row mode: row data, hypertable name
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type) SELECT now() - i *"
            " interval '8 days', 'm' FROM generate_series(0, 3) i"
        )
        conn.commit()
        conn.execute("UPDATE financial_metrics SET amount = 1")  # across 4 chunks
        conn.commit()
    with db.admin() as conn:
        rows = conn.execute(
            "SELECT username, operation, table_name, row_count FROM activity_audit ORDER BY id"
        ).fetchall()
        changed = conn.execute(
            "SELECT operation, table_name, old_data->>'amount', new_data->>'amount'"
            " FROM activity_audit_rows ORDER BY audit_id"
        ).fetchall()
    assert rows == [
        ("bob", "INSERT", "sensor_readings", 11),
        ("david", "INSERT", "financial_metrics", 4),
        ("david", "UPDATE", "financial_metrics", 4),
    ]
    assert (
        changed
        == [("INSERT", "financial_metrics", None, None)] * 4
        + [("UPDATE", "financial_metrics", None, "1.00")] * 4
    )


def test_chunks_are_readable_exactly_when_the_hypertable_is(db):
    company = apply_company(db)
    with company.connect("bob") as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        conn.commit()
    with db.admin() as conn:
        chunk = conn.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM"
            " timescaledb_information.chunks WHERE hypertable_name ="
            " 'sensor_readings' LIMIT 1"
        ).fetchone()[0]
    with company.connect("alice") as conn:
        conn.execute(f"SELECT count(*) FROM {chunk}")
    with company.connect("eve") as conn:
        with pytest.raises(Exception, match="permission denied"):
            conn.execute(f"SELECT count(*) FROM {chunk}")
