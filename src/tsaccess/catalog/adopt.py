"""What ``tsaccess generate`` reads beyond what a plan reads: one set-based query for the facts an
existing database's policy needs — hypertable dimensions, continuous aggregate definitions,
row-level security policies, role attributes, memberships with their admin option, default
privileges of every role, partitions — whatever the number of objects.

Read-only; passwords are never read (``pg_roles``, not ``pg_authid``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = [
    "AdoptionCatalog",
    "AggregateDefinition",
    "Dimension",
    "RoleAttributes",
    "RowPolicy",
    "read_adoption",
]


@dataclass(frozen=True)
class Dimension:
    """A hypertable's partitioning dimension (``timescaledb_information.dimensions``)."""

    table: str
    column: str
    number: int
    time_interval: str | None
    """``7 days`` for a time dimension (PostgreSQL's text of the interval)."""
    integer_interval: int | None
    kind: str
    """``Time`` or ``Space``."""


@dataclass(frozen=True)
class AggregateDefinition:
    name: str
    definition: str
    """The aggregate's query as TimescaleDB shows it."""
    materialized_only: bool
    columns: tuple[str, ...]


@dataclass(frozen=True)
class RowPolicy:
    """A row-level security policy (``pg_policies``)."""

    table: str
    name: str
    permissive: bool
    roles: tuple[str, ...]
    command: str
    using: str | None
    check: str | None


@dataclass(frozen=True)
class RoleAttributes:
    name: str
    login: bool
    superuser: bool
    inherit: bool
    bypassrls: bool
    createrole: bool
    createdb: bool
    replication: bool
    connection_limit: int
    valid_until: str | None
    comment: str | None


@dataclass(frozen=True)
class AdoptionCatalog:
    """What :func:`read_adoption` found."""

    database: str
    schema: str
    current_user: str
    dimensions: tuple[Dimension, ...] = ()
    aggregates: Mapping[str, AggregateDefinition] = field(default_factory=dict)
    policies: tuple[RowPolicy, ...] = ()
    rls: Mapping[str, tuple[bool, bool]] = field(default_factory=dict)
    """table -> (row-level security enabled, forced)."""
    roles: Mapping[str, RoleAttributes] = field(default_factory=dict)
    members: frozenset[tuple[str, str, bool]] = frozenset()
    """(role, member, admin option)."""
    default_acl: frozenset[tuple[str, str | None, str, str, str]] = frozenset()
    """(owner role, schema or None for every schema, object type, grantee, privilege)."""
    partitions: frozenset[str] = frozenset()
    """Tables of the schema that are partitions of another table."""
    table_owners: Mapping[str, str] = field(default_factory=dict)
    queries: int = 0

    def dimensions_of(self, table: str) -> tuple[Dimension, ...]:
        return tuple(
            sorted((d for d in self.dimensions if d.table == table), key=lambda d: d.number)
        )

    def policies_on(self, table: str) -> tuple[RowPolicy, ...]:
        return tuple(p for p in self.policies if p.table == table)


_GRANTEE = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END"

_BASE = (
    "SELECT pg_catalog.current_database(), current_user,"
    " (SELECT json_agg(json_build_array(p.tablename, p.policyname, p.permissive = 'PERMISSIVE',"
    "   p.roles::text[], p.cmd, p.qual, p.with_check)) FROM pg_catalog.pg_policies p"
    "  WHERE p.schemaname = %s),"
    " (SELECT json_agg(json_build_array(c.relname, c.relrowsecurity, c.relforcerowsecurity,"
    "   c.relispartition, pg_catalog.pg_get_userbyid(c.relowner)))"
    "  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')),"
    " (SELECT json_agg(json_build_array(r.rolname, r.rolcanlogin, r.rolsuper, r.rolinherit,"
    "   r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolconnlimit,"
    "   r.rolvaliduntil::text, pg_catalog.shobj_description(r.oid, 'pg_authid')))"
    "  FROM pg_catalog.pg_roles r),"
    " (SELECT json_agg(json_build_array(pg_catalog.pg_get_userbyid(m.roleid),"
    "   pg_catalog.pg_get_userbyid(m.member), m.admin_option)) FROM pg_catalog.pg_auth_members m),"
    " (SELECT json_agg(json_build_array(pg_catalog.pg_get_userbyid(d.defaclrole), n.nspname,"
    f"   d.defaclobjtype, {_GRANTEE}, a.privilege_type))"
    "  FROM pg_catalog.pg_default_acl d"
    "  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace,"
    "  LATERAL pg_catalog.aclexplode(d.defaclacl) a)"
)

_TIMESCALE = (
    ", (SELECT json_agg(json_build_array(d.hypertable_name, d.column_name, d.dimension_number,"
    "   d.time_interval::text, d.integer_interval, d.dimension_type))"
    "  FROM timescaledb_information.dimensions d WHERE d.hypertable_schema = %s),"
    " (SELECT json_agg(json_build_array(ca.view_name, ca.view_definition, ca.materialized_only,"
    "   (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a"
    "    WHERE a.attrelid = pg_catalog.format('%%I.%%I', ca.view_schema, ca.view_name)::regclass"
    "    AND a.attnum > 0 AND NOT a.attisdropped)))"
    "  FROM timescaledb_information.continuous_aggregates ca WHERE ca.view_schema = %s)"
)


def read_adoption(
    conn: psycopg.Connection[Any], schema: str, *, timescaledb: bool
) -> AdoptionCatalog:
    """One query: what ``tsaccess generate`` needs of ``schema`` beyond a plan's catalog reads.

    ``timescaledb``: the extension exists in the database (then its dimensions and continuous
    aggregates are read too).
    """
    query = _BASE + (_TIMESCALE if timescaledb else "")
    params: tuple[Any, ...] = (schema, schema) + ((schema, schema) if timescaledb else ())
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        row = cur.execute(query, params).fetchone()
    assert row is not None
    database, user, pol_j, rel_j, role_j, mem_j, def_j = row[:7]
    dim_j, agg_j = row[7:9] if timescaledb else (None, None)
    rels = rel_j or ()
    return AdoptionCatalog(
        database=database,
        schema=schema,
        current_user=user,
        dimensions=tuple(Dimension(r[0], r[1], int(r[2]), r[3], r[4], r[5]) for r in dim_j or ()),
        aggregates={
            r[0]: AggregateDefinition(r[0], r[1] or "", bool(r[2]), tuple(r[3] or ()))
            for r in agg_j or ()
        },
        policies=tuple(
            RowPolicy(r[0], r[1], bool(r[2]), tuple(r[3] or ()), r[4], r[5], r[6])
            for r in pol_j or ()
        ),
        rls={r[0]: (bool(r[1]), bool(r[2])) for r in rels},
        roles={r[0]: _role(r) for r in role_j or ()},
        members=frozenset((r[0], r[1], bool(r[2])) for r in mem_j or ()),
        default_acl=frozenset((r[0], r[1], r[2], r[3], r[4]) for r in def_j or ()),
        partitions=frozenset(r[0] for r in rels if r[3]),
        table_owners={r[0]: r[4] for r in rels},
        queries=1,
    )


def _role(r: Any) -> RoleAttributes:
    login, superuser, inherit, bypass, createrole, createdb, repl = (bool(x) for x in r[1:8])
    return RoleAttributes(
        r[0], login, superuser, inherit, bypass, createrole, createdb, repl, int(r[8]), r[9], r[10]
    )
