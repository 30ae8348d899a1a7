"""Column grants, role nesting, default privileges, user settings; every error at once.

The parts of the policy format added after the first version, kept apart from
:mod:`tsaccess.policy.validate` so each can grow on its own.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tsaccess.errors import PolicyError, PolicyErrors
from tsaccess.policy.base import TABLE_PRIVILEGES
from tsaccess.policy.parts import PolicyShape

P = TypeVar("P")

__all__ = [
    "COLUMN_PRIVILEGES",
    "SETTING_RE",
    "collect_errors",
    "parse_settings",
    "split_column_grants",
    "validate_extras",
]

COLUMN_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")
SETTING_RE = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")
_COLUMN_GRANT = re.compile(r"^\s*([A-Za-z]+)\s*\((.*)\)\s*$")
_FORBIDDEN_SETTINGS = {"role", "session_authorization", "is_superuser"}


def split_column_grants(
    table: str, entries: tuple[str, ...], path: str, source: str
) -> tuple[tuple[str, ...], list[tuple[str, str, tuple[str, ...]]]]:
    """Split ``["SELECT", "UPDATE (a, b)"]`` into table privileges and column grants."""
    plain: list[str] = []
    cols: list[tuple[str, str, tuple[str, ...]]] = []
    for entry in entries:
        m = _COLUMN_GRANT.match(entry)
        if m is None:
            plain.append(entry)
            continue
        priv = m.group(1).upper()
        if priv not in COLUMN_PRIVILEGES:
            raise PolicyError(
                f"{entry!r}: column grants take {', '.join(COLUMN_PRIVILEGES)}, "
                f'e.g. "SELECT (a, b)" or "UPDATE (c)"',
                path=path,
                source=source,
            )
        names = tuple(c.strip() for c in m.group(2).split(","))
        if not all(names):
            raise PolicyError(
                f'{entry!r}: list the columns separated by commas, e.g. "{priv} (a, b)"',
                path=path,
                source=source,
            )
        cols.append((table, priv, tuple(sorted(set(names)))))
    return tuple(plain), cols


def parse_settings(value: object, path: str, source: str) -> tuple[tuple[str, str], ...]:
    """``{ statement_timeout = "30s", default_transaction_read_only = true }`` as text pairs."""
    if not isinstance(value, dict):
        raise PolicyError('must be a table like { statement_timeout = "30s" }', path=path)
    out: list[tuple[str, str]] = []
    for key, v in value.items():
        if isinstance(v, bool):
            text = "on" if v else "off"
        elif isinstance(v, int | float | str):
            text = str(v)
        else:
            raise PolicyError(
                "must be a string, a number or true/false", path=f"{path}.{key}", source=source
            )
        out.append((str(key), text))
    return tuple(sorted(out))


def validate_extras(p: PolicyShape) -> None:
    """Check column grants, nested roles, default privileges, user settings, and the
    ``public`` and ``chunk_privileges`` switches."""
    src = p.source
    _validate_switches(p)
    roles = {r.name for r in p.roles}
    for r in p.roles:
        rp = f"roles.{r.name}"
        for table, priv, cols in r.column_grants:
            t = p.table(table)
            if t is None:
                raise PolicyError(
                    f"unknown table {table!r} in a column grant; declare it under "
                    f"[tables.{table}] (known: {', '.join(sorted(x.name for x in p.tables))})",
                    path=f"{rp}.grants.{table}",
                    source=src,
                )
            for c in cols:
                if t.column(c) is None:
                    raise PolicyError(
                        f"{priv} ({c}): {c!r} is not a column of {table!r} (columns: "
                        f"{', '.join(x.name for x in t.columns)})",
                        path=f"{rp}.grants.{table}",
                        source=src,
                    )
            if priv in r.privileges_on(table):
                raise PolicyError(
                    f"{priv} is granted on the whole table {table!r} and on some of its columns;"
                    " keep one of them",
                    path=f"{rp}.grants.{table}",
                    source=src,
                )
        bad = set(r.default_grants) - set(TABLE_PRIVILEGES)
        if bad:
            raise PolicyError(
                f"unknown privilege {sorted(bad)[0]!r}; use {', '.join(TABLE_PRIVILEGES)}",
                path=f"{rp}.default_grants",
                source=src,
            )
        for parent in r.member_of:
            if parent not in roles:
                raise PolicyError(
                    f"unknown role {parent!r}; declare it under [roles.{parent}] (known: "
                    f"{', '.join(sorted(roles))})",
                    path=f"{rp}.roles",
                    source=src,
                )
    # nesting must not loop (PostgreSQL refuses circular memberships)
    parents = {r.name: r.member_of for r in p.roles}
    for start in parents:
        todo, seen = list(parents[start]), set()
        while todo:
            n = todo.pop()
            if n == start:
                raise PolicyError(
                    f"role {start!r} would be a member of itself through nested roles; "
                    "remove one link of the cycle",
                    path=f"roles.{start}.roles",
                    source=src,
                )
            if n not in seen:
                seen.add(n)
                todo += list(parents.get(n, ()))
    for u in p.users:
        for key, _ in u.settings:
            path = f"users.{u.name}.settings.{key}"
            if not SETTING_RE.fullmatch(key):
                raise PolicyError(
                    f"{key!r} is not a setting name (lower-case letters, digits, _ and one "
                    "optional dot)",
                    path=path,
                    source=src,
                )
            if key in _FORBIDDEN_SETTINGS:
                raise PolicyError(
                    f"{key} cannot be set per user by tsaccess; remove it", path=path, source=src
                )


def _validate_switches(p: PolicyShape) -> None:
    if p.public not in ("revoke", "keep"):
        raise PolicyError(
            f'public = {p.public!r}; use "revoke" (the default) or "keep"',
            path="database.public",
            source=p.source,
        )
    if p.chunk_privileges not in ("select", "copied"):
        raise PolicyError(
            f'chunk_privileges = {p.chunk_privileges!r}; use "select" (the default) or "copied"',
            path="database.chunk_privileges",
            source=p.source,
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
            raise PolicyError(
                f'chunk_privileges = "copied" leaves writers their privileges on chunks, but '
                f'{what}; use chunk_privileges = "select"',
                path="database.chunk_privileges",
                source=p.source,
            )


def _drop_item(data: dict[str, Any], path: str) -> bool:
    """Remove what ``path`` names (and references to it) so the rest can be checked."""
    parts = path.split(".")
    section = parts[0]
    if section in ("tables", "roles", "users") and len(parts) > 1:
        items = data.get(section)
        if not isinstance(items, dict) or parts[1] not in items:
            return False
        item = items[parts[1]]
        if section != "tables" and len(parts) > 2 and isinstance(item, dict) and parts[2] in item:
            if parts[2] == "grants" and len(parts) > 3 and isinstance(item["grants"], dict):
                item["grants"].pop(parts[3], None)  # one bad grant: keep checking the role
            else:
                del item[parts[2]]
            return True
        del items[parts[1]]
        for r in (data.get("roles") or {}).values():
            if not isinstance(r, dict):
                continue
            if section == "tables" and isinstance(r.get("grants"), dict):
                r["grants"].pop(parts[1], None)
            if section == "roles" and isinstance(r.get("roles"), list):
                r["roles"] = [x for x in r["roles"] if x != parts[1]]
        if section == "roles":
            for u in (data.get("users") or {}).values():
                if isinstance(u, dict) and isinstance(u.get("roles"), list):
                    u["roles"] = [x for x in u["roles"] if x != parts[1]]
        return True
    if section in ("database", "audit") and len(parts) > 1 and parts[1] != "name":
        sub = data.get(section)
        if isinstance(sub, dict) and parts[1] in sub:
            del sub[parts[1]]
            return True
        return False
    if len(parts) == 1 and section in data and section not in ("database",):
        del data[section]
        return True
    return False


def collect_errors(parse: Callable[..., P], data: Mapping[str, Any], source: str) -> P:
    """Run ``parse``; on an error, leave out the offending item and go on to find the others.

    Raises the single :class:`PolicyError`, or :class:`PolicyErrors` when there are several.
    """
    try:
        return parse(data, source=source)
    except PolicyError as first:
        errors = [first]
        work = copy.deepcopy(dict(data))
        path = first.path
        for _ in range(100):
            if not path or not _drop_item(work, path):
                break
            try:
                parse(work, source=source)
                break
            except PolicyError as exc:
                if str(exc) in {str(e) for e in errors}:
                    break
                errors.append(exc)
                path = exc.path
        if len(errors) == 1:
            raise first from None
        raise PolicyErrors(errors) from None
