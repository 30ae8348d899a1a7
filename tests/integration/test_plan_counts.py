"""Plan counts equal the statements apply runs, and no plan line comes twice (issue 26): swept
over every example policy, applied from scratch and then pruned (a role with members and its
users removed from the policy)."""

from __future__ import annotations

import collections
import copy
import tomllib
from pathlib import Path

import pytest

from tsaccess.passwords import resolve_passwords
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import parse_policy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(ROOT.glob("examples/*.toml"))

pytestmark = pytest.mark.timescaledb


def _pruned(data: dict) -> dict:
    """The policy without its first role that has users, without those users."""
    data = copy.deepcopy(data)
    users = data.get("users", {})
    role = next(r for r in data["roles"] if any(r in u.get("roles", []) for u in users.values()))
    del data["roles"][role]
    for name in [n for n, u in users.items() if role in u.get("roles", [])]:
        del users[name]
    for r in data["roles"].values():
        if role in r.get("roles", []):
            r["roles"] = [x for x in r["roles"] if x != role]
    return data


def _check(p, label: str) -> int:
    statements = [s.text(redact=False) for s in p.steps]
    twice = [s for s, n in collections.Counter(statements).items() if n > 1]
    assert twice == [], (label, twice)
    obj, lines = None, []
    for line in p.summary().splitlines():
        if line and not line.startswith(" "):
            obj = line
        elif line.startswith("  "):
            lines.append((obj, line))
    shown = [x for x, n in collections.Counter(lines).items() if n > 1]
    assert shown == [], (label, shown)
    texts = [line for _, line in lines if "--verbose lists them" not in line]
    again = [x for x, n in collections.Counter(texts).items() if n > 1]
    assert again == [], (label, again)  # the same line under two objects is one change twice
    counts = p.counts()
    assert sum(counts.values()) == len(p.steps), (label, counts, len(p.steps))
    plan_line = next(x for x in p.summary().splitlines() if x.startswith("Plan: "))
    assert plan_line == (
        f"Plan: {counts['add']} to add, {counts['change']} to change, {counts['revoke']} to revoke."
    )
    return len(p.steps)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_plan_counts_are_the_statements_apply_runs(db, example):
    data = tomllib.loads(example.read_text())
    data["database"]["name"] = db.name
    policy = parse_policy(data, source=example.name)
    pw = resolve_passwords([u.name for u in policy.users], generate=True, environ={})
    with db.admin() as conn:
        shown = plan(conn, policy, passwords=pw)
        conn.rollback()
        n = _check(shown, f"{example.name}: new")
        assert apply(conn, policy, passwords=pw).applied == n
        pruned = parse_policy(_pruned(data), source=example.name)
        shown = plan(conn, pruned, passwords=pw)
        conn.rollback()
        n = _check(shown, f"{example.name}: pruned")
        assert n > 0
        assert apply(conn, pruned, passwords=pw).applied == n
