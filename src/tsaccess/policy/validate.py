"""Validation of a whole policy: references between tables, roles, users and the audit settings;
every error names the key path and the fix.

Runs whenever a :class:`~tsaccess.policy.Policy` is built (``__post_init__``), whatever built
it, beside :mod:`~tsaccess.policy.timescale_checks` and :mod:`~tsaccess.policy.extras`.
"""

from __future__ import annotations

from tsaccess.errors import PolicyError
from tsaccess.policy.base import (
    MAX_IDENT,
    TABLE_PRIVILEGES,
    TIME_TYPES,
    check_column,
    check_connection_limit,
    check_ident,
    check_interval,
)
from tsaccess.policy.parts import PolicyShape

__all__ = ["validate"]


def validate(p: PolicyShape) -> None:
    src = p.source
    check_ident(p.database, "database.name", src)
    if p.timescaledb not in ("prefer", "require", "off"):
        raise PolicyError(
            f'timescaledb = {p.timescaledb!r}; use "prefer", "require" or "off"',
            path="database.timescaledb",
            source=src,
        )
    if p.audit.default_mode not in ("statement", "row", "off"):
        raise PolicyError(
            f'default_mode = {p.audit.default_mode!r}; use "statement", "row" or "off"',
            path="audit.default_mode",
            source=src,
        )
    check_ident(p.schema, "database.schema", src)
    if p.schema.startswith(("pg_", "_timescaledb")) or p.schema == "information_schema":
        raise PolicyError(
            f"schema {p.schema!r} is a system schema; use your own (e.g. public)",
            path="database.schema",
            source=src,
        )
    for i, name in enumerate(p.also_connect):
        check_ident(name, f"database.also_connect[{i}]", src, role=True)
        if name in {u.name for u in p.users} | {r.name for r in p.roles}:
            raise PolicyError(
                f"{name!r} is a user or group role of the policy, which gets CONNECT through "
                "its roles; also_connect is for roles outside the policy",
                path=f"database.also_connect[{i}]",
                source=src,
            )
    check_ident(p.audit.table, "audit.table", src)
    check_ident(p.audit.owner, "audit.owner", src, role=True)
    check_ident(p.audit.data_schema, "audit.data_schema", src)
    check_ident(p.audit.rows_view, "audit.table", src)  # the view's name must fit too
    if p.audit.data_schema == p.schema or p.audit.data_schema.startswith(("pg_", "_timescaledb")):
        raise PolicyError(
            f"data_schema {p.audit.data_schema!r} must be a schema of its own, not "
            f'{p.schema!r} or a system schema; e.g. data_schema = "tsaccess_audit"',
            path="audit.data_schema",
            source=src,
        )
    tables = {t.name for t in p.tables}
    if p.audit.rows_view in tables:
        raise PolicyError(
            f"{p.audit.rows_view!r} is the name of the per-row audit view; rename the table "
            "or set audit.table",
            path=f"tables.{p.audit.rows_view}",
            source=src,
        )
    for t in p.tables:
        tp = f"tables.{t.name}"
        check_ident(t.name, tp, src)
        if t.name == p.audit.table:
            raise PolicyError(
                f"{t.name!r} is the audit table's name; rename the table or set audit.table",
                path=tp,
                source=src,
            )
        if not t.columns:
            raise PolicyError("a table needs at least one column", path=f"{tp}.columns", source=src)
        if not isinstance(t.hypertable, bool):
            raise PolicyError("must be true or false", path=f"{tp}.hypertable", source=src)
        if t.time_column is not None and not isinstance(t.time_column, str):
            raise PolicyError("must be a column name", path=f"{tp}.time_column", source=src)
        check_interval(t.chunk_interval, f"{tp}.chunk_interval", src)
        seen: set[str] = set()
        for c in t.columns:
            # the same check as Column.__post_init__, here with the table in the path
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
                raise PolicyError(f"duplicate column {c.name!r}", path=f"{tp}.columns", source=src)
            seen.add(c.name)
        if t.hypertable and not t.time_column:
            raise PolicyError(
                'a hypertable needs a time column; set time_column = "<column>" or '
                "hypertable = false",
                path=f"{tp}.time_column",
                source=src,
            )
        if t.time_column:
            col = t.column(t.time_column)
            if col is None:
                raise PolicyError(
                    f"time_column {t.time_column!r} is not one of the table's columns "
                    f"({', '.join(c.name for c in t.columns)})",
                    path=f"{tp}.time_column",
                    source=src,
                )
            if col.type.split("(")[0] not in TIME_TYPES:
                raise PolicyError(
                    f"time_column {t.time_column!r} has type {col.type!r}; a hypertable's time "
                    "column must be timestamptz, timestamp, date or an integer type",
                    path=f"{tp}.columns.{col.name}",
                    source=src,
                )
            if col.nullable and t.hypertable:
                raise PolicyError(
                    f"the time column {col.name!r} must be declared 'not null'",
                    path=f"{tp}.columns.{col.name}",
                    source=src,
                )
        if t.audit not in ("statement", "row", "off"):
            raise PolicyError(
                f'audit = {t.audit!r}; use "statement", "row" or "off"',
                path=f"{tp}.audit",
                source=src,
            )
        for cname in (*(t.audit_columns or ()), *t.audit_exclude):
            if t.column(cname) is None:
                raise PolicyError(
                    f"audit column {cname!r} is not a column of {t.name!r}",
                    path=f"{tp}.audit_columns",
                    source=src,
                )
    row_tables = {t.name for t in p.tables if t.audit == "row"}
    for t in p.tables:
        if t.audit != "row":
            continue
        if not t.audited_data_columns:
            raise PolicyError(
                "per-row audit would record no column (audit_columns/audit_exclude leave none);"
                ' list at least one column or use audit = "statement"',
                path=f"tables.{t.name}.audit_columns",
                source=src,
            )
        # per-row data: table <data_schema>.<name>, row type <data_schema>.<name>_row
        if len(f"{t.name}_row".encode()) > MAX_IDENT:
            raise PolicyError(
                f"per-row audit names its row type {t.name!r} + '_row', which is longer than "
                f'{MAX_IDENT} bytes; shorten the table name or use audit = "statement"',
                path=f"tables.{t.name}.audit",
                source=src,
            )
        if f"{t.name}_row" in row_tables:
            raise PolicyError(
                f"{t.name!r} and {t.name + '_row'!r} are both audited per row, and the row type "
                f"of the first would take the name of the second's data table; audit one of "
                "them per statement or rename it",
                path=f"tables.{t.name}.audit",
                source=src,
            )
    role_names: set[str] = set()
    for r in p.roles:
        rp = f"roles.{r.name}"
        check_ident(r.name, rp, src, role=True)
        if r.name in role_names:
            raise PolicyError(f"duplicate role {r.name!r}", path=rp, source=src)
        role_names.add(r.name)
        for table, privs in r.grants:
            gp = f"{rp}.grants.{table}"
            if table == p.audit.table:
                if privs - {"SELECT"}:
                    raise PolicyError(
                        "the audit table is written only by tsaccess triggers; grant at most "
                        "SELECT on it",
                        path=gp,
                        source=src,
                    )
            elif table not in tables and any(a.name == table for a in p.aggregates):
                if privs - {"SELECT"}:
                    raise PolicyError(
                        "a continuous aggregate is read-only; grant at most SELECT on it",
                        path=gp,
                        source=src,
                    )
            elif table not in tables:
                raise PolicyError(
                    f"unknown table {table!r}; declare it under [tables.{table}] or fix the name"
                    f" (known: {', '.join(sorted(tables | {p.audit.table}))})",
                    path=gp,
                    source=src,
                )
            bad = set(privs) - set(TABLE_PRIVILEGES)
            if bad:
                raise PolicyError(
                    f"unknown privilege {sorted(bad)[0]!r}; use {', '.join(TABLE_PRIVILEGES)}",
                    path=gp,
                    source=src,
                )
    if p.audit.owner in role_names:
        raise PolicyError(
            "the audit owner must be a dedicated role, not a group role",
            path="audit.owner",
            source=src,
        )
    user_names: set[str] = set()
    env_vars: dict[str, str] = {}
    for u in p.users:
        up = f"users.{u.name}"
        check_ident(u.name, up, src, role=True)
        check_connection_limit(u.connection_limit, f"{up}.connection_limit", src)
        for i, rname in enumerate(u.roles):
            check_ident(rname, f"{up}.roles[{i}]", src, role=True)
        if u.name in user_names:
            raise PolicyError(f"duplicate user {u.name!r}", path=up, source=src)
        if u.name in role_names or u.name == p.audit.owner:
            raise PolicyError(
                f"{u.name!r} is also a group role; users and roles need distinct names",
                path=up,
                source=src,
            )
        user_names.add(u.name)
        other = env_vars.setdefault(u.password_env, u.name)
        if other != u.name:
            raise PolicyError(
                f"users {other!r} and {u.name!r} map to the same password "
                f"variable {u.password_env}; rename one",
                path=up,
                source=src,
            )
        for rname in u.roles:
            if rname not in role_names:
                raise PolicyError(
                    f"unknown role {rname!r}; declare it under [roles.{rname}] (known: "
                    f"{', '.join(sorted(role_names)) or 'none'})",
                    path=f"{up}.roles",
                    source=src,
                )
