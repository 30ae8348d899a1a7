"""The TimescaleDB parts of a policy: examples/timescale.toml loads; each bad variant is
refused with the key path and the reason."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from tsaccess import PolicyError
from tsaccess.policy import load_policy, parse_policy

EXAMPLE = Path(__file__).parents[2] / "examples" / "timescale.toml"
BASE = tomllib.loads(EXAMPLE.read_text())


def variant(mutate) -> dict:
    data = copy.deepcopy(BASE)
    mutate(data)
    return data


def test_the_timescale_example_loads_as_the_issue_lists_it():
    p = load_policy(EXAMPLE)
    sensor = p.table("sensor_readings")
    assert sensor.compression.after == "7 days" and sensor.compression.segment_by == ("sensor_id",)
    assert sensor.retention.drop_after == "365 days"
    carol = next(u for u in p.users if u.name == "carol")
    assert dict(carol.attributes) == {"department": "Sales"}
    managers = p.role("department_managers")
    assert managers.slice_of("financial_metrics").column == "department"
    assert managers.slice_of("sensor_readings") is None  # they still read all sensor rows
    hourly = p.aggregate("sensor_hourly")
    assert hourly.source == "sensor_readings" and hourly.bucket == "1 hour"
    assert {(c.name, c.function, c.column) for c in hourly.columns} == {
        ("avg_temperature", "avg", "temperature"),
        ("avg_humidity", "avg", "humidity"),
    }
    assert p.expected_privileges("frank") == {
        **{t: frozenset() for t in p.managed_tables},
        "sensor_hourly": frozenset({"SELECT"}),
    }
    assert p.sliced_roles("financial_metrics") == ("department_managers",)


BAD = [
    (
        "slices and compression on one table",
        lambda d: d["tables"]["financial_metrics"].update(compression={"after": "7 days"}),
        "tables.financial_metrics.compression",
        "columnstore",
    ),
    (
        "a sliced user without the attribute",
        lambda d: d["users"]["carol"].pop("attributes"),
        "users.carol.attributes",
        "give the user attributes",
    ),
    (
        "a slice of a table the role is not granted",
        lambda d: d["roles"]["data_analysts"].update(slices={"financial_metrics": "department"}),
        "roles.data_analysts.slices.financial_metrics",
        "not granted",
    ),
    (
        "a slice on a column the table lacks",
        lambda d: d["roles"]["department_managers"].update(slices={"financial_metrics": "region"}),
        "roles.department_managers.slices.financial_metrics",
        "not a column",
    ),
    (
        "TRUNCATE for a sliced role",
        lambda d: d["roles"]["department_managers"]["grants"].update(
            financial_metrics=["SELECT", "TRUNCATE"]
        ),
        "roles.department_managers.grants.financial_metrics",
        "TRUNCATE ignores row-level security",
    ),
    (
        "an aggregate over a sliced table",
        lambda d: d["aggregates"]["sensor_hourly"].update(
            source="financial_metrics", group_by=[], columns={"total": "sum(amount)"}
        ),
        "aggregates.sensor_hourly.source",
        "every reader would see every slice",
    ),
    (
        "an aggregate function outside the list",
        lambda d: d["aggregates"]["sensor_hourly"]["columns"].update(x="pg_sleep(humidity)"),
        "aggregates.sensor_hourly.columns.x",
        "is not one of",
    ),
    (
        "write privileges on an aggregate",
        lambda d: d["roles"]["dashboard_viewers"]["grants"].update(sensor_hourly=["INSERT"]),
        "roles.dashboard_viewers.grants.sensor_hourly",
        "read-only",
    ),
    (
        "compression on a plain table",
        lambda d: d["tables"]["sensor_readings"].update(hypertable=False),
        "tables.sensor_readings.compression",
        "needs a hypertable",
    ),
    (
        "a bad interval",
        lambda d: d["tables"]["sensor_readings"]["retention"].update(drop_after="a year"),
        "tables.sensor_readings.retention.drop_after",
        "interval",
    ),
    (
        "an order_by that is not a column and a direction",
        lambda d: d["tables"]["sensor_readings"]["compression"].update(order_by=["time; drop"]),
        "tables.sensor_readings.compression.order_by[0]",
        "ASC|DESC",
    ),
    (
        "an unknown compression key",
        lambda d: d["tables"]["sensor_readings"]["compression"].update(segmentby=["x"]),
        "tables.sensor_readings.compression.segmentby",
        "unknown key",
    ),
    (
        "retention on an integer time column",
        lambda d: d["tables"]["sensor_readings"]["columns"].update(time="bigint not null"),
        "tables.sensor_readings.retention",
        "timestamp or date",
    ),
    (
        "an aggregate named like a table",
        lambda d: d["aggregates"].update(financial_metrics=d["aggregates"]["sensor_hourly"]),
        "aggregates.financial_metrics",
        "already the name",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "path", "text"), BAD, ids=[b[0] for b in BAD])
def test_bad_timescale_policy_is_rejected_with_path_and_reason(name, mutate, path, text):
    with pytest.raises(PolicyError) as err:
        parse_policy(variant(mutate), source="t.toml")
    assert err.value.path.startswith(path), err.value.path
    assert text in str(err.value)
