"""The policy writer (``tsaccess generate``'s output) is the inverse of the loader, and the two
adoption switches (``public``, ``chunk_privileges``) load, validate and write back."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tsaccess import PolicyError
from tsaccess.policy import Column, GroupRole, Policy, Table, User, load_policy, parse_policy
from tsaccess.policy.writing import dump_policy

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_round_trips(path):
    policy = load_policy(path)
    text = dump_policy(policy, header=["a header"], notes={"database": ["a note"]})
    again = parse_policy(tomllib.loads(text), source=policy.source)
    assert again == policy
    assert text.startswith("# a header\n") and "# a note" in text


def test_awkward_names_and_values_round_trip():
    policy = Policy(
        database="my db",
        tables=(
            Table(
                "odd table",
                (
                    Column("ä col", "varchar(20)", False, 'it\'s "quoted" \\ here'),
                    Column("n", "numeric(5,2)", True, 1.5),
                    Column("b", "boolean", True, False),
                    Column("t", "timestamptz", False, None, "now()"),
                ),
            ),
        ),
        roles=(
            GroupRole(
                "Readers",
                (("odd table", frozenset({"SELECT"})),),
                "who reads",
                column_grants=(("odd table", "UPDATE", ("n", "ä col")),),
                default_grants=frozenset({"SELECT"}),
            ),
        ),
        users=(User("Zoë", ("Readers",), 3, settings=(("statement_timeout", "30s"),)),),
        public="keep",
    )
    text = dump_policy(policy, notes={"tables.odd table": ["long " * 40]})
    assert parse_policy(tomllib.loads(text), source="") == policy
    assert max(len(line) for line in text.splitlines() if line.startswith("#")) <= 100


def test_the_switches_are_checked():
    base = {
        "database": {"name": "d"},
        "tables": {
            "m": {"hypertable": True, "time_column": "t", "columns": {"t": "timestamptz not null"}}
        },
    }
    p = parse_policy(base)
    assert (p.public, p.chunk_privileges) == ("revoke", "select")
    with pytest.raises(PolicyError, match=r'public = .everyone.; use "revoke"'):
        parse_policy({**base, "database": {"name": "d", "public": "everyone"}})
    audited = {**base, "database": {"name": "d", "chunk_privileges": "copied"}}
    with pytest.raises(PolicyError, match="hypertable 'm' is audited"):
        parse_policy(audited)
    off = {**audited, "audit": {"default_mode": "off"}}
    assert parse_policy(off).chunk_privileges == "copied"
    assert 'chunk_privileges = "copied"' in dump_policy(parse_policy(off))
