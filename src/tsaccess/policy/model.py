"""The policy's frozen dataclasses (:class:`Policy` and its parts), validated when built.

The package docstring (:mod:`tsaccess.policy`) describes the model and shows an example;
``docs/reference/policy.md`` lists every key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

from tsaccess.policy.base import (
    TABLE_PRIVILEGES,
    AuditMode,
    ChunkPrivileges,
    Privilege,
    PublicMode,
    TimescaleMode,
)
from tsaccess.policy.extras import validate_extras
from tsaccess.policy.parts import AuditSettings, Column, GroupRole, Table, User, password_env_var
from tsaccess.policy.problems import collecting
from tsaccess.policy.timescale import Aggregate, AggregateColumn, Compression, Retention, RowSlice
from tsaccess.policy.timescale_checks import validate_timescale
from tsaccess.policy.validate import validate

__all__ = [
    "TABLE_PRIVILEGES",
    "Aggregate",
    "AggregateColumn",
    "AuditMode",
    "AuditSettings",
    "ChunkPrivileges",
    "Column",
    "Compression",
    "GroupRole",
    "Policy",
    "Privilege",
    "PublicMode",
    "Retention",
    "RowSlice",
    "Table",
    "TimescaleMode",
    "User",
    "column_level",
    "password_env_var",
]

COLUMN_LEVEL: frozenset[str] = frozenset({"SELECT", "INSERT", "UPDATE"})
"""Table privileges PostgreSQL can also grant on columns."""


def column_level(
    table: Table | None, role: GroupRole | None, privilege: str, timescaledb: TimescaleMode
) -> bool:
    """:meth:`Policy.column_level` for a table and role (also before their policy exists)."""
    if table is None or role is None or not table.hypertable or timescaledb == "off":
        return False
    return privilege in COLUMN_LEVEL and role.slice_of(table.name) is not None


@dataclass(frozen=True)
class Policy:
    """A whole access policy: one database and schema, its tables, group roles, users and audit.

    Validated on construction, whatever built it (:func:`load_policy`, :func:`parse_policy` or
    code): an invalid policy raises :class:`~tsaccess.PolicyError` naming the offending key, or
    :class:`~tsaccess.PolicyErrors` listing every error.
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
    public: PublicMode = "revoke"
    """``[database] public``: ``revoke`` PUBLIC's privileges on the database, the schema and
    the policy's tables (the default), or ``keep`` them as they are (``tsaccess generate``
    writes ``keep`` for a database whose PUBLIC holds some: adopting changes no one's access)."""
    native: TimescaleMode = "prefer"
    """``[database] native``: the compiled trigger functions (the ``tsaccess_native`` library,
    see ``docs/native.md``): ``prefer`` (use them where the server has the library and the
    administrator may create C functions), ``require`` (fail without them) or ``off``."""
    chunk_privileges: ChunkPrivileges = "select"
    """``[database] chunk_privileges``: ``select`` (chunks: the hypertable's SELECT grants
    only, new chunks closed to writes) or ``copied`` (chunks keep what TimescaleDB copies from
    their hypertable; only without audited or sliced tables)."""

    def __post_init__(self) -> None:
        # every error at once: joins the loader's collection (which raises them with its own),
        # or raises them here as one PolicyError / PolicyErrors
        with collecting(self.source) as problems:
            validate(self, problems)
            validate_timescale(self, problems)
            validate_extras(self, problems)

    def table(self, name: str) -> Table | None:
        return self._named[0].get(name)

    def role(self, name: str) -> GroupRole | None:
        return self._named[1].get(name)

    def aggregate(self, name: str) -> Aggregate | None:
        return next((a for a in self.aggregates if a.name == name), None)

    @cached_property
    def _named(self) -> tuple[dict[str, Table], dict[str, GroupRole]]:
        # planning asks for tables and roles by name per table x role: a dict, not a scan (the
        # first of a duplicated name, as a scan found it; validation reports duplicates)
        tables: dict[str, Table] = {}
        roles: dict[str, GroupRole] = {}
        for t in self.tables:
            tables.setdefault(t.name, t)
        for r in self.roles:
            roles.setdefault(r.name, r)
        return tables, roles

    @cached_property
    def _by_columns(self) -> dict[tuple[str, str], frozenset[Privilege]]:
        return {}

    def sliced_roles(self, table: str) -> tuple[str, ...]:
        """Group roles that see only a slice of ``table``'s rows."""
        return self._sliced.get(table, ())

    @cached_property
    def _sliced(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for r in self.roles:
            for s in r.slices:
                if r.slice_of(s.table) is s:
                    out.setdefault(s.table, []).append(r.name)
        return {t: tuple(names) for t, names in out.items()}

    def by_columns(self, table: str, role: str) -> frozenset[Privilege]:
        """The table privileges of ``role`` on ``table`` that tsaccess grants column by column,
        on every column of the table: SELECT, INSERT and UPDATE of a role that sees a slice of
        a hypertable's rows. TimescaleDB copies a hypertable's table-level privileges to every
        chunk it makes (``create_chunk``, ``split_chunk``... included) and never its column
        privileges; chunks carry no row-level security (see docs/timescaledb.md)."""
        key = (table, role)
        known = self._by_columns.get(key)
        if known is not None:
            return known
        r = self.role(role)
        if r is None:
            return frozenset()
        out = frozenset(p for p in r.privileges_on(table) if self.column_level(table, role, p))
        self._by_columns[key] = out
        return out

    def column_level(self, table: str, role: str, privilege: str) -> bool:
        """Whether ``role``'s table privilege ``privilege`` on ``table`` (held or not) is one
        tsaccess grants on every column instead (:meth:`by_columns`)."""
        return column_level(self.table(table), self.role(role), privilege, self.timescaledb)

    def table_level(self, table: str, role: str) -> frozenset[Privilege]:
        """The privileges of ``role`` on ``table`` granted on the table itself (the others:
        :meth:`by_columns`)."""
        r = self.role(role)
        if r is None:
            return frozenset()
        held = r.privileges_on(table)
        return held - self.by_columns(table, role) if held else held

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
