"""Loading a policy from TOML (or any mapping of the same shape), item by item: every error of
the file is collected (:mod:`~tsaccess.policy.problems`) and raised together, each with its key
path, its line (:func:`load_policy`) and the fix."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from tsaccess.errors import PolicyError
from tsaccess.policy.base import (
    BASE_TYPES,
    DEFAULT_FUNCS,
    canonical_type,
    check_column,
    check_connection_limit,
    check_interval,
)
from tsaccess.policy.extras import parse_settings, split_column_grants
from tsaccess.policy.model import (
    TABLE_PRIVILEGES,
    AuditSettings,
    Column,
    GroupRole,
    Policy,
    Privilege,
    Table,
    User,
    password_env_var,
)
from tsaccess.policy.problems import Problems, collecting, key_line
from tsaccess.policy.timescale import (
    RowSlice,
    parse_aggregate,
    parse_attributes,
    parse_compression,
    parse_retention,
    parse_slices,
)

__all__ = ["load_policy", "parse_policy"]


def _parse_column(name: str, spec: object, path: str, source: str) -> Column:
    if not isinstance(spec, str):
        raise PolicyError(
            'a column is a string like "numeric(5,2) not null default 0"', path=path, source=source
        )
    text = " ".join(spec.strip().split())
    low = text.lower()
    default: str | int | float | bool | None = None
    default_function: str | None = None
    m = re.search(r"\s+default\s+(.+)$", low)
    if m:
        raw = text[m.start(1) :]
        low = low[: m.start()]
        if raw.startswith("'"):
            if not (len(raw) >= 2 and raw.endswith("'") and "'" not in raw[1:-1].replace("''", "")):
                raise PolicyError(
                    f"default {raw!r} is not a single-quoted string literal",
                    path=path,
                    source=source,
                )
            default = raw[1:-1].replace("''", "'")
        elif raw.lower() in ("true", "false"):
            default = raw.lower() == "true"
        elif re.fullmatch(r"-?\d+", raw):
            default = int(raw)
        elif re.fullmatch(r"-?\d+\.\d*", raw):
            default = float(raw)
        elif raw.lower() in DEFAULT_FUNCS:
            default_function = DEFAULT_FUNCS[raw.lower()]
        else:
            raise PolicyError(
                f"default {raw!r} is not allowed; use a quoted string, a number, true/false or "
                f"one of {', '.join(DEFAULT_FUNCS)}",
                path=path,
                source=source,
            )
    nullable = True
    if low.endswith(" not null"):
        nullable, low = False, low[: -len(" not null")]
    elif low.endswith(" null"):
        low = low[: -len(" null")]
    typ = canonical_type(low)
    if typ is None:
        raise PolicyError(
            f"unsupported column type in {spec!r}; use one of: {', '.join(sorted(BASE_TYPES))}"
            " (with (precision[, scale]) where it applies), then optional 'not null' and "
            "'default <literal>'",
            path=path,
            source=source,
        )
    check_column(name, typ, nullable, default, default_function, path, source)
    return Column(name, typ, nullable, default, default_function)


def _typed(
    value: object, kind: type, path: str, what: str, problems: Problems, fallback: Any
) -> Any:
    """``value`` when it is a ``kind``, else an error and ``fallback`` (checking goes on)."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    problems.add(f"must be {what}", path)
    return fallback


def _names(value: object, path: str, problems: Problems) -> tuple[str, ...] | None:
    """A list of strings, or None (the errors recorded)."""
    if not isinstance(value, list):
        problems.add('must be a list of names, e.g. ["a", "b"]', path)
        return None
    bad = [i for i, v in enumerate(value) if not isinstance(v, str)]
    for i in bad:
        problems.add("must be a string", f"{path}[{i}]")
    return None if bad else tuple(value)


def _only_keys(d: Mapping[str, Any], allowed: Iterable[str], path: str, problems: Problems) -> None:
    for key in sorted(set(d) - set(allowed)):
        problems.add(
            f"unknown key {key!r}; allowed here: {', '.join(sorted(allowed))}",
            f"{path}.{key}" if path else key,
        )


_TABLE_KEYS = {
    "columns",
    "time_column",
    "hypertable",
    "chunk_interval",
    "audit",
    "audit_columns",
    "audit_exclude",
    "compression",
    "retention",
    "statistics",
}


