"""Validation of a whole policy: references between tables, roles, users and the audit settings;
every error names the key path and the fix, and every error is found in one run.

Runs whenever a :class:`~tsaccess.policy.Policy` is built (``__post_init__``), whatever built
it, beside :mod:`~tsaccess.policy.timescale_checks` and :mod:`~tsaccess.policy.extras`; each adds
to the same :class:`~tsaccess.policy.problems.Problems` instead of raising.
"""

from __future__ import annotations

from tsaccess.policy.base import (
    MAX_IDENT,
    TABLE_PRIVILEGES,
    TIME_TYPES,
    check_column,
    check_connection_limit,
    check_ident,
    check_interval,
)
from tsaccess.policy.parts import PolicyShape, Table
from tsaccess.policy.problems import Problems

__all__ = ["validate"]


def _database(p: PolicyShape, problems: Problems) -> None:
    with problems.catch():
        check_ident(p.database, "database.name", p.source)
    if p.timescaledb not in ("prefer", "require", "off"):
        problems.add(
            f'timescaledb = {p.timescaledb!r}; use "prefer", "require" or "off"',
            "database.timescaledb",
        )
    if p.native not in ("prefer", "require", "off"):
        problems.add(f'native = {p.native!r}; use "prefer", "require" or "off"', "database.native")
    if p.audit.default_mode not in ("statement", "row", "off"):
        problems.add(
            f'default_mode = {p.audit.default_mode!r}; use "statement", "row" or "off"',
            "audit.default_mode",
        )
    with problems.catch():
        check_ident(p.schema, "database.schema", p.source)
        if p.schema.startswith(("pg_", "_timescaledb")) or p.schema == "information_schema":
            problems.add(
                f"schema {p.schema!r} is a system schema; use your own (e.g. public)",
                "database.schema",
            )
    for i, name in enumerate(p.also_connect):
        with problems.catch():
            check_ident(name, f"database.also_connect[{i}]", p.source, role=True)
        if name in {u.name for u in p.users} | {r.name for r in p.roles}:
            problems.add(
                f"{name!r} is a user or group role of the policy, which gets CONNECT through "
                "its roles; also_connect is for roles outside the policy",
                f"database.also_connect[{i}]",
            )
    for value, path, role in (
        (p.audit.table, "audit.table", False),
        (p.audit.owner, "audit.owner", True),
        (p.audit.data_schema, "audit.data_schema", False),
        (p.audit.rows_view, "audit.table", False),  # the view's name must fit too
    ):
        with problems.catch():
            check_ident(value, path, p.source, role=role)
    ds = p.audit.data_schema
    if ds == p.schema or (isinstance(ds, str) and ds.startswith(("pg_", "_timescaledb"))):
        problems.add(
            f"data_schema {ds!r} must be a schema of its own, not {p.schema!r} or a system "
            'schema; e.g. data_schema = "tsaccess_audit"',
            "audit.data_schema",
        )


def _table(p: PolicyShape, t: Table, problems: Problems) -> None:
    src, tp = p.source, f"tables.{t.name}"
    with problems.catch():
        check_ident(t.name, tp, src)
    if t.name == p.audit.table:
        problems.add(
            f"{t.name!r} is the audit table's name; rename the table or set audit.table", tp
        )
    if not t.columns and not problems.reported(f"{tp}.columns"):
        problems.add(
            'a table needs at least one column; add columns = { name = "type" }', f"{tp}.columns"
        )
    if not isinstance(t.hypertable, bool):
        problems.add("must be true or false", f"{tp}.hypertable")
    if t.time_column is not None and not isinstance(t.time_column, str):
        problems.add("must be a column name", f"{tp}.time_column")
    with problems.catch():
        check_interval(t.chunk_interval, f"{tp}.chunk_interval", src)
    seen: set[str] = set()
    for c in t.columns:
        # the same check as Column.__post_init__, here with the table in the path
        with problems.catch():
            check_column(
                c.name,
                c.type,
                c.nullable,
                c.default,
                c.default_function,
                f"{tp}.columns.{c.name}",
                src,
            )
        if c.name in seen:
            problems.add(f"duplicate column {c.name!r}; keep one", f"{tp}.columns")
        seen.add(c.name)
    if t.hypertable and not t.time_column and not problems.reported(f"{tp}.time_column"):
        problems.add(
            'a hypertable needs a time column; set time_column = "<column>" or hypertable = false',
            f"{tp}.time_column",
        )
    col = t.column(t.time_column) if isinstance(t.time_column, str) and t.time_column else None
    if t.time_column and col is None and not problems.column_declared(t.name, t.time_column):
        problems.add(
            f"time_column {t.time_column!r} is not one of the table's columns "
            f"({', '.join(c.name for c in t.columns)})",
            f"{tp}.time_column",
        )
    if col is not None and col.type.split("(")[0] not in TIME_TYPES:
        problems.add(
            f"time_column {t.time_column!r} has type {col.type!r}; a hypertable's time column "
            "must be timestamptz, timestamp, date or an integer type",
            f"{tp}.columns.{col.name}",
        )
    elif col is not None and col.nullable and t.hypertable:
        problems.add(
            f"the time column {col.name!r} must be declared 'not null'", f"{tp}.columns.{col.name}"
        )
    if t.audit not in ("statement", "row", "off"):
        problems.add(f'audit = {t.audit!r}; use "statement", "row" or "off"', f"{tp}.audit")
    for cname in (*(t.audit_columns or ()), *t.audit_exclude):
        if t.column(cname) is None and not problems.column_declared(t.name, cname):
            problems.add(
                f"audit column {cname!r} is not a column of {t.name!r} (columns: "
                f"{', '.join(c.name for c in t.columns)})",
                f"{tp}.audit_columns",
            )


