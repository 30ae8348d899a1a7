"""TimescaleDB's parts of a policy: row slices, compression, retention, continuous aggregates.

TOML shape (``examples/timescale.toml`` has the whole example)::

    [users.carol]
    roles = ["department_managers"]
    attributes = { department = "Sales" }

    [roles.department_managers.slices]
    financial_metrics = "department"   # rows whose column department = the user's attribute

    [tables.sensor_readings.compression]
    after = "7 days"
    segment_by = ["sensor_id"]
    order_by = ["time DESC"]

    [tables.sensor_readings.retention]
    drop_after = "365 days"

    [aggregates.sensor_hourly]
    source = "sensor_readings"
    bucket = "1 hour"
    group_by = ["sensor_id"]
    columns = { avg_temperature = "avg(temperature)", avg_humidity = "avg(humidity)" }
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tsaccess.errors import PolicyError

if TYPE_CHECKING:
    from tsaccess.policy.model import Policy

__all__ = [
    "AGGREGATE_FUNCTIONS",
    "Aggregate",
    "AggregateColumn",
    "Compression",
    "Retention",
    "RowSlice",
    "parse_aggregates",
    "parse_compression",
    "parse_retention",
    "parse_slices",
    "validate_timescale",
]

INTERVAL_RE = re.compile(r"\d+\s*(second|minute|hour|day|week|month|year)s?")
AGGREGATE_FUNCTIONS = ("avg", "min", "max", "sum", "count")
_INTEGER_TYPES = {"integer", "int", "int4", "bigint", "int8", "smallint", "int2"}
_AGG_RE = re.compile(r"\s*(?P<f>[a-z_]+)\s*\(\s*(?P<c>[A-Za-z_][A-Za-z0-9_]*|\*)\s*\)\s*")
_ORDER_RE = re.compile(
    r"\s*(?P<c>[A-Za-z_][A-Za-z0-9_]*)(?:\s+(?P<d>asc|desc))?"
    r"(?:\s+nulls\s+(?P<n>first|last))?\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RowSlice:
    """A role sees only the rows of ``table`` whose ``column`` equals the login user's
    ``attribute`` (from ``[users.<name>] attributes``)."""

    table: str
    column: str
    attribute: str


@dataclass(frozen=True)
class Compression:
    """TimescaleDB compression (columnstore) of a hypertable."""

    after: str | None = None
    """Compress chunks older than this (a compression policy job); None: no job."""
    segment_by: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()
    """Items like ``time DESC``."""


@dataclass(frozen=True)
class Retention:
    """Chunks older than ``drop_after`` are dropped by tsaccess's audited retention job."""

    drop_after: str
    schedule: str = "1 day"


@dataclass(frozen=True)
class AggregateColumn:
    name: str
    function: str
    column: str
    """A source column, or ``*`` for ``count(*)``."""


@dataclass(frozen=True)
class Aggregate:
    """A continuous aggregate over a hypertable of the policy, readable through grants."""

    name: str
    source: str
    bucket: str
    group_by: tuple[str, ...] = ()
    columns: tuple[AggregateColumn, ...] = ()
    bucket_column: str = "bucket"
    real_time: bool = True
    """``materialized_only = false``: recent buckets are computed from the raw rows at read."""
    refresh_start: str = "3 days"
    refresh_end: str = "1 hour"
    refresh_every: str = "1 hour"


def _err(msg: str, path: str, source: str) -> PolicyError:
    return PolicyError(msg, path=path, source=source)


def _interval(v: object, path: str, source: str) -> str:
    if not isinstance(v, str) or not INTERVAL_RE.fullmatch(v.strip()):
        raise _err('must be an interval like "7 days" or "1 hour"', path, source)
    return v.strip()


