"""Every error of a policy in one run (issue 26): types, unknown tables, roles, privileges and
keys, each with its key path, its line in the file and the fix; "known" lists name everything
the file declares, also the items that had an error themselves."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tsaccess import PolicyError, PolicyErrors
from tsaccess.policy import load_policy, parse_policy

BAD = """\
[database]
name = "shop"

[tables.orders]
columns = { id = "integer not null", total = "money" }

[tables.items]
columns = { id = "integer" }
hypertable = "yes"

[roles.clerks]
grants = { orders = ["SELECT"], invoices = ["SELECT"], items = ["SELECT", "READ"] }

[roles.managers]
grants = { orders = ["SELECT"] }
colour = "blue"

[users.ann]
roles = ["clerks", "bosses"]
"""


def _errors(exc: PolicyError) -> list[PolicyError]:
    return list(exc.errors) if isinstance(exc, PolicyErrors) else [exc]


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_type_an_unknown_table_role_privilege_and_key_are_reported_at_once(tmp_path: Path):
    f = tmp_path / "shop.toml"
    f.write_text(BAD)
    with pytest.raises(PolicyErrors) as exc:
        load_policy(f)
    found = {(e.path, e.line): str(e) for e in _errors(exc.value)}
    assert sorted(p for p, _ in found) == [
        "roles.clerks.grants.invoices",
        "roles.clerks.grants.items",
        "roles.managers.colour",
        "tables.items.hypertable",
        "tables.orders.columns.total",
        "users.ann.roles",
    ], list(found.values())
    by_path = {p: (line, text) for (p, line), text in found.items()}
    # each with its place in the file: the file, the line of the key and the key path
    assert by_path["tables.orders.columns.total"][0] == _line(BAD, 'total = "money"')
    assert by_path["roles.clerks.grants.items"][0] == _line(BAD, '"READ"')
    assert by_path["roles.managers.colour"][0] == _line(BAD, "colour")
    assert by_path["users.ann.roles"][0] == _line(BAD, '"bosses"')
    assert by_path["tables.items.hypertable"][0] == _line(BAD, 'hypertable = "yes"')
    line, text = by_path["users.ann.roles"]
    assert text.startswith(f"{f}:{line} [users.ann.roles]: ")
    # ... and the fix
    assert "unsupported column type" in by_path["tables.orders.columns.total"][1]
    assert "unknown privilege 'READ'; use SELECT, INSERT" in by_path["roles.clerks.grants.items"][1]
    assert "declare it under [roles.bosses]" in by_path["users.ann.roles"][1]
    assert "unknown key 'colour'; allowed here:" in by_path["roles.managers.colour"][1]
    # "known" lists name everything declared, also items that had an error of their own
    assert "(known: clerks, managers)" in by_path["users.ann.roles"][1]
    unknown_table = by_path["roles.clerks.grants.invoices"][1]
    assert "unknown table 'invoices'" in unknown_table
    assert "activity_audit, items, orders)" in unknown_table
    # a message for the whole: how many, then one line each
    assert str(exc.value).splitlines()[0] == "6 errors in the policy:"


def test_an_unknown_table_and_an_unknown_privilege_in_one_grant_are_both_reported():
    data = tomllib.loads(BAD.replace('invoices = ["SELECT"]', 'invoices = ["SELEKT"]'))
    with pytest.raises(PolicyErrors) as exc:
        parse_policy(data, source="shop.toml")
    msgs = [str(e) for e in _errors(exc.value) if e.path == "roles.clerks.grants.invoices"]
    assert any("unknown table 'invoices'" in m for m in msgs), msgs
    assert any("unknown privilege 'SELEKT'" in m for m in msgs), msgs


def test_references_to_an_item_with_an_error_are_not_errors_of_their_own():
    """A grant on a table whose column type is wrong, a time column whose type is wrong, a user
    of a role with a bad key: one error each, at the item, no cascade."""
    text = """\
[database]
name = "shop"

[tables.readings]
columns = { time = "timestamptz not nul", v = "real" }
time_column = "time"
hypertable = true

[tables.readings.compression]
segment_by = ["v"]

[roles.r]
grants = { readings = ["SELECT"] }
description = 3

[users.u]
roles = ["r"]
"""
    with pytest.raises(PolicyError) as exc:
        parse_policy(tomllib.loads(text), source="s.toml")
    paths = sorted(e.path for e in _errors(exc.value))
    assert paths == ["roles.r.description", "tables.readings.columns.time"], [
        str(e) for e in _errors(exc.value)
    ]


def test_a_policy_built_in_code_reports_every_error_too():
    from tsaccess.policy import Column, GroupRole, Policy, Table, User

    with pytest.raises(PolicyErrors) as exc:
        Policy(
            database="d",
            tables=(Table("t", (Column("a", "int"),)),),
            roles=(GroupRole("r", (("nope", frozenset({"SELECT"})),)),),
            users=(User("u", ("ghost",)),),
        )
    assert sorted(e.path for e in exc.value.errors) == ["roles.r.grants.nope", "users.u.roles"]
