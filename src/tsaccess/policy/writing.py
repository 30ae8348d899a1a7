"""Writing a policy as TOML: :func:`dump_policy`, the inverse of
:func:`~tsaccess.policy.loading.parse_policy` (``parse_policy(tomllib.loads(dump_policy(p)))``
is ``p``), with comments where a reader needs them (``tsaccess generate`` writes what it could
not express there).

Every section is a TOML table of its own (``[tables.vitals.columns]``, ``[roles.nurses.grants]``:
one column or grant per line), in the policy's order; keys are quoted only when they must be.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence

from tsaccess.policy.model import Aggregate, Column, GroupRole, Policy, Table, User

__all__ = ["column_spec", "dump_policy", "toml_key", "toml_value"]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(name: str) -> str:
    """``name`` as a TOML key: bare when it can be, else a quoted string."""
    return name if _BARE.fullmatch(name) else toml_value(name)


def toml_value(value: object) -> str:
    """A TOML value: strings (basic strings), booleans, integers, floats, lists of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def column_spec(c: Column) -> str:
    """The column as the policy writes it: ``"numeric(5,2) not null default 0"``."""
    spec = c.type + ("" if c.nullable else " not null")
    if c.default_function:
        spec += f" default {c.default_function}"
    elif isinstance(c.default, bool):
        spec += f" default {'true' if c.default else 'false'}"
    elif isinstance(c.default, int | float):
        spec += f" default {c.default!r}"
    elif c.default is not None:
        spec += " default '" + c.default.replace("'", "''") + "'"
    return spec


def _comment(lines: Iterable[str], width: int = 98) -> list[str]:
    """Comment lines, wrapped; a line starting with spaces keeps its indent."""
    out = []
    for line in lines:
        for part in line.splitlines() or [""]:
            indent = part[: len(part) - len(part.lstrip())]
            wrapped = textwrap.wrap(
                part.strip(), width - len(indent), break_on_hyphens=False, break_long_words=False
            )
            first = True
            for w in wrapped or [""]:
                pad = indent if first else indent + "  "
                out.append(("# " + pad + w).rstrip())
                first = False
    return out


def _section(
    name: str,
    pairs: Sequence[tuple[str, object]],
    notes: Mapping[str, Sequence[str]],
    key: str,
    *,
    implied: bool = False,
) -> list[str]:
    """A ``[name]`` table; ``implied``: left out when it has no key and no note (a sub-table
    that follows defines it)."""
    if implied and not pairs and not notes.get(key):
        return []
    out = ["", f"[{name}]", *_comment(notes.get(key, ()))]
    out += [f"{toml_key(k)} = {toml_value(v)}" for k, v in pairs]
    return out


def _table(policy: Policy, t: Table, notes: Mapping[str, Sequence[str]]) -> list[str]:
    head = f"tables.{toml_key(t.name)}"
    pairs: list[tuple[str, object]] = []
    if t.hypertable:
        pairs.append(("hypertable", True))
    if t.time_column:
        pairs.append(("time_column", t.time_column))
    if t.chunk_interval:
        pairs.append(("chunk_interval", t.chunk_interval))
    if t.audit != policy.audit.default_mode:
        pairs.append(("audit", t.audit))
    if t.audit_columns is not None:
        pairs.append(("audit_columns", list(t.audit_columns)))
    if t.audit_exclude:
        pairs.append(("audit_exclude", list(t.audit_exclude)))
    if not t.statistics:
        pairs.append(("statistics", False))
    out = _section(head, pairs, notes, f"tables.{t.name}", implied=True)
    out += ["", f"[{head}.columns]"]
    out += [f"{toml_key(c.name)} = {toml_value(column_spec(c))}" for c in t.columns]
    if t.compression is not None:
        comp: list[tuple[str, object]] = []
        if t.compression.after is not None:
            comp.append(("after", t.compression.after))
        comp += [
            ("segment_by", list(t.compression.segment_by)),
            ("order_by", list(t.compression.order_by)),
        ]
        out += _section(f"{head}.compression", comp, notes, f"tables.{t.name}.compression")
    if t.retention is not None:
        out += _section(
            f"{head}.retention",
            [("drop_after", t.retention.drop_after), ("schedule", t.retention.schedule)],
            notes,
            f"tables.{t.name}.retention",
        )
    return out


