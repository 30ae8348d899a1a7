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
from typing import Any

from tsaccess.errors import PolicyError

__all__ = [
    "AGGREGATE_FUNCTIONS",
    "Aggregate",
    "AggregateColumn",
    "Compression",
    "Retention",
    "RowSlice",
    "parse_aggregate",
    "parse_aggregates",
    "parse_compression",
    "parse_retention",
    "parse_slices",
    "policy_error",
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


def policy_error(msg: str, path: str, source: str) -> PolicyError:
    return PolicyError(msg, path=path, source=source)


def _interval(v: object, path: str, source: str) -> str:
    if not isinstance(v, str) or not INTERVAL_RE.fullmatch(v.strip()):
        raise policy_error('must be an interval like "7 days" or "1 hour"', path, source)
    return v.strip()


def _str_list(v: object, path: str, source: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise policy_error("must be a list of strings", path, source)
    return tuple(v)


def _keys(d: Mapping[str, Any], allowed: set[str], path: str, source: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise policy_error(
            f"unknown key {extra[0]!r}; allowed here: {', '.join(sorted(allowed))}",
            f"{path}.{extra[0]}",
            source,
        )


def parse_compression(raw: object, path: str, source: str) -> Compression:
    if not isinstance(raw, dict):
        raise policy_error("must be a table (after, segment_by, order_by)", path, source)
    _keys(raw, {"after", "segment_by", "order_by"}, path, source)
    order = _str_list(raw.get("order_by", []), f"{path}.order_by", source)
    for i, item in enumerate(order):
        if not _ORDER_RE.fullmatch(item):
            raise policy_error(
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
        raise policy_error('must be a table with drop_after = "<interval>"', path, source)
    _keys(raw, {"drop_after", "schedule"}, path, source)
    return Retention(
        _interval(raw["drop_after"], f"{path}.drop_after", source),
        _interval(raw.get("schedule", "1 day"), f"{path}.schedule", source),
    )


def parse_slices(raw: object, path: str, source: str) -> tuple[RowSlice, ...]:
    if not isinstance(raw, dict):
        raise policy_error(
            'must be a table of table = "column" (or { column, attribute })', path, source
        )
    out: list[RowSlice] = []
    for table, spec in raw.items():
        sp = f"{path}.{table}"
        if isinstance(spec, str):
            out.append(RowSlice(table, spec, spec))
        elif isinstance(spec, dict):
            _keys(spec, {"column", "attribute"}, sp, source)
            col = spec.get("column")
            if not isinstance(col, str):
                raise policy_error("needs column = <column name>", sp, source)
            attr = spec.get("attribute", col)
            if not isinstance(attr, str):
                raise policy_error("attribute must be a string", sp, source)
            out.append(RowSlice(table, col, attr))
        else:
            raise policy_error(
                'must be "column" or { column = "...", attribute = "..." }', sp, source
            )
    return tuple(sorted(out, key=lambda s: s.table))


def parse_attributes(raw: object, path: str, source: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise policy_error('must be a table of attribute = "value" strings', path, source)
    return tuple(sorted(raw.items()))


def parse_aggregates(raw: object, source: str) -> tuple[Aggregate, ...]:
    if not isinstance(raw, dict):
        raise policy_error("must be a table of continuous aggregates", "aggregates", source)
    return tuple(parse_aggregate(name, a, source) for name, a in raw.items())


def parse_aggregate(name: str, a: object, source: str) -> Aggregate:
    """One ``[aggregates.<name>]`` table."""
    ap = f"aggregates.{name}"
    if not isinstance(a, dict):
        raise policy_error("must be a table", ap, source)
    _keys(
        a,
        {"source", "bucket", "group_by", "columns", "bucket_column", "real_time", "refresh"},
        ap,
        source,
    )
    if not isinstance(a.get("source"), str):
        raise policy_error('needs source = "<hypertable>"', f"{ap}.source", source)
    cols_raw = a.get("columns", {})
    if not isinstance(cols_raw, dict) or not cols_raw:
        raise policy_error('needs columns = { name = "avg(column)", ... }', f"{ap}.columns", source)
    cols: list[AggregateColumn] = []
    for cname, expr in cols_raw.items():
        m = _AGG_RE.fullmatch(expr) if isinstance(expr, str) else None
        if m is None or m.group("f").lower() not in AGGREGATE_FUNCTIONS:
            raise policy_error(
                f"{expr!r} is not one of {', '.join(f + '(column)' for f in AGGREGATE_FUNCTIONS)}",
                f"{ap}.columns.{cname}",
                source,
            )
        if m.group("c") == "*" and m.group("f").lower() != "count":
            raise policy_error("only count takes *", f"{ap}.columns.{cname}", source)
        cols.append(AggregateColumn(cname, m.group("f").lower(), m.group("c")))
    refresh = a.get("refresh", {})
    if not isinstance(refresh, dict):
        raise policy_error("must be a table", f"{ap}.refresh", source)
    _keys(refresh, {"start_offset", "end_offset", "schedule_interval"}, f"{ap}.refresh", source)
    rt = a.get("real_time", True)
    if not isinstance(rt, bool):
        raise policy_error("must be true or false", f"{ap}.real_time", source)
    bc = a.get("bucket_column", "bucket")
    if not isinstance(bc, str):
        raise policy_error("must be a column name", f"{ap}.bucket_column", source)
    return Aggregate(
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
