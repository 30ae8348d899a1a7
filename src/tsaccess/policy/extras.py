"""Column grants, role nesting, default privileges, user settings.

The parts of the policy format added after the first version, kept apart from
:mod:`tsaccess.policy.validate` so each can grow on its own; errors go to the policy's
:class:`~tsaccess.policy.problems.Problems` (every error in one run).
"""

from __future__ import annotations

import re

from tsaccess.errors import PolicyError
from tsaccess.policy.base import TABLE_PRIVILEGES
from tsaccess.policy.parts import PolicyShape
from tsaccess.policy.problems import Problems

__all__ = [
    "COLUMN_PRIVILEGES",
    "SETTING_RE",
    "parse_settings",
    "split_column_grants",
    "validate_extras",
]

COLUMN_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")
SETTING_RE = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")
_COLUMN_GRANT = re.compile(r"^\s*([A-Za-z]+)\s*\((.*)\)\s*$")
_FORBIDDEN_SETTINGS = {"role", "session_authorization", "is_superuser"}


def split_column_grants(
    table: str,
    entries: tuple[str, ...],
    path: str,
    source: str,
    problems: Problems | None = None,
) -> tuple[tuple[str, ...], list[tuple[str, str, tuple[str, ...]]]]:
    """Split ``["SELECT", "UPDATE (a, b)"]`` into table privileges and column grants.

    A malformed entry is an error (added to ``problems`` and left out, or raised without it).
    """
    plain: list[str] = []
    cols: list[tuple[str, str, tuple[str, ...]]] = []

    def bad(message: str) -> None:
        if problems is None:
            raise PolicyError(message, path=path, source=source)
        problems.add(message, path)

    for entry in entries:
        m = _COLUMN_GRANT.match(entry)
        if m is None:
            plain.append(entry)
            continue
        priv = m.group(1).upper()
        if priv not in COLUMN_PRIVILEGES:
            bad(
                f"{entry!r}: column grants take {', '.join(COLUMN_PRIVILEGES)}, "
                f'e.g. "SELECT (a, b)" or "UPDATE (c)"'
            )
            continue
        names = tuple(c.strip() for c in m.group(2).split(","))
        if not all(names):
            bad(f'{entry!r}: list the columns separated by commas, e.g. "{priv} (a, b)"')
            continue
        cols.append((table, priv, tuple(sorted(set(names)))))
    return tuple(plain), cols


def parse_settings(
    value: object, path: str, source: str, problems: Problems | None = None
) -> tuple[tuple[str, str], ...]:
    """``{ statement_timeout = "30s", default_transaction_read_only = true }`` as text pairs;
    a bad value is an error (added to ``problems`` and left out, or raised without it)."""
    if not isinstance(value, dict):
        raise PolicyError(
            'must be a table like { statement_timeout = "30s" }', path=path, source=source
        )
    out: list[tuple[str, str]] = []
    for key, v in value.items():
        if isinstance(v, bool):
            text = "on" if v else "off"
        elif isinstance(v, int | float | str):
            text = str(v)
        else:
            msg = "must be a string, a number or true/false"
            if problems is None:
                raise PolicyError(msg, path=f"{path}.{key}", source=source)
            problems.add(msg, f"{path}.{key}")
            continue
        out.append((str(key), text))
    return tuple(sorted(out))


def validate_extras(p: PolicyShape, problems: Problems) -> None:
    """Check column grants, nested roles, default privileges, user settings, and the
    ``public`` and ``chunk_privileges`` switches."""
    _validate_switches(p, problems)
    built = {t.name for t in p.tables}
    roles = problems.known("roles", (r.name for r in p.roles))
    for r in p.roles:
        rp = f"roles.{r.name}"
        for table, priv, cols in r.column_grants:
            t = p.table(table)
            if t is None:
                if not problems.declared_only("tables", table, built):
                    problems.add(
                        f"unknown table {table!r} in a column grant; declare it under "
                        f"[tables.{table}] (known: "
                        f"{', '.join(sorted(problems.known('tables', built)))})",
                        f"{rp}.grants.{table}",
                    )
                continue
            for c in cols:
                if t.column(c) is None and not problems.column_declared(table, c):
                    problems.add(
                        f"{priv} ({c}): {c!r} is not a column of {table!r} (columns: "
                        f"{', '.join(x.name for x in t.columns)})",
                        f"{rp}.grants.{table}",
                    )
            if priv in r.privileges_on(table):
                problems.add(
                    f"{priv} is granted on the whole table {table!r} and on some of its columns;"
                    " keep one of them",
                    f"{rp}.grants.{table}",
                )
        for priv in sorted(set(r.default_grants) - set(TABLE_PRIVILEGES)):
            problems.add(
                f"unknown privilege {priv!r}; use {', '.join(TABLE_PRIVILEGES)}",
                f"{rp}.default_grants",
            )
        for parent in r.member_of:
            if parent not in roles:
                problems.add(
                    f"unknown role {parent!r}; declare it under [roles.{parent}] (known: "
                    f"{', '.join(sorted(roles))})",
                    f"{rp}.roles",
                )
    # nesting must not loop (PostgreSQL refuses circular memberships)
    parents = {r.name: r.member_of for r in p.roles}
    for start in parents:
        todo, seen = list(parents[start]), set()
        while todo:
            n = todo.pop()
            if n == start:
                problems.add(
                    f"role {start!r} would be a member of itself through nested roles; "
                    "remove one link of the cycle",
                    f"roles.{start}.roles",
                )
                break
            if n not in seen:
                seen.add(n)
                todo += list(parents.get(n, ()))
    for u in p.users:
        for key, _ in u.settings:
            path = f"users.{u.name}.settings.{key}"
            if not SETTING_RE.fullmatch(key):
                problems.add(
                    f"{key!r} is not a setting name (lower-case letters, digits, _ and one "
                    "optional dot)",
                    path,
                )
            elif key in _FORBIDDEN_SETTINGS:
                problems.add(f"{key} cannot be set per user by tsaccess; remove it", path)


def _validate_switches(p: PolicyShape, problems: Problems) -> None:
    if p.public not in ("revoke", "keep"):
        problems.add(
            f'public = {p.public!r}; use "revoke" (the default) or "keep"', "database.public"
        )
    if p.chunk_privileges not in ("select", "copied"):
        problems.add(
            f'chunk_privileges = {p.chunk_privileges!r}; use "select" (the default) or "copied"',
            "database.chunk_privileges",
        )
    if p.chunk_privileges == "copied":
        audited = [t.name for t in p.tables if t.hypertable and t.audit != "off"]
        sliced = sorted({s.table for r in p.roles for s in r.slices})
        if audited or sliced:
            what = (
                f"hypertable {audited[0]!r} is audited (a write on a chunk skips its audit "
                "triggers)"
                if audited
                else f"table {sliced[0]!r} has row slices (chunks carry no row-level security)"
            )
            problems.add(
                f'chunk_privileges = "copied" leaves writers their privileges on chunks, but '
                f'{what}; use chunk_privileges = "select"',
                "database.chunk_privileges",
            )
