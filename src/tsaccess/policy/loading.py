"""Loading a policy from TOML (or any mapping of the same shape)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
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
from tsaccess.policy.extras import collect_errors, parse_settings, split_column_grants
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
from tsaccess.policy.timescale import (
    parse_aggregates,
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


def _expect(value: object, kind: type, path: str, source: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise PolicyError(f"must be {what}", path=path, source=source)
    return value


def _names(value: object, path: str, source: str) -> tuple[str, ...]:
    items = _expect(value, list, path, source, "a list of names")
    for i, v in enumerate(items):
        _expect(v, str, f"{path}[{i}]", source, "a string")
    return tuple(items)


def _only_keys(d: Mapping[str, Any], allowed: Iterable[str], path: str, source: str) -> None:
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise PolicyError(
            f"unknown key {extra[0]!r}; allowed here: {', '.join(sorted(allowed))}",
            path=f"{path}.{extra[0]}" if path else extra[0],
            source=source,
        )


def parse_policy(data: Mapping[str, Any], *, source: str = "<policy>") -> Policy:
    """Build a :class:`Policy` from parsed TOML (a mapping); raises :class:`PolicyError`.

    Every error of the policy is reported at once: with more than one, the error is a
    :class:`~tsaccess.errors.PolicyErrors` listing each (key path and fix).
    """
    return collect_errors(_parse_once, data, source)


def _parse_once(data: Mapping[str, Any], *, source: str = "<policy>") -> Policy:
    _only_keys(data, {"database", "tables", "roles", "users", "audit", "aggregates"}, "", source)
    db = _expect(data.get("database"), dict, "database", source, 'a table with name = "..."')
    _only_keys(db, {"name", "schema", "timescaledb", "also_connect"}, "database", source)
    ts = db.get("timescaledb", "prefer")
    if ts not in ("prefer", "require", "off"):
        raise PolicyError(
            f'timescaledb = {ts!r}; use "prefer", "require" or "off"',
            path="database.timescaledb",
            source=source,
        )
    audit_raw = _expect(data.get("audit", {}), dict, "audit", source, "a table")
    _only_keys(audit_raw, {"table", "owner", "default_mode", "data_schema"}, "audit", source)
    audit = AuditSettings(
        table=audit_raw.get("table", "activity_audit"),
        owner=audit_raw.get("owner", "tsaccess_audit"),
        default_mode=audit_raw.get("default_mode", "statement"),
        data_schema=audit_raw.get("data_schema", "tsaccess_audit"),
    )
    if audit.default_mode not in ("statement", "row", "off"):
        raise PolicyError(
            f'default_mode = {audit.default_mode!r}; use "statement", "row" or "off"',
            path="audit.default_mode",
            source=source,
        )
    tables: list[Table] = []
    for tname, t in _expect(data.get("tables", {}), dict, "tables", source, "a table").items():
        tp = f"tables.{tname}"
        _expect(t, dict, tp, source, "a table")
        _only_keys(
            t,
            {
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
            },
            tp,
            source,
        )
        cols = _expect(
            t.get("columns"), dict, f"{tp}.columns", source, 'a table of column = "type"'
        )
        check_interval(t.get("chunk_interval"), f"{tp}.chunk_interval", source)
        tables.append(
            Table(
                name=tname,
                columns=tuple(
                    _parse_column(c, spec, f"{tp}.columns.{c}", source) for c, spec in cols.items()
                ),
                time_column=_expect(
                    t.get("time_column", ""), str, f"{tp}.time_column", source, "a column name"
                )
                or None,
                hypertable=_expect(
                    t.get("hypertable", False), bool, f"{tp}.hypertable", source, "true or false"
                ),
                chunk_interval=t.get("chunk_interval"),
                audit=t.get("audit", audit.default_mode),
                audit_columns=_names(t["audit_columns"], f"{tp}.audit_columns", source)
                if "audit_columns" in t
                else None,
                audit_exclude=_names(t.get("audit_exclude", []), f"{tp}.audit_exclude", source),
                compression=parse_compression(t["compression"], f"{tp}.compression", source)
                if "compression" in t
                else None,
                retention=parse_retention(t["retention"], f"{tp}.retention", source)
                if "retention" in t
                else None,
                statistics=_expect(
                    t.get("statistics", True), bool, f"{tp}.statistics", source, "true or false"
                ),
            )
        )
    roles: list[GroupRole] = []
    for rname, r in _expect(data.get("roles", {}), dict, "roles", source, "a table").items():
        rp = f"roles.{rname}"
        _expect(r, dict, rp, source, "a table")
        _only_keys(r, {"grants", "description", "roles", "default_grants", "slices"}, rp, source)
        grants = _expect(
            r.get("grants", {}),
            dict,
            f"{rp}.grants",
            source,
            'a table of table = ["PRIVILEGE", ...]',
        )
        parsed = []
        column_grants: list[tuple[str, str, tuple[str, ...]]] = []
        for table, privs in grants.items():
            names = _names(privs, f"{rp}.grants.{table}", source)
            names, cols = split_column_grants(table, names, f"{rp}.grants.{table}", source)
            column_grants += cols
            upper = [p.upper() for p in names]
            if "ALL" in upper:
                upper = list(TABLE_PRIVILEGES)
            if upper or not cols:
                parsed.append((table, frozenset(cast(list[Privilege], upper))))
        default_grants = [
            p.upper() for p in _names(r.get("default_grants", []), f"{rp}.default_grants", source)
        ]
        if "ALL" in default_grants:
            default_grants = list(TABLE_PRIVILEGES)
        roles.append(
            GroupRole(
                rname,
                tuple(sorted(parsed, key=lambda g: g[0])),
                str(r.get("description", "")),
                member_of=_names(r.get("roles", []), f"{rp}.roles", source),
                column_grants=tuple(sorted(column_grants)),
                default_grants=frozenset(cast(list[Privilege], default_grants)),
                slices=parse_slices(r["slices"], f"{rp}.slices", source) if "slices" in r else (),
            )
        )
    users: list[User] = []
    for uname, u in _expect(data.get("users", {}), dict, "users", source, "a table").items():
        up = f"users.{uname}"
        _expect(u, dict, up, source, "a table")
        _only_keys(
            u, {"roles", "connection_limit", "password", "settings", "attributes"}, up, source
        )
        if "password" in u:
            raise PolicyError(
                f"passwords never live in the policy; remove it and set {password_env_var(uname)}"
                " or use a 0600 passwords file",
                path=f"{up}.password",
                source=source,
            )
        limit = u.get("connection_limit", -1)
        check_connection_limit(limit, f"{up}.connection_limit", source)
        users.append(
            User(
                uname,
                _names(u.get("roles", []), f"{up}.roles", source),
                limit,
                settings=parse_settings(u.get("settings", {}), f"{up}.settings", source),
                attributes=parse_attributes(u["attributes"], f"{up}.attributes", source)
                if "attributes" in u
                else (),
            )
        )
    return Policy(
        database=_expect(db.get("name"), str, "database.name", source, "a string"),
        schema=_expect(db.get("schema", "public"), str, "database.schema", source, "a string"),
        timescaledb=ts,
        tables=tuple(tables),
        roles=tuple(roles),
        users=tuple(users),
        audit=audit,
        source=source,
        also_connect=_names(db.get("also_connect", []), "database.also_connect", source),
        aggregates=parse_aggregates(data["aggregates"], source) if "aggregates" in data else (),
    )


def load_policy(path: str | Path) -> Policy:
    """Read and validate a TOML policy file."""
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
    return parse_policy(data, source=str(p))
