"""The policy's frozen dataclasses (:class:`Policy` and its parts), validated when built.

The package docstring (:mod:`tsaccess.policy`) describes the model and shows an example;
``docs/reference/policy.md`` lists every key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from tsaccess.policy.extras import validate_extras
from tsaccess.policy.timescale import (
    Aggregate,
    AggregateColumn,
    Compression,
    Retention,
    RowSlice,
)
from tsaccess.policy.validate import (
    TABLE_PRIVILEGES,
    AuditMode,
    Privilege,
    TimescaleMode,
    check_column,
    check_connection_limit,
    check_interval,
    validate,
)

__all__ = [
    "TABLE_PRIVILEGES",
    "Aggregate",
    "AggregateColumn",
    "AuditMode",
    "AuditSettings",
    "Column",
    "Compression",
    "GroupRole",
    "Policy",
    "Privilege",
    "Retention",
    "RowSlice",
    "Table",
    "TimescaleMode",
    "User",
    "password_env_var",
]


def password_env_var(user: str) -> str:
    """``TSACCESS_PASSWORD_<USER>``: the user name upper-cased, other characters as ``_``."""
    return "TSACCESS_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", user.upper())


@dataclass(frozen=True)
class Column:
    """A column: ``type`` is a validated SQL type name, ``default`` a literal or a known function."""

    name: str
    type: str
    nullable: bool = True
    default: str | int | float | bool | None = None
    default_function: str | None = None
    """One of ``now()``, ``CURRENT_TIMESTAMP``, ``gen_random_uuid()``."""

    def __post_init__(self) -> None:
        # the same check as the TOML loader's: only a known type reaches SQL, in its canonical
        # spelling (``NUMERIC(5, 2)`` -> ``numeric(5,2)``)
        canonical = check_column(
            self.name,
            self.type,
            self.nullable,
            self.default,
            self.default_function,
            f"columns.{self.name}",
            "",
        )
        object.__setattr__(self, "type", canonical)


@dataclass(frozen=True)
class Table:
    """A table the policy manages (created if missing; columns added, never rewritten)."""

    name: str
    columns: tuple[Column, ...]
    time_column: str | None = None
    """Indexed ``DESC``; the partitioning column of a hypertable."""
    hypertable: bool = False
    """Made a TimescaleDB hypertable on ``time_column`` when TimescaleDB is available."""
    chunk_interval: str | None = None
    """The hypertable's chunk interval (``7 days``), None for TimescaleDB's default."""
    audit: AuditMode = "statement"
    """``statement`` (one audit row per statement), ``row`` (also each changed row) or ``off``."""
    audit_columns: tuple[str, ...] | None = None
    """With ``audit = "row"``: only these columns go into the row data (None: all)."""
    audit_exclude: tuple[str, ...] = ()
    """With ``audit = "row"``: these columns never go into the row data."""
    compression: Compression | None = None
    """TimescaleDB compression (``[tables.<name>.compression]``)."""
    retention: Retention | None = None
    """Chunks dropped by tsaccess's audited retention job (``[tables.<name>.retention]``)."""

    def __post_init__(self) -> None:
        check_interval(self.chunk_interval, f"tables.{self.name}.chunk_interval", "")

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def audited_data_columns(self) -> tuple[str, ...]:
        """The columns whose values per-row audit records."""
        allowed = (
            self.audit_columns if self.audit_columns is not None else [c.name for c in self.columns]
        )
        return tuple(c for c in allowed if c not in self.audit_exclude)


@dataclass(frozen=True)
class GroupRole:
    """A NOLOGIN role holding privileges; users get privileges only through group roles."""

    name: str
    grants: tuple[tuple[str, frozenset[Privilege]], ...] = ()
    description: str = ""
    member_of: tuple[str, ...] = ()
    """Group roles this role is a member of (it inherits their privileges): ``roles = [...]``."""
    column_grants: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    """(table, privilege, columns) from entries like ``"SELECT (a, b)"`` or ``"UPDATE (c)"``."""
    default_grants: frozenset[Privilege] = frozenset()
    """Privileges on tables the administrator creates later in the schema (default privileges)."""
    slices: tuple[RowSlice, ...] = ()
    """Row slices: on these tables the role sees only its members' rows (row-level security)."""

    def slice_of(self, table: str) -> RowSlice | None:
        return next((s for s in self.slices if s.table == table), None)

    def privileges_on(self, table: str) -> frozenset[Privilege]:
        return next((p for t, p in self.grants if t == table), frozenset())