def _role(r: GroupRole, notes: Mapping[str, Sequence[str]]) -> list[str]:
    head = f"roles.{toml_key(r.name)}"
    pairs: list[tuple[str, object]] = []
    if r.description:
        pairs.append(("description", r.description))
    if r.member_of:
        pairs.append(("roles", list(r.member_of)))
    if r.default_grants:
        pairs.append(("default_grants", sorted(r.default_grants)))
    if r.monitoring:
        pairs.append(("monitoring", True))
    grants: dict[str, list[str]] = {t: sorted(str(p) for p in privs) for t, privs in r.grants}
    for table, priv, cols in r.column_grants:
        grants.setdefault(table, []).append(f"{priv} ({', '.join(cols)})")
    implied = bool(grants or r.slices)
    out = _section(head, pairs, notes, f"roles.{r.name}", implied=implied)
    if grants:
        out += ["", f"[{head}.grants]"]
        out += [f"{toml_key(t)} = {toml_value(g)}" for t, g in grants.items()]
    if r.slices:
        out += ["", f"[{head}.slices]"]
        for s in r.slices:
            column, attribute = toml_value(s.column), toml_value(s.attribute)
            value = f"{{ column = {column}, attribute = {attribute} }}"
            out.append(f"{toml_key(s.table)} = {value}")
    return out


def _user(u: User, notes: Mapping[str, Sequence[str]]) -> list[str]:
    pairs: list[tuple[str, object]] = [("roles", list(u.roles))]
    if u.connection_limit != -1:
        pairs.append(("connection_limit", u.connection_limit))
    out = _section(f"users.{toml_key(u.name)}", pairs, notes, f"users.{u.name}")
    if u.settings:
        out += ["", f"[users.{toml_key(u.name)}.settings]"]
        out += [f"{toml_key(k)} = {toml_value(v)}" for k, v in u.settings]
    if u.attributes:
        out += ["", f"[users.{toml_key(u.name)}.attributes]"]
        out += [f"{toml_key(k)} = {toml_value(v)}" for k, v in u.attributes]
    return out


def _aggregate(a: Aggregate, notes: Mapping[str, Sequence[str]]) -> list[str]:
    head = f"aggregates.{toml_key(a.name)}"
    pairs: list[tuple[str, object]] = [
        ("source", a.source),
        ("bucket", a.bucket),
        ("group_by", list(a.group_by)),
    ]
    if a.bucket_column != "bucket":
        pairs.append(("bucket_column", a.bucket_column))
    pairs.append(("real_time", a.real_time))
    out = _section(head, pairs, notes, f"aggregates.{a.name}")
    out += ["", f"[{head}.columns]"]
    for c in a.columns:
        out.append(f"{toml_key(c.name)} = {toml_value(f'{c.function}({c.column})')}")
    out += [
        "",
        f"[{head}.refresh]",
        f"start_offset = {toml_value(a.refresh_start)}",
        f"end_offset = {toml_value(a.refresh_end)}",
        f"schedule_interval = {toml_value(a.refresh_every)}",
    ]
    return out


def dump_policy(
    policy: Policy,
    *,
    header: Sequence[str] = (),
    notes: Mapping[str, Sequence[str]] | None = None,
    footer: Sequence[str] = (),
) -> str:
    """``policy`` as TOML text.

    Args:
        header: comment lines at the top.
        notes: comment lines per section, keyed by its path (``database``, ``audit``,
            ``tables.<name>``, ``tables.<name>.compression``, ``roles.<name>``,
            ``users.<name>``, ``aggregates.<name>``).
        footer: comment lines at the end (what is not part of the policy).
    """
    notes = notes or {}
    db: list[tuple[str, object]] = [("name", policy.database), ("schema", policy.schema)]
    db.append(("timescaledb", policy.timescaledb))
    if policy.native != "prefer":
        db.append(("native", policy.native))
    if policy.public != "revoke":
        db.append(("public", policy.public))
    if policy.chunk_privileges != "select":
        db.append(("chunk_privileges", policy.chunk_privileges))
    if policy.also_connect:
        db.append(("also_connect", list(policy.also_connect)))
    out = _comment(header)
    out += _section("database", db, notes, "database")
    a = policy.audit
    out += _section(
        "audit",
        [
            ("table", a.table),
            ("owner", a.owner),
            ("default_mode", a.default_mode),
            ("data_schema", a.data_schema),
        ],
        notes,
        "audit",
    )
    for t in policy.tables:
        out += _table(policy, t, notes)
    for r in policy.roles:
        out += _role(r, notes)
    for u in policy.users:
        out += _user(u, notes)
    for agg in policy.aggregates:
        out += _aggregate(agg, notes)
    if footer:
        out += ["", *_comment(footer)]
    return "\n".join(out).lstrip("\n") + "\n"
