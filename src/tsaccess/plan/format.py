"""A plan as people read it: ``+``/``-``/``~`` markers, grouped by object, with a summary line.

Like ``terraform plan``: ``+`` adds (create, grant), ``-`` revokes (revoke, disable, drop),
``~`` changes in place. The audit trail's internals (functions, triggers, row types) fold into
one line per table unless ``verbose``; bookkeeping steps (the managed marker) are shown only
when verbose or when they are all an object's changes. The ``Plan:`` line counts statements —
exactly what ``apply`` runs — whatever is folded; a note under it says when lines were folded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Literal

from tsaccess.steps import Step

__all__ = ["MARKS", "Action", "action_of", "counts", "object_of", "render"]

Action = Literal["add", "change", "revoke"]
MARKS: dict[Action, str] = {"add": "+", "change": "~", "revoke": "-"}

_OBJECT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(?:grant|revoke) .* on (table|view|database|schema) (\S+) (?:to|from) "), ""),
    (re.compile(r"^create table (\S+)"), "table"),
    (re.compile(r"^add column ([^.\s]+)\."), "table"),
    (re.compile(r"^index (\S+) \("), "table"),
    (re.compile(r"^make (\S+) a hypertable"), "table"),
    (re.compile(r"^create schema (\S+)"), "schema"),
    (re.compile(r"^create group role (\S+)"), "role"),
    (re.compile(r"^make (\S+) a NOLOGIN group role"), "role"),
    (re.compile(r"^create login user (\S+)"), "user"),
    (re.compile(r"^reset attributes of login user (\S+)"), "user"),
    (re.compile(r"^set password of (\S+)"), "user"),
    (re.compile(r"^revoke membership of (\S+) in "), "member"),
    (re.compile(r"^grant role \S+ to (\S+)"), "member"),
)


def action_of(step: Step) -> Action:
    """The step's own action, or the one its summary's verb says."""
    if step.action is not None:
        return step.action
    s = step.summary.lower()
    if s.startswith("create or replace"):
        return "change"
    if s.startswith(("create", "grant", "add ", "index ", "audit ")) or (
        s.startswith("make") and "hypertable" in s
    ):
        return "add"
    if s.startswith(("revoke", "drop", "disable")):
        return "revoke"
    return "change"


def object_of(step: Step, logins: Collection[str] = ()) -> str:
    """What the step changes: ``table vitals``, ``role nurses``, ``user paul``, ``database``."""
    if step.object is not None:
        return step.object
    for pattern, kind in _OBJECT_PATTERNS:
        m = pattern.match(step.summary)
        if m is None:
            continue
        if not kind:
            return f"{m.group(1)} {m.group(2)}"
        name = m.group(1)
        if kind == "member":
            kind = "user" if name in logins else "role"
        return f"{kind} {name}"
    if step.summary.startswith("create extension"):
        return "database"
    return "other"


def _audit_table(step: Step, tables: Collection[str]) -> str | None:
    """The policy table an audit step is about (None: the shared audit internals)."""
    words = set(re.findall(r"[\w$]+", step.summary))
    hits = [t for t in tables if t in words]
    return hits[0] if len(hits) == 1 else None


def _foldable(step: Step) -> bool:
    """Audit internals; grants on the audit table and its view stay visible."""
    return step.phase == "audit" and not re.match(
        r"^(grant|revoke) .* on (table|view) ", step.summary
    )


Line = tuple[str, Action, str]
"""(object, action, text)."""


def _lines(
    steps: Sequence[Step], verbose: bool, logins: Collection[str], tables: Collection[str]
) -> list[Line]:
    lines: list[Line] = []
    folded: dict[str, list[Step]] = {}
    fold_at: dict[str, int] = {}
    internal: dict[str, list[Step]] = {}
    for s in steps:
        if _foldable(s) and s.object is None:
            table = _audit_table(s, tables)
            obj = f"table {table}" if table else "audit trail"
            if verbose:
                lines.append((obj, action_of(s), s.summary))
                continue
            if obj not in folded:
                folded[obj] = []
                fold_at[obj] = len(lines)
                lines.append((obj, "change", ""))  # placeholder, filled below
            folded[obj].append(s)
            continue
        obj = object_of(s, logins)
        if s.internal and not verbose:
            internal.setdefault(obj, []).append(s)
            continue
        lines.append((obj, action_of(s), s.summary))
    for obj, group in folded.items():
        acts = {action_of(s) for s in group}
        act: Action = acts.pop() if len(acts) == 1 else "change"
        lines[fold_at[obj]] = (
            obj,
            act,
            f"audit trail: {len(group)} statement(s) (--verbose lists them)",
        )
    shown = {obj for obj, _, _ in lines}
    for obj, group in internal.items():
        if obj not in shown:  # nothing else changes on it: show its bookkeeping
            lines += [(obj, action_of(s), s.summary) for s in group]
    return lines


def counts(
    steps: Sequence[Step],
    *,
    verbose: bool = False,
    logins: Collection[str] = (),
    tables: Collection[str] = (),
) -> dict[Action, int]:
    """Statements to add, change and revoke: their sum is what ``apply`` runs (folded or not;
    ``verbose``, ``logins`` and ``tables`` change only how :func:`render` shows them)."""
    c = Counter(action_of(s) for s in steps)
    return {"add": c["add"], "change": c["change"], "revoke": c["revoke"]}


def render(
    steps: Sequence[Step],
    warnings: Sequence[str] = (),
    *,
    verbose: bool = False,
    logins: Collection[str] = (),
    tables: Collection[str] = (),
) -> str:
    """The plan as text: one block per object, then ``Plan: N to add, N to change, N to revoke.``"""
    if not steps:
        return "\n".join(
            ["Nothing to do: the database matches the policy."]
            + [f"warning: {w}" for w in warnings]
        )
    lines = _lines(steps, verbose, logins, tables)
    order: list[str] = []
    by_obj: dict[str, list[tuple[Action, str]]] = {}
    for obj, act, text in lines:
        if obj not in by_obj:
            order.append(obj)
            by_obj[obj] = []
        by_obj[obj].append((act, text))
    out: list[str] = []
    for obj in order:
        out.append(obj)
        out += [f"  {MARKS[a]} {t}" for a, t in by_obj[obj]]
    c = counts(steps)
    out.append("")
    out.append(f"Plan: {c['add']} to add, {c['change']} to change, {c['revoke']} to revoke.")
    if len(lines) != len(steps):
        out.append(
            f"({len(steps)} statements, shown in {len(lines)} lines: audit internals and "
            "bookkeeping are folded; --verbose lists every statement)"
        )
    out += [f"warning: {w}" for w in warnings]
    return "\n".join(out)