def _row_audit(p: PolicyShape, problems: Problems) -> None:
    row_tables = {t.name for t in p.tables if t.audit == "row"}
    for t in p.tables:
        if t.audit != "row":
            continue
        tp = f"tables.{t.name}"
        if not t.audited_data_columns and not problems.reported(tp):
            problems.add(
                "per-row audit would record no column (audit_columns/audit_exclude leave none);"
                ' list at least one column or use audit = "statement"',
                f"{tp}.audit_columns",
            )
        # per-row data: table <data_schema>.<name>, row type <data_schema>.<name>_row
        if len(f"{t.name}_row".encode()) > MAX_IDENT:
            problems.add(
                f"per-row audit names its row type {t.name!r} + '_row', which is longer than "
                f'{MAX_IDENT} bytes; shorten the table name or use audit = "statement"',
                f"{tp}.audit",
            )
        if f"{t.name}_row" in row_tables:
            problems.add(
                f"{t.name!r} and {t.name + '_row'!r} are both audited per row, and the row type "
                "of the first would take the name of the second's data table; audit one of "
                "them per statement or rename it",
                f"{tp}.audit",
            )


def _roles(p: PolicyShape, problems: Problems) -> set[str]:
    built = {t.name for t in p.tables}
    tables = problems.known("tables", built)
    role_names: set[str] = set()
    for r in p.roles:
        rp = f"roles.{r.name}"
        with problems.catch():
            check_ident(r.name, rp, p.source, role=True)
        if r.name in role_names:
            problems.add(f"duplicate role {r.name!r}; declare each role once", rp)
        role_names.add(r.name)
        for table, privs in r.grants:
            gp = f"{rp}.grants.{table}"
            if table == p.audit.table:
                if privs - {"SELECT"}:
                    problems.add(
                        "the audit table is written only by tsaccess triggers; grant at most "
                        "SELECT on it",
                        gp,
                    )
            elif table not in built and table in problems.known(
                "aggregates", (a.name for a in p.aggregates)
            ):
                if privs - {"SELECT"}:
                    problems.add(
                        "a continuous aggregate is read-only; grant at most SELECT on it", gp
                    )
            elif table not in tables:
                problems.add(
                    f"unknown table {table!r}; declare it under [tables.{table}] or fix the name"
                    f" (known: {', '.join(sorted(tables | {p.audit.table}))})",
                    gp,
                )
            bad = sorted(set(privs) - set(TABLE_PRIVILEGES))
            for priv in bad:
                problems.add(f"unknown privilege {priv!r}; use {', '.join(TABLE_PRIVILEGES)}", gp)
    if p.audit.owner in role_names:
        problems.add(
            "the audit owner must be a dedicated role, not a group role; set audit.owner to "
            "another name",
            "audit.owner",
        )
    return role_names


def _users(p: PolicyShape, role_names: set[str], problems: Problems) -> None:
    known_roles = problems.known("roles", role_names)
    user_names: set[str] = set()
    env_vars: dict[str, str] = {}
    for u in p.users:
        up = f"users.{u.name}"
        with problems.catch():
            check_ident(u.name, up, p.source, role=True)
        with problems.catch():
            check_connection_limit(u.connection_limit, f"{up}.connection_limit", p.source)
        for i, rname in enumerate(u.roles):
            with problems.catch():
                check_ident(rname, f"{up}.roles[{i}]", p.source, role=True)
        if u.name in user_names:
            problems.add(f"duplicate user {u.name!r}; declare each user once", up)
        if u.name in role_names or u.name == p.audit.owner:
            problems.add(
                f"{u.name!r} is also a group role; users and roles need distinct names", up
            )
        user_names.add(u.name)
        other = env_vars.setdefault(u.password_env, u.name)
        if other != u.name:
            problems.add(
                f"users {other!r} and {u.name!r} map to the same password variable "
                f"{u.password_env}; rename one",
                up,
            )
        for rname in u.roles:
            if rname not in known_roles:
                problems.add(
                    f"unknown role {rname!r}; declare it under [roles.{rname}] (known: "
                    f"{', '.join(sorted(known_roles)) or 'none'})",
                    f"{up}.roles",
                )


def validate(p: PolicyShape, problems: Problems) -> None:
    """Add every error of the policy's tables, roles, users and audit settings to ``problems``."""
    _database(p, problems)
    tables = {t.name for t in p.tables}
    if p.audit.rows_view in tables:
        problems.add(
            f"{p.audit.rows_view!r} is the name of the per-row audit view; rename the table "
            "or set audit.table",
            f"tables.{p.audit.rows_view}",
        )
    for t in p.tables:
        _table(p, t, problems)
    _row_audit(p, problems)
    _users(p, _roles(p, problems), problems)
