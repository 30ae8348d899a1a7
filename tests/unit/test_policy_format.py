"""The policy format added in issue 13 (column grants, nested roles, default privileges, user
settings), every error at once, and the plan's markers and counts — no server needed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from tsaccess import PolicyError, PolicyErrors
from tsaccess.plan.format import action_of, counts, object_of, render
from tsaccess.plan.phases.markers import marked_databases, role_marker
from tsaccess.policy import load_policy, parse_policy
from tsaccess.steps import Step

ROOT = Path(__file__).resolve().parents[2]


def _base(**roles: dict) -> dict:
    return {
        "database": {"name": "h", "schema": "clinical"},
        "tables": {"t": {"columns": {"a": "int", "b": "text", "c": "text"}}},
        "roles": roles,
    }


def test_the_hospital_example_loads():
    p = load_policy(ROOT / "examples" / "hospital.toml")
    assert {r.name for r in p.roles} == {"nurses", "physicians", "researchers"}
    assert [t.name for t in p.tables if t.hypertable] == ["vitals", "medications"]
    assert p.schema == "clinical"
    assert p.roles_of("maria") == ("nurses", "physicians")
    assert p.expected_privileges("maria")["vitals"] == {"SELECT", "INSERT"}
    research = p.role("researchers")
    assert research is not None
    assert research.column_grants == (("vitals", "SELECT", ("heart_rate", "spo2", "time", "ward")),)
    assert research.grants == ()  # no table-wide privilege
    assert p.role("physicians").default_grants == {"SELECT"}  # type: ignore[union-attr]
    assert dict(next(u for u in p.users if u.name == "maria").settings) == {
        "statement_timeout": "60s"
    }


def test_column_grants_parse_and_mix_with_table_grants():
    p = parse_policy(_base(r={"grants": {"t": ["SELECT", "UPDATE ( c , b )", "insert (a)"]}}))
    r = p.role("r")
    assert r is not None
    assert r.privileges_on("t") == {"SELECT"}
    assert r.column_grants == (("t", "INSERT", ("a",)), ("t", "UPDATE", ("b", "c")))


@pytest.mark.parametrize(
    ("grants", "message"),
    [
        (["SELECT (zz)"], "'zz' is not a column of 't'"),
        (["DELETE (a)"], "column grants take SELECT, INSERT, UPDATE"),
        (["SELECT (a,)"], "list the columns separated by commas"),
        (["SELECT", "SELECT (a)"], "on the whole table 't' and on some of its columns"),
    ],
)
def test_bad_column_grants_name_the_fix(grants, message):
    with pytest.raises(PolicyError, match=message) as exc:
        parse_policy(_base(r={"grants": {"t": grants}}))
    assert exc.value.path == "roles.r.grants.t"


def test_nested_roles_must_exist_and_not_loop():
    with pytest.raises(PolicyError, match="unknown role 'x'"):
        parse_policy(_base(r={"roles": ["x"]}))
    with pytest.raises(PolicyError, match="member of itself") as exc:
        parse_policy(_base(a={"roles": ["b"]}, b={"roles": ["c"]}, c={"roles": ["a"]}))
    assert exc.value.path.endswith(".roles")


def test_settings_are_text_and_names_are_checked():
    base = _base(r={})
    base["users"] = {"u": {"roles": ["r"], "settings": {"x.y": True, "work_mem": 64}}}
    assert parse_policy(base).users[0].settings == (("work_mem", "64"), ("x.y", "on"))
    base["users"]["u"]["settings"] = {"role": "postgres"}
    with pytest.raises(PolicyError, match="cannot be set per user"):
        parse_policy(base)
    base["users"]["u"]["settings"] = {"a b; DROP": "1"}
    with pytest.raises(PolicyError, match="is not a setting name"):
        parse_policy(base)


def test_every_error_of_a_policy_is_reported_at_once():
    text = (ROOT / "examples" / "hospital.toml").read_text()
    bad = (
        text.replace('"UPDATE (note)"', '"UPDATE (nothere)"')
        .replace('roles = ["physicians"]', 'roles = ["surgeons"]')
        .replace('default_grants = ["SELECT"]', 'default_grants = ["SELEKT"]')
        .replace("[database]", "colour = 1\n[database]")
    )
    with pytest.raises(PolicyErrors) as exc:
        parse_policy(tomllib.loads(bad), source="h.toml")
    paths = [e.path for e in exc.value.errors]
    assert sorted(paths) == sorted(
        [
            "colour",
            "roles.nurses.grants.vitals",
            "roles.physicians.default_grants",
            "users.maria.roles",
        ]
    )
    assert str(exc.value).startswith("4 errors in the policy:\n  h.toml [")
    assert exc.value.path == exc.value.errors[0].path
    # a single error stays a plain PolicyError
    with pytest.raises(PolicyError) as one:
        parse_policy(tomllib.loads(text.replace('"UPDATE (note)"', '"UPDATE (x)"')))
    assert not isinstance(one.value, PolicyErrors)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["users", "roles", "grants", "cols", "top"]), max_size=5))
def test_collected_errors_are_each_a_real_error(breaks):
    """Invariant: one reported error per mistake made, no more (no cascade noise), no less."""
    text = (ROOT / "examples" / "hospital.toml").read_text()
    edits = {
        "users": ('roles = ["physicians"]', 'roles = ["nobody"]'),
        "roles": ('roles = ["nurses"]           #', 'roles = ["ghost"]           #'),
        "grants": ('grants = { medications = ["UPDATE"', 'grants = { medications = ["UPDAT"'),
        "cols": ('"UPDATE (note)"', '"UPDATE (nope)"'),
        "top": ("[database]", "extra = 1\n[database]"),
    }
    for b in set(breaks):
        text = text.replace(*edits[b])
    if not breaks:
        parse_policy(tomllib.loads(text))
        return
    with pytest.raises(PolicyError) as exc:
        parse_policy(tomllib.loads(text))
    found = exc.value.errors if isinstance(exc.value, PolicyErrors) else (exc.value,)
    assert len(found) == len(set(breaks)), [str(e) for e in found]


def _step(summary: str, phase: str = "security", **kw) -> Step:
    return Step(sql.SQL("SELECT 1"), summary, phase, **kw)  # type: ignore[arg-type]


def test_markers_objects_and_counts():
    steps = [
        _step("create table vitals", "schema"),
        _step("grant SELECT on table vitals to nurses"),
        _step("revoke INSERT on table vitals from PUBLIC"),
        _step("create or replace audit function tsaccess_audit_stmt", "audit"),
        _step("audit statement-level on vitals (tsaccess_audit_ins_1)", "audit"),
        _step("revoke membership of paul in nurses"),
        _step("reset attributes of login user rita"),
        _step("mark user rita as managed by tsaccess", internal=True, object="user rita"),
        _step("mark role x as managed by tsaccess", internal=True, object="role x"),
    ]
    assert [action_of(s) for s in steps[:7]] == [
        "add",
        "add",
        "revoke",
        "change",
        "add",
        "revoke",
        "change",
    ]
    assert object_of(steps[5], {"paul"}) == "user paul"
    assert object_of(steps[5]) == "role paul"
    text = render(steps, ["careful"], logins={"paul", "rita"}, tables=["vitals"])
    assert text.splitlines() == [
        "table vitals",
        "  + create table vitals",
        "  + grant SELECT on table vitals to nurses",
        "  - revoke INSERT on table vitals from PUBLIC",
        "  + audit trail: 1 statement(s) (--verbose lists them)",
        "audit trail",
        "  ~ audit trail: 1 statement(s) (--verbose lists them)",
        "user paul",
        "  - revoke membership of paul in nurses",
        "user rita",
        "  ~ reset attributes of login user rita",
        "role x",
        "  ~ mark role x as managed by tsaccess",
        "",
        "Plan: 3 to add, 4 to change, 2 to revoke.",  # statements, the folded ones included
        "(9 statements, shown in 8 lines: audit internals and bookkeeping are folded; "
        "--verbose lists every statement)",
        "warning: careful",
    ]
    assert counts(steps, logins={"paul"}, tables=["vitals"]) == {
        "add": 3,
        "change": 4,
        "revoke": 2,
    }
    verbose = render(steps, verbose=True, tables=["vitals"])
    assert "  ~ mark user rita as managed by tsaccess" in verbose
    assert "  + audit statement-level on vitals (tsaccess_audit_ins_1)" in verbose
    assert render([], ["w"]) == "Nothing to do: the database matches the policy.\nwarning: w"


@given(st.lists(st.text(min_size=1, max_size=12), max_size=4))
def test_role_marker_round_trips(dbs):
    assert marked_databases(role_marker(dbs)) == tuple(sorted(set(dbs)))


@pytest.mark.parametrize(
    "comment", [None, "", "hand-made", "tsaccess:managed {", "tsaccess:managed []"]
)
def test_other_comments_are_not_markers(comment):
    assert marked_databases(comment) == ()
