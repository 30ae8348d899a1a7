"""Checks of TimescaleDB's parts across the policy: slices against grants and users' attributes,
compression and retention against hypertables, continuous aggregates against their sources, and
who may read per-row audit data of a sliced table.

Runs whenever a :class:`~tsaccess.policy.Policy` is built, beside
:mod:`~tsaccess.policy.validate`.
"""

from __future__ import annotations

import re

from tsaccess.policy.base import check_ident
from tsaccess.policy.parts import PolicyShape
from tsaccess.policy.problems import Problems

__all__ = ["validate_timescale"]

_INTEGER_TYPES = {"integer", "int", "int4", "bigint", "int8", "smallint", "int2"}


def _audit_reader_checks(p: PolicyShape, problems: Problems) -> None:
    """The per-row audit view shows a table's row data to readers of the audit trail who may
    read the table's columns, whatever row slice they have: refuse a sliced reader of it."""
    audit = p.audit.table
    row_audited = {t.name for t in p.tables if t.audit == "row"}
    for r in p.roles:
        for s in r.slices:
            if s.table in row_audited and "SELECT" in r.privileges_on(audit):
                problems.add(
                    f"role {r.name!r} sees a slice of {s.table!r}, which is audited per row, "
                    f"and reads the audit trail ({audit}): {p.audit.rows_view} would show it "
                    f"every row of {s.table!r} that changed, of every slice; read the audit "
                    "through a role without slices (e.g. an auditors role) and give it to "
                    "users who are in no sliced role",
                    f"roles.{r.name}.grants.{audit}",
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
                problems.add(
                    f"user {u.name!r} sees a slice of {table!r} (role {sliced[0]!r}), which is "
                    f"audited per row, and reads the audit trail ({audit}): "
                    f"{p.audit.rows_view} would show them every row of {table!r} that changed, "
                    "of every slice; read the audit through a login user in no sliced role",
                    f"users.{u.name}.roles",
                )


def _slices(p: PolicyShape, problems: Problems) -> dict[str, list[str]]:
    """Row slices against grants, columns and users' attributes; the sliced roles per table."""
    tables = {t.name: t for t in p.tables}
    sliced: dict[str, list[str]] = {}
    for r in p.roles:
        for s in r.slices:
            sp = f"roles.{r.name}.slices.{s.table}"
            t = tables.get(s.table)
            if t is None and problems.declared_only("tables", s.table, tables):
                continue  # the table had an error of its own
            if t is None or not r.privileges_on(s.table):
                problems.add(
                    f"a slice of {s.table!r}, which role {r.name!r} is not granted; grant it "
                    "under grants or remove the slice",
                    sp,
                )
                continue
            col = t.column(s.column)
            if col is None:
                if not problems.column_declared(t.name, s.column):
                    problems.add(
                        f"{s.column!r} is not a column of {s.table!r} (columns: "
                        f"{', '.join(c.name for c in t.columns)})",
                        sp,
                    )
                continue
            if "TRUNCATE" in r.privileges_on(s.table):
                problems.add(
                    "TRUNCATE ignores row-level security: a sliced role cannot have it; remove "
                    "TRUNCATE from its grants",
                    f"roles.{r.name}.grants.{s.table}",
                )
            sliced.setdefault(s.table, []).append(r.name)
            integer = col.type.split("(")[0] in _INTEGER_TYPES
            for u in p.users:
                value = dict(u.attributes).get(s.attribute)
                if r.name not in u.roles:
                    continue
                if integer and value is not None and not re.fullmatch(r"-?\d{1,18}", value):
                    problems.add(
                        f"{s.attribute} = {value!r} is compared with the integer column "
                        f"{s.table}.{s.column}; give a whole number",
                        f"users.{u.name}.attributes.{s.attribute}",
                    )
                if value is None and not problems.reported(f"users.{u.name}.attributes"):
                    problems.add(
                        f"user {u.name!r} is in role {r.name!r}, which sees the rows of "
                        f"{s.table!r} by the user's {s.attribute!r}; give the user "
                        f'attributes = {{ {s.attribute} = "..." }}',
                        f"users.{u.name}.attributes",
                    )
    return sliced


def _tables(p: PolicyShape, sliced: dict[str, list[str]], problems: Problems) -> None:
    for t in p.tables:
        tp = f"tables.{t.name}"
        for what, present in (("compression", t.compression), ("retention", t.retention)):
            if (
                present is not None
                and not t.hypertable
                and not problems.reported(f"{tp}.hypertable")
            ):
                problems.add(f"{what} needs a hypertable: set hypertable = true", f"{tp}.{what}")
        if t.retention is not None and t.time_column:
            col = t.column(t.time_column)
            if col is not None and not col.type.startswith(("timestamp", "date")):
                problems.add(
                    f"retention by age needs a timestamp or date time column; "
                    f"{t.time_column!r} is {col.type}",
                    f"{tp}.retention",
                )
        if t.compression is None:
            continue
        for c in (*t.compression.segment_by, *(o.split()[0] for o in t.compression.order_by)):
            if t.column(c) is None and not problems.column_declared(t.name, c):
                problems.add(
                    f"{c!r} is not a column of {t.name!r} (columns: "
                    f"{', '.join(x.name for x in t.columns)})",
                    f"{tp}.compression",
                )
        if t.name in sliced:
            problems.add(
                f"{t.name!r} has row slices (roles {', '.join(sliced[t.name])}) and "
                "compression: TimescaleDB refuses row-level security on a hypertable with "
                'columnstore ("operation not supported on hypertables that have columnstore '
                'enabled"); drop one of them',
                f"{tp}.compression",
            )


def _aggregates(p: PolicyShape, sliced: dict[str, list[str]], problems: Problems) -> None:
    tables = {t.name: t for t in p.tables}
    names = set(tables) | {p.audit.table, p.audit.rows_view}
    for a in p.aggregates:
        ap = f"aggregates.{a.name}"
        with problems.catch():
            check_ident(a.name, ap, p.source)
        if a.name in names:
            problems.add(f"{a.name!r} is already the name of a table or view; rename it", ap)
        names.add(a.name)
        t = tables.get(a.source)
        if t is None and problems.declared_only("tables", a.source, tables):
            continue  # the source had an error of its own
        if t is None or not t.hypertable or not t.time_column:
            problems.add(
                f"source {a.source!r} must be a hypertable of the policy (known tables: "
                f"{', '.join(sorted(problems.known('tables', tables))) or 'none'})",
                f"{ap}.source",
            )
            continue
        if a.source in sliced:
            problems.add(
                f"{a.source!r} has row slices; a continuous aggregate is materialized by its "
                "owner over all rows, so every reader would see every slice's aggregates; "
                "aggregate a table without slices or remove the aggregate",
                f"{ap}.source",
            )
        for c in (*a.group_by, *(x.column for x in a.columns if x.column != "*")):
            if t.column(c) is None and not problems.column_declared(t.name, c):
                problems.add(
                    f"{c!r} is not a column of {a.source!r} (columns: "
                    f"{', '.join(x.name for x in t.columns)})",
                    ap,
                )
        out_names = [a.bucket_column, *a.group_by, *(x.name for x in a.columns)]
        if len(set(out_names)) != len(out_names):
            problems.add(
                "the aggregate's column names must be distinct; rename one", f"{ap}.columns"
            )
        for c in out_names:
            with problems.catch():
                check_ident(c, f"{ap}.columns", p.source)


def validate_timescale(p: PolicyShape, problems: Problems) -> None:
    """Checks across tables, roles, users and aggregates (run when a policy is built)."""
    sliced = _slices(p, problems)
    _audit_reader_checks(p, problems)
    _tables(p, sliced, problems)
    _aggregates(p, sliced, problems)