def _str_list(v: object, path: str, source: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _err("must be a list of strings", path, source)
    return tuple(v)


def _keys(d: Mapping[str, Any], allowed: set[str], path: str, source: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise _err(
            f"unknown key {extra[0]!r}; allowed here: {', '.join(sorted(allowed))}",
            f"{path}.{extra[0]}",
            source,
        )


def parse_compression(raw: object, path: str, source: str) -> Compression:
    if not isinstance(raw, dict):
        raise _err("must be a table (after, segment_by, order_by)", path, source)
    _keys(raw, {"after", "segment_by", "order_by"}, path, source)
    order = _str_list(raw.get("order_by", []), f"{path}.order_by", source)
    for i, item in enumerate(order):
        if not _ORDER_RE.fullmatch(item):
            raise _err(
                f'{item!r} is not "column [ASC|DESC] [NULLS FIRST|LAST]"',
                f"{path}.order_by[{i}]",
                source,
            )
    return Compression(
        _interval(raw["after"], f"{path}.after", source) if "after" in raw else None,
        _str_list(raw.get("segment_by", []), f"{path}.segment_by", source),
        order,
    )


def parse_retention(raw: object, path: str, source: str) -> Retention:
    if not isinstance(raw, dict) or "drop_after" not in raw:
        raise _err('must be a table with drop_after = "<interval>"', path, source)
    _keys(raw, {"drop_after", "schedule"}, path, source)
    return Retention(
        _interval(raw["drop_after"], f"{path}.drop_after", source),
        _interval(raw.get("schedule", "1 day"), f"{path}.schedule", source),
    )


def parse_slices(raw: object, path: str, source: str) -> tuple[RowSlice, ...]:
    if not isinstance(raw, dict):
        raise _err('must be a table of table = "column" (or { column, attribute })', path, source)
    out: list[RowSlice] = []
    for table, spec in raw.items():
        sp = f"{path}.{table}"
        if isinstance(spec, str):
            out.append(RowSlice(table, spec, spec))
        elif isinstance(spec, dict):
            _keys(spec, {"column", "attribute"}, sp, source)
            col = spec.get("column")
            if not isinstance(col, str):
                raise _err("needs column = <column name>", sp, source)
            attr = spec.get("attribute", col)
            if not isinstance(attr, str):
                raise _err("attribute must be a string", sp, source)
            out.append(RowSlice(table, col, attr))
        else:
            raise _err('must be "column" or { column = "...", attribute = "..." }', sp, source)
    return tuple(sorted(out, key=lambda s: s.table))


def parse_attributes(raw: object, path: str, source: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise _err('must be a table of attribute = "value" strings', path, source)
    return tuple(sorted(raw.items()))


def parse_aggregates(raw: object, source: str) -> tuple[Aggregate, ...]:
    if not isinstance(raw, dict):
        raise _err("must be a table of continuous aggregates", "aggregates", source)
    out: list[Aggregate] = []
    for name, a in raw.items():
        ap = f"aggregates.{name}"
        if not isinstance(a, dict):
            raise _err("must be a table", ap, source)
        _keys(
            a,
            {"source", "bucket", "group_by", "columns", "bucket_column", "real_time", "refresh"},
            ap,
            source,
        )
        if not isinstance(a.get("source"), str):
            raise _err('needs source = "<hypertable>"', f"{ap}.source", source)
        cols_raw = a.get("columns", {})
        if not isinstance(cols_raw, dict) or not cols_raw:
            raise _err('needs columns = { name = "avg(column)", ... }', f"{ap}.columns", source)
        cols: list[AggregateColumn] = []
        for cname, expr in cols_raw.items():
            m = _AGG_RE.fullmatch(expr) if isinstance(expr, str) else None
            if m is None or m.group("f").lower() not in AGGREGATE_FUNCTIONS:
                raise _err(
                    f"{expr!r} is not one of {', '.join(f + '(column)' for f in AGGREGATE_FUNCTIONS)}",
                    f"{ap}.columns.{cname}",
                    source,
                )
            if m.group("c") == "*" and m.group("f").lower() != "count":
                raise _err("only count takes *", f"{ap}.columns.{cname}", source)
            cols.append(AggregateColumn(cname, m.group("f").lower(), m.group("c")))
        refresh = a.get("refresh", {})
        if not isinstance(refresh, dict):
            raise _err("must be a table", f"{ap}.refresh", source)
        _keys(refresh, {"start_offset", "end_offset", "schedule_interval"}, f"{ap}.refresh", source)
        rt = a.get("real_time", True)
        if not isinstance(rt, bool):
            raise _err("must be true or false", f"{ap}.real_time", source)
        bc = a.get("bucket_column", "bucket")
        if not isinstance(bc, str):
            raise _err("must be a column name", f"{ap}.bucket_column", source)
        out.append(
            Aggregate(
                name=name,
                source=a["source"],
                bucket=_interval(a.get("bucket"), f"{ap}.bucket", source),
                group_by=_str_list(a.get("group_by", []), f"{ap}.group_by", source),
                columns=tuple(cols),
                bucket_column=bc,
                real_time=rt,
                refresh_start=_interval(
                    refresh.get("start_offset", "3 days"), f"{ap}.refresh.start_offset", source
                ),
                refresh_end=_interval(
                    refresh.get("end_offset", "1 hour"), f"{ap}.refresh.end_offset", source
                ),
                refresh_every=_interval(
                    refresh.get("schedule_interval", "1 hour"),
                    f"{ap}.refresh.schedule_interval",
                    source,
                ),
            )
        )
    return tuple(out)


def _audit_reader_checks(p: Policy, tables: Mapping[str, Any]) -> None:
    """The per-row audit view shows a table's row data to readers of the audit trail who may
    read the table's columns, whatever row slice they have: refuse a sliced reader of it."""
    src = p.source
    audit = p.audit.table
    row_audited = {t.name for t in p.tables if t.audit == "row"}
    for r in p.roles:
        for s in r.slices:
            if s.table in row_audited and "SELECT" in r.privileges_on(audit):
                raise _err(
                    f"role {r.name!r} sees a slice of {s.table!r}, which is audited per row, "
                    f"and reads the audit trail ({audit}): {p.audit.rows_view} would show it "
                    f"every row of {s.table!r} that changed, of every slice; read the audit "
                    "through a role without slices (e.g. an auditors role) and give it to "
                    "users who are in no sliced role",
                    f"roles.{r.name}.grants.{audit}",
                    src,
                )
    for u in p.users:
        held = [x for x in (p.role(n) for n in p.roles_of(u.name)) if x is not None]
        if not any("SELECT" in x.privileges_on(audit) for x in held):
            continue
        for table in sorted(row_audited):
            sliced = [x.name for x in held if x.slice_of(table) is not None]
            whole = any(
                x.slice_of(table) is None and "SELECT" in x.privileges_on(table) for x in held
            )
            if sliced and not whole:
                raise _err(
                    f"user {u.name!r} sees a slice of {table!r} (role {sliced[0]!r}), which is "
                    f"audited per row, and reads the audit trail ({audit}): "
                    f"{p.audit.rows_view} would show them every row of {table!r} that changed, "
                    "of every slice; read the audit through a login user in no sliced role",
                    f"users.{u.name}.roles",
                    src,
                )


def validate_timescale(p: Policy) -> None:
    """Checks across tables, roles, users and aggregates (run by :func:`validate`)."""
    from tsaccess.policy.validate import check_ident

    src = p.source
    tables = {t.name: t for t in p.tables}
    sliced: dict[str, list[str]] = {}
    for r in p.roles:
        for s in r.slices:
            sp = f"roles.{r.name}.slices.{s.table}"
            t = tables.get(s.table)
            if t is None or not r.privileges_on(s.table):
                raise _err(
                    f"a slice of {s.table!r}, which role {r.name!r} is not granted; grant it "
                    "under grants or remove the slice",
                    sp,
                    src,
                )
            if t.column(s.column) is None:
                raise _err(f"{s.column!r} is not a column of {s.table!r}", sp, src)
            if "TRUNCATE" in r.privileges_on(s.table):
                raise _err(
                    "TRUNCATE ignores row-level security: a sliced role cannot have it",
                    f"roles.{r.name}.grants.{s.table}",
                    src,
                )
            sliced.setdefault(s.table, []).append(r.name)
            col = t.column(s.column)
            integer = col is not None and col.type.split("(")[0] in _INTEGER_TYPES
            for u in p.users:
                value = dict(u.attributes).get(s.attribute)
                if (
                    r.name in u.roles
                    and integer
                    and value is not None
                    and not re.fullmatch(r"-?\d{1,18}", value)
                ):
                    raise _err(
                        f"{s.attribute} = {value!r} is compared with the integer column "
                        f"{s.table}.{s.column}; give a whole number",
                        f"users.{u.name}.attributes.{s.attribute}",
                        src,
                    )
                if r.name in u.roles and value is None:
                    raise _err(
                        f"user {u.name!r} is in role {r.name!r}, which sees the rows of "
                        f"{s.table!r} by the user's {s.attribute!r}; give the user "
                        f'attributes = {{ {s.attribute} = "..." }}',
                        f"users.{u.name}.attributes",
                        src,
                    )
    _audit_reader_checks(p, tables)
    for t in p.tables:
        tp = f"tables.{t.name}"
        for what, present in (("compression", t.compression), ("retention", t.retention)):
            if present is not None and not t.hypertable:
                raise _err(f"{what} needs a hypertable: set hypertable = true", f"{tp}.{what}", src)
        if t.retention is not None and t.time_column:
            col = t.column(t.time_column)
            if col is not None and not col.type.startswith(("timestamp", "date")):
                raise _err(
                    f"retention by age needs a timestamp or date time column; "
                    f"{t.time_column!r} is {col.type}",
                    f"{tp}.retention",
                    src,
                )
        if t.compression is not None:
            for c in (*t.compression.segment_by, *(o.split()[0] for o in t.compression.order_by)):
                if t.column(c) is None:
                    raise _err(f"{c!r} is not a column of {t.name!r}", f"{tp}.compression", src)
            if t.name in sliced:
                raise _err(
                    f"{t.name!r} has row slices (roles {', '.join(sliced[t.name])}) and "
                    "compression: TimescaleDB refuses row-level security on a hypertable with "
                    'columnstore ("operation not supported on hypertables that have columnstore '
                    'enabled"); drop one of them',
                    f"{tp}.compression",
                    src,
                )
    names = set(tables) | {p.audit.table, p.audit.rows_view}
    for a in p.aggregates:
        ap = f"aggregates.{a.name}"
        check_ident(a.name, ap, src)
        if a.name in names:
            raise _err(f"{a.name!r} is already the name of a table or view; rename it", ap, src)
        names.add(a.name)
        t = tables.get(a.source)
        if t is None or not t.hypertable or not t.time_column:
            raise _err(
                f"source {a.source!r} must be a hypertable of the policy", f"{ap}.source", src
            )
        if a.source in sliced:
            raise _err(
                f"{a.source!r} has row slices; a continuous aggregate is materialized by its "
                "owner over all rows, so every reader would see every slice's aggregates",
                f"{ap}.source",
                src,
            )
        for c in (*a.group_by, *(x.column for x in a.columns if x.column != "*")):
            if t.column(c) is None:
                raise _err(f"{c!r} is not a column of {a.source!r}", ap, src)
        out_names = [a.bucket_column, *a.group_by, *(x.name for x in a.columns)]
        if len(set(out_names)) != len(out_names):
            raise _err("the aggregate's column names must be distinct", f"{ap}.columns", src)
        for c in out_names:
            check_ident(c, f"{ap}.columns", src)
