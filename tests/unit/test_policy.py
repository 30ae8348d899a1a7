"""Policy validation: every bad policy is rejected with the key path and the fix."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from tsaccess import PolicyError
from tsaccess.policy import load_policy, parse_policy, password_env_var

BASE = tomllib.loads((Path(__file__).parents[2] / "src/tsaccess/data/company.toml").read_text())


def variant(mutate) -> dict:
    data = copy.deepcopy(BASE)
    mutate(data)
    return data


def test_reference_policy_loads():
    p = parse_policy(BASE)
    assert [u.name for u in p.users] == ["alice", "bob", "carol", "david", "eve", "monitor"]
    assert [r.name for r in p.roles if r.monitoring] == ["security_monitoring"]
    assert p.expected_privileges("monitor") == {
        "sensor_readings": frozenset(),
        "financial_metrics": frozenset(),
        "activity_audit": {"SELECT"},
    }
    assert p.expected_privileges("bob")["sensor_readings"] == {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
    }
    assert p.table("financial_metrics").column("currency").default == "USD"
    assert p.table("financial_metrics").column("is_confidential").default is True
    assert p.managed_tables == ("sensor_readings", "financial_metrics", "activity_audit")


BAD = [
    (
        "unknown role in a grant",
        lambda d: d["users"]["alice"].update(roles=["nobody"]),
        "users.alice.roles",
        "unknown role 'nobody'",
    ),
    (
        "unknown table",
        lambda d: d["roles"]["auditors"]["grants"].update(nope=["SELECT"]),
        "roles.auditors.grants.nope",
        "unknown table 'nope'",
    ),
    (
        "unknown privilege",
        lambda d: d["roles"]["auditors"]["grants"].update(sensor_readings=["SELEKT"]),
        "roles.auditors.grants.sensor_readings",
        "unknown privilege 'SELEKT'",
    ),
    (
        "reserved pg_ role",
        lambda d: d["roles"].update(pg_evil={"grants": {}}),
        "roles.pg_evil",
        "reserved",
    ),
    (
        "reserved role name",
        lambda d: d["users"].update(public={"roles": []}),
        "users.public",
        "reserved",
    ),
    (
        "identifier too long",
        lambda d: d["users"].update({"u" * 64: {"roles": []}}),
        "users.uuu",
        "longer than 63 bytes",
    ),
    (
        "hypertable without time column",
        lambda d: d["tables"]["sensor_readings"].pop("time_column"),
        "tables.sensor_readings.time_column",
        "needs a time column",
    ),
    (
        "time column not a column",
        lambda d: d["tables"]["sensor_readings"].update(time_column="ts"),
        "tables.sensor_readings.time_column",
        "not one of the table's columns",
    ),
    (
        "time column of wrong type",
        lambda d: d["tables"]["sensor_readings"].update(time_column="location"),
        "tables.sensor_readings.columns.location",
        "must be timestamptz",
    ),
    (
        "unsupported type",
        lambda d: d["tables"]["sensor_readings"]["columns"].update(x="text); DROP TABLE y; --"),
        "tables.sensor_readings.columns.x",
        "unsupported column type",
    ),
    (
        "bad default",
        lambda d: d["tables"]["sensor_readings"]["columns"].update(x="text default pg_sleep(10)"),
        "tables.sensor_readings.columns.x",
        "is not allowed",
    ),
    (
        "password in policy",
        lambda d: d["users"]["alice"].update(password="hunter2"),
        "users.alice.password",
        "never live in the policy",
    ),
    (
        "user is also a role",
        lambda d: d["users"].update(auditors={"roles": []}),
        "users.auditors",
        "also a group role",
    ),
    (
        "write on audit table",
        lambda d: d["roles"]["auditors"]["grants"].update(activity_audit=["SELECT", "DELETE"]),
        "roles.auditors.grants.activity_audit",
        "grant at most SELECT",
    ),
    (
        "unknown key",
        lambda d: d["users"]["alice"].update(rolez=[]),
        "users.alice.rolez",
        "unknown key",
    ),
    (
        "bad timescaledb mode",
        lambda d: d["database"].update(timescaledb="maybe"),
        "database.timescaledb",
        'use "prefer"',
    ),
    (
        "audit column unknown",
        lambda d: d["tables"]["financial_metrics"].update(audit_exclude=["nope"]),
        "tables.financial_metrics.audit_columns",
        "not a column",
    ),
    (
        "audit data schema is the policy schema",
        lambda d: d["audit"].update(data_schema="public"),
        "audit.data_schema",
        "must be a schema of its own",
    ),
    (
        "table named like the per-row view",
        lambda d: d["tables"].update(activity_audit_rows={"columns": {"x": "text"}}),
        "tables.activity_audit_rows",
        "per-row audit view",
    ),
    (
        "per-row row type takes another table's name",
        lambda d: d["tables"].update(
            financial_metrics_row={"audit": "row", "columns": {"x": "text"}}
        ),
        "tables.financial_metrics.audit",
        "both audited per row",
    ),
    (
        "per-row audit with no column",
        lambda d: d["tables"]["financial_metrics"].update(audit_columns=[]),
        "tables.financial_metrics.audit_columns",
        "record no column",
    ),
    (
        "env var clash",
        lambda d: d["users"].update({"ALICE": {"roles": []}}),
        "users.ALICE",
        "same password variable",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "path", "text"), BAD, ids=[b[0] for b in BAD])
def test_bad_policy_is_rejected_with_path_and_fix(name, mutate, path, text):
    with pytest.raises(PolicyError) as err:
        parse_policy(variant(mutate), source="p.toml")
    assert err.value.path.startswith(path), err.value.path
    assert text in str(err.value)
    assert str(err.value).startswith("p.toml [")


def test_duplicate_user_in_file(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[database]\nname = "x"\n[users.bob]\nroles = []\n[users.bob]\nroles = []\n')
    with pytest.raises(PolicyError, match="declared twice"):
        load_policy(f)


def test_missing_file():
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy("/nonexistent/policy.toml")


def test_password_env_var():
    assert password_env_var("alice") == "TSACCESS_PASSWORD_ALICE"
    assert password_env_var("u$er-1") == "TSACCESS_PASSWORD_U_ER_1"