def _table(name: str, t: object, mode: str, source: str, problems: Problems) -> Table | None:
    tp = f"tables.{name}"
    if not isinstance(t, dict):
        problems.add("must be a table (columns, time_column, ...)", tp)
        return None
    _only_keys(t, _TABLE_KEYS, tp, problems)
    cols = _typed(
        t.get("columns"), dict, f"{tp}.columns", 'a table of column = "type"', problems, {}
    )
    columns: list[Column] = []
    for c, spec in cols.items():
        with problems.catch():
            columns.append(_parse_column(c, spec, f"{tp}.columns.{c}", source))
    interval = t.get("chunk_interval")
    try:
        check_interval(interval, f"{tp}.chunk_interval", source)
    except PolicyError as exc:
        problems.add_error(exc)
        interval = None
    audit_columns = exclude = compression = retention = None
    if "audit_columns" in t:
        audit_columns = _names(t["audit_columns"], f"{tp}.audit_columns", problems)
    if "audit_exclude" in t:
        exclude = _names(t["audit_exclude"], f"{tp}.audit_exclude", problems)
    with problems.catch():
        if "compression" in t:
            compression = parse_compression(t["compression"], f"{tp}.compression", source)
    with problems.catch():
        if "retention" in t:
            retention = parse_retention(t["retention"], f"{tp}.retention", source)
    time_column = _typed(
        t.get("time_column", ""), str, f"{tp}.time_column", "a column name", problems, ""
    )
    with problems.catch():
        return Table(
            name=name,
            columns=tuple(columns),
            time_column=time_column or None,
            hypertable=_typed(
                t.get("hypertable", False),
                bool,
                f"{tp}.hypertable",
                "true or false",
                problems,
                False,
            ),
            chunk_interval=interval,
            audit=t.get("audit", mode),
            audit_columns=audit_columns,
            audit_exclude=exclude or (),
            compression=compression,
            retention=retention,
            statistics=_typed(
                t.get("statistics", True),
                bool,
                f"{tp}.statistics",
                "true or false",
                problems,
                True,
            ),
        )
    return None


def _privileges(names: Iterable[str]) -> list[Privilege]:
    upper = [p.upper() for p in names]
    return list(TABLE_PRIVILEGES) if "ALL" in upper else cast(list[Privilege], upper)


def _role(name: str, r: object, source: str, problems: Problems) -> GroupRole | None:
    rp = f"roles.{name}"
    if not isinstance(r, dict):
        problems.add("must be a table (grants, roles, ...)", rp)
        return None
    _only_keys(
        r,
        {"grants", "description", "roles", "default_grants", "slices", "monitoring"},
        rp,
        problems,
    )
    grants = _typed(
        r.get("grants", {}),
        dict,
        f"{rp}.grants",
        'a table of table = ["PRIVILEGE", ...]',
        problems,
        {},
    )
    parsed: list[tuple[str, frozenset[Privilege]]] = []
    column_grants: list[tuple[str, str, tuple[str, ...]]] = []
    for table, privs in grants.items():
        gp = f"{rp}.grants.{table}"
        entries = _names(privs, gp, problems)
        if entries is None:
            continue
        plain, cols = split_column_grants(table, entries, gp, source, problems)
        column_grants += cols
        if plain or not cols:
            parsed.append((table, frozenset(_privileges(plain))))
    slices: tuple[RowSlice, ...] = ()
    with problems.catch():
        slices = parse_slices(r["slices"], f"{rp}.slices", source) if "slices" in r else ()
    with problems.catch():
        return GroupRole(
            name,
            tuple(sorted(parsed, key=lambda g: g[0])),
            _typed(r.get("description", ""), str, f"{rp}.description", "a string", problems, ""),
            member_of=_names(r.get("roles", []), f"{rp}.roles", problems) or (),
            column_grants=tuple(sorted(column_grants)),
            default_grants=frozenset(
                _privileges(
                    _names(r.get("default_grants", []), f"{rp}.default_grants", problems) or ()
                )
            ),
            slices=slices,
            monitoring=_typed(
                r.get("monitoring", False),
                bool,
                f"{rp}.monitoring",
                "true or false",
                problems,
                False,
            ),
        )
    return None