@dataclass(frozen=True)
class User:
    """A LOGIN role; its password never lives in the policy."""

    name: str
    roles: tuple[str, ...]
    connection_limit: int = -1
    settings: tuple[tuple[str, str], ...] = ()
    """Session settings for this user in the policy's database (``ALTER ROLE ... SET``)."""
    attributes: tuple[tuple[str, str], ...] = ()
    """(name, value) pairs row slices compare with (e.g. ``department = "Sales"``)."""

    def __post_init__(self) -> None:
        check_connection_limit(self.connection_limit, f"users.{self.name}.connection_limit", "")

    @property
    def password_env(self) -> str:
        return password_env_var(self.name)


@dataclass(frozen=True)
class AuditSettings:
    """Where and by whom the audit trail is kept (the policy's ``[audit]`` table)."""

    table: str = "activity_audit"
    owner: str = "tsaccess_audit"
    """Dedicated NOLOGIN role owning the audit table and functions, nothing else."""
    default_mode: AuditMode = "statement"
    data_schema: str = "tsaccess_audit"
    """Private schema (owned by ``owner``) holding per-row audit data, one table per table."""

    @property
    def rows_view(self) -> str:
        """The view with one row per changed row (per-row mode), next to the audit table."""
        return f"{self.table}_rows"


@dataclass(frozen=True)
class Policy:
    """A whole access policy: one database and schema, its tables, group roles, users and audit.

    Validated on construction, whatever built it (:func:`load_policy`, :func:`parse_policy` or
    code): an invalid policy raises :class:`~tsaccess.PolicyError` naming the offending key.
    """

    database: str
    schema: str = "public"
    timescaledb: TimescaleMode = "prefer"
    """``prefer`` (use it when available), ``require`` (fail without it) or ``off``."""
    tables: tuple[Table, ...] = ()
    roles: tuple[GroupRole, ...] = ()
    users: tuple[User, ...] = ()
    audit: AuditSettings = field(default_factory=AuditSettings)
    source: str = ""
    """Where the policy came from (a file name), used in error messages."""
    also_connect: tuple[str, ...] = ()
    """Roles outside the policy that keep ``CONNECT`` on the database (``[database]
    also_connect``): e.g. PgBouncer's ``auth_user``, whose ``auth_query`` runs in the client's
    database before PgBouncer 1.20. Plan grants it when missing and never revokes it."""
    aggregates: tuple[Aggregate, ...] = ()
    """Continuous aggregates (``[aggregates.<name>]``)."""

    def __post_init__(self) -> None:
        validate(self)
        validate_extras(self)

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    def role(self, name: str) -> GroupRole | None:
        return next((r for r in self.roles if r.name == name), None)

    def aggregate(self, name: str) -> Aggregate | None:
        return next((a for a in self.aggregates if a.name == name), None)

    def sliced_roles(self, table: str) -> tuple[str, ...]:
        """Group roles that see only a slice of ``table``'s rows."""
        return tuple(r.name for r in self.roles if r.slice_of(table) is not None)

    @property
    def managed_tables(self) -> tuple[str, ...]:
        """Data tables and the audit table (when any table is audited)."""
        names = [t.name for t in self.tables]
        return (*names, self.audit.table) if self.audited else tuple(names)

    @property
    def row_audited(self) -> tuple[Table, ...]:
        """Tables audited per row (their data goes to ``audit.data_schema``)."""
        return tuple(t for t in self.tables if t.audit == "row")

    @property
    def audited(self) -> bool:
        return any(t.audit != "off" for t in self.tables) or any(
            r.privileges_on(self.audit.table) for r in self.roles
        )

    def expected_privileges(self, user: str) -> dict[str, frozenset[Privilege]]:
        """Table privileges the policy gives ``user`` (through its group roles)."""
        u = next((x for x in self.users if x.name == user), None)
        out: dict[str, frozenset[Privilege]] = {t: frozenset() for t in self.managed_tables}
        if u is None:
            return out
        for rname in self.roles_of(user):
            role = self.role(rname)
            if role is None:
                continue
            for table, privs in role.grants:
                out[table] = out.get(table, frozenset()) | privs
        return out

    def roles_of(self, user: str) -> tuple[str, ...]:
        """The group roles ``user`` holds, directly or through nested roles (sorted)."""
        u = next((x for x in self.users if x.name == user), None)
        todo = list(u.roles) if u else []
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            r = self.role(name)
            todo += list(r.member_of) if r else []
        return tuple(sorted(seen))

    def with_database(self, name: str) -> Policy:
        """The same policy for another database name (tests, staging copies)."""
        return dataclasses.replace(self, database=name)
