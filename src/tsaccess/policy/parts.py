"""The parts of a policy: columns, tables, group roles, login users, audit settings, and the shape
of a whole policy as the validators read it.

Each part checks its own values when built (:mod:`~tsaccess.policy.base`); checks across parts
run when the :class:`~tsaccess.policy.Policy` is built (:mod:`~tsaccess.policy.model`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from tsaccess.policy.base import (
    AuditMode,
    Privilege,
    TimescaleMode,
    check_column,
    check_connection_limit,
    check_interval,
)
from tsaccess.policy.timescale import Aggregate, Compression, Retention, RowSlice

__all__ = [
    "AuditSettings",
    "Column",
    "GroupRole",
    "PolicyShape",
    "Table",
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
    statistics: bool = True
    """False: no planner statistics on the table's columns (nor its chunks'): a sliced reader's
    ``EXPLAIN`` estimates no longer tell whether a value exists outside the slice; plans use
    default selectivities (see docs/timescaledb.md)."""

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
    monitoring: bool = False
    """``monitoring = true``: the role of ``tsaccess monitor`` (the Prometheus exporter): a
    member of ``pg_monitor``, SELECT on the audit table, EXECUTE on the audit chain's status
    function, and no privilege on any data table (checked when the policy is built)."""

    def slice_of(self, table: str) -> RowSlice | None:
        return self._slices.get(table)

    def privileges_on(self, table: str) -> frozenset[Privilege]:
        return self._grants.get(table, frozenset())

    # looked up per table by every plan (roles x tables): dicts, made once per role
    @cached_property
    def _grants(self) -> dict[str, frozenset[Privilege]]:
        out: dict[str, frozenset[Privilege]] = {}
        for t, p in self.grants:
            out.setdefault(t, p)
        return out

    @cached_property
    def _slices(self) -> dict[str, RowSlice]:
        out: dict[str, RowSlice] = {}
        for s in self.slices:
            out.setdefault(s.table, s)
        return out


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


class PolicyShape(Protocol):
    """A policy as the validators read it: :class:`~tsaccess.policy.Policy` while it is built."""

    @property
    def database(self) -> str: ...
    @property
    def schema(self) -> str: ...
    @property
    def timescaledb(self) -> TimescaleMode: ...
    @property
    def native(self) -> TimescaleMode: ...
    @property
    def tables(self) -> tuple[Table, ...]: ...
    @property
    def roles(self) -> tuple[GroupRole, ...]: ...
    @property
    def users(self) -> tuple[User, ...]: ...
    @property
    def audit(self) -> AuditSettings: ...
    @property
    def source(self) -> str: ...
    @property
    def also_connect(self) -> tuple[str, ...]: ...
    @property
    def aggregates(self) -> tuple[Aggregate, ...]: ...
    @property
    def public(self) -> str: ...
    @property
    def chunk_privileges(self) -> str: ...
    def table(self, name: str) -> Table | None: ...
    def role(self, name: str) -> GroupRole | None: ...
    def roles_of(self, user: str) -> tuple[str, ...]: ...