def _user(name: str, u: object, source: str, problems: Problems) -> User | None:
    up = f"users.{name}"
    if not isinstance(u, dict):
        problems.add("must be a table (roles, ...)", up)
        return None
    _only_keys(u, {"roles", "connection_limit", "password", "settings", "attributes"}, up, problems)
    if "password" in u:
        problems.add(
            f"passwords never live in the policy; remove it and set {password_env_var(name)}"
            " or use a 0600 passwords file",
            f"{up}.password",
        )
    limit = u.get("connection_limit", -1)
    try:
        check_connection_limit(limit, f"{up}.connection_limit", source)
    except PolicyError as exc:
        problems.add_error(exc)
        limit = -1
    settings: tuple[tuple[str, str], ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    with problems.catch():
        settings = parse_settings(u.get("settings", {}), f"{up}.settings", source, problems)
    with problems.catch():
        if "attributes" in u:
            attributes = parse_attributes(u["attributes"], f"{up}.attributes", source)
    with problems.catch():
        return User(
            name,
            _names(u.get("roles", []), f"{up}.roles", problems) or (),
            limit,
            settings=settings,
            attributes=attributes,
        )
    return None


def _section(data: Mapping[str, Any], key: str, what: str, problems: Problems) -> dict[str, Any]:
    value: dict[str, Any] = _typed(data.get(key, {}), dict, key, what, problems, {})
    return value


def _build(data: Mapping[str, Any], source: str, problems: Problems) -> Policy | None:
    _only_keys(data, {"database", "tables", "roles", "users", "audit", "aggregates"}, "", problems)
    db = _typed(data.get("database"), dict, "database", 'a table with name = "..."', problems, {})
    _only_keys(
        db,
        {"name", "schema", "timescaledb", "native", "also_connect", "public", "chunk_privileges"},
        "database",
        problems,
    )
    audit_raw = _section(data, "audit", "a table", problems)
    _only_keys(audit_raw, {"table", "owner", "default_mode", "data_schema"}, "audit", problems)
    audit = AuditSettings(
        table=audit_raw.get("table", "activity_audit"),
        owner=audit_raw.get("owner", "tsaccess_audit"),
        default_mode=audit_raw.get("default_mode", "statement"),
        data_schema=audit_raw.get("data_schema", "tsaccess_audit"),
    )
    raw_tables = _section(data, "tables", "a table of [tables.<name>]", problems)
    raw_roles = _section(data, "roles", "a table of [roles.<name>]", problems)
    raw_users = _section(data, "users", "a table of [users.<name>]", problems)
    raw_aggs = _section(data, "aggregates", "a table of continuous aggregates", problems)
    # what the file declares, whatever errors its items have: "known" lists name all of it
    for tname, t in raw_tables.items():
        cols = t.get("columns") if isinstance(t, dict) else None
        problems.tables[tname] = frozenset(cols) if isinstance(cols, dict) else frozenset()
    problems.roles.update(raw_roles)
    problems.users.update(raw_users)
    problems.aggregates.update(raw_aggs)
    tables = [_table(n, t, audit.default_mode, source, problems) for n, t in raw_tables.items()]
    roles = [_role(n, r, source, problems) for n, r in raw_roles.items()]
    users = [_user(n, u, source, problems) for n, u in raw_users.items()]
    aggregates = []
    for name, a in raw_aggs.items():
        with problems.catch():
            aggregates.append(parse_aggregate(name, a, source))
    name = _typed(db.get("name"), str, "database.name", 'a string (name = "...")', problems, "_")
    with problems.catch():
        return Policy(
            database=name,
            schema=_typed(
                db.get("schema", "public"), str, "database.schema", "a string", problems, "public"
            ),
            timescaledb=db.get("timescaledb", "prefer"),
            native=db.get("native", "prefer"),
            tables=tuple(t for t in tables if t is not None),
            roles=tuple(r for r in roles if r is not None),
            users=tuple(u for u in users if u is not None),
            audit=audit,
            source=source,
            also_connect=_names(db.get("also_connect", []), "database.also_connect", problems)
            or (),
            aggregates=tuple(aggregates),
            public=db.get("public", "revoke"),
            chunk_privileges=db.get("chunk_privileges", "select"),
        )
    return None


def _parse(
    data: Mapping[str, Any], source: str, locate: Callable[[str], int | None] | None
) -> Policy:
    with collecting(source, locate) as problems:
        policy = _build(data, source, problems)
    # collecting() raised every error it collected; without errors the policy was built
    assert policy is not None
    return policy


def parse_policy(data: Mapping[str, Any], *, source: str = "<policy>") -> Policy:
    """Build a :class:`Policy` from parsed TOML (a mapping); raises :class:`PolicyError`.

    Every error of the policy is reported at once: with more than one, the error is a
    :class:`~tsaccess.errors.PolicyErrors` listing each (key path and fix).
    """
    return _parse(data, source, None)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a TOML policy file; every error names its key path, its line in the
    file and the fix (all of them at once: :class:`~tsaccess.errors.PolicyErrors`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"policy file {p} does not exist; check the path") from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {p}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = ""
        if "twice" in str(exc) or "overwrite" in str(exc):
            hint = " (a user, role or table is declared twice: each must be declared once)"
        raise PolicyError(f"invalid TOML: {exc}{hint}", source=str(p)) from None
    return _parse(data, str(p), lambda key: key_line(text, key))
