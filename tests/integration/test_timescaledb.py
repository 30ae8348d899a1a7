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
    with db.admin() as conn:
        rows = conn.execute("SELECT DISTINCT username, table_name FROM activity_audit").fetchall()
    assert sorted(rows) == [("bob", "sensor_readings"), ("david", "financial_metrics")]


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
