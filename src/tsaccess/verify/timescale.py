"""TimescaleDB objects in the access matrix: a chunk of each hypertable, each continuous
aggregate and its materialized hypertable.

A chunk is a table of its own (``_timescaledb_internal._hyper_N_M_chunk``) that copies its
hypertable's privileges and never carries row-level security: the matrix expects on it the
hypertable's SELECT less that of the roles that see only a slice of the rows, and no write (a
write on a chunk would skip the hypertable's audit triggers; a sliced role's privileges on the
hypertable are column privileges on every column, never copied to a chunk). An aggregate
is expected readable exactly by its grantees, its materialized hypertable by nobody. With
``[database] chunk_privileges = "copied"`` a chunk is expected to have its hypertable's
privileges and the materialized hypertable its aggregate's (what TimescaleDB copies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tsaccess.policy import TABLE_PRIVILEGES, Policy

__all__ = ["ExtraObject", "timescale_objects"]


@dataclass(frozen=True)
class ExtraObject:
    """An object outside the policy's schema (or not a table) that the matrix probes."""

    label: str
    qualified: str
    """``schema.name`` quoted as needed (for ``has_table_privilege``)."""
    ident: sql.Identifier
    privileges: tuple[str, ...]
    expected: dict[str, frozenset[str]]
    """Per user: the privileges the policy implies."""
    last_column: str = ""
    columns: tuple[str, ...] = ()
    """Every column: a table privilege is probed on all of them (a column grant is not one)."""


def _user_privs(policy: Policy, user: str, table: str, *, chunk: bool) -> frozenset[str]:
    if chunk and policy.chunk_privileges == "copied":
        chunk = False  # chunks keep what TimescaleDB copies from the hypertable
    out: set[str] = set()
    for rname in policy.roles_of(user):  # nested roles too
        role = policy.role(rname)
        if role is None or (chunk and role.slice_of(table) is not None):
            continue
        out |= set(role.privileges_on(table))
    return frozenset(p for p in out if not chunk or p == "SELECT")


def timescale_objects(admin: psycopg.Connection[Any], policy: Policy) -> list[ExtraObject]:
    """The newest chunk of each policy hypertable, each aggregate and its materialized
    hypertable (nothing without TimescaleDB)."""
    with admin.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        (ext,) = cur.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'timescaledb')"
        ).fetchone() or (False,)
        if not ext:
            return []
        chunk_rows = cur.execute(
            "SELECT DISTINCT ON (hypertable_name) hypertable_name, chunk_schema, chunk_name,"
            " (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)"
            "  FROM pg_catalog.pg_attribute a"
            "  WHERE a.attrelid = pg_catalog.format('%%I.%%I', chunk_schema, chunk_name)::regclass"
            "  AND a.attnum > 0 AND NOT a.attisdropped)"
            " FROM timescaledb_information.chunks WHERE hypertable_schema = %s"
            " ORDER BY hypertable_name, range_end DESC NULLS LAST, chunk_name DESC",
            (policy.schema,),
        ).fetchall()
        agg_rows = cur.execute(
            "SELECT view_name, materialization_hypertable_schema,"
            " materialization_hypertable_name FROM timescaledb_information.continuous_aggregates"
            " WHERE view_schema = %s",
            (policy.schema,),
        ).fetchall()
    users = [u.name for u in policy.users]
    out: list[ExtraObject] = []
    for table, schema, name, columns in chunk_rows:
        if policy.table(table) is None:
            continue
        ident = sql.Identifier(schema, name)
        out.append(
            ExtraObject(
                f"{schema}.{name} (chunk of {table})",
                ident.as_string(None),
                ident,
                TABLE_PRIVILEGES,
                {u: _user_privs(policy, u, table, chunk=True) for u in users},
                columns[-1] if columns else "",
                tuple(columns or ()),
            )
        )
    live = {r[0]: (r[1], r[2]) for r in agg_rows}
    for a in policy.aggregates:
        ident = sql.Identifier(policy.schema, a.name)
        out.append(
            ExtraObject(
                f"{a.name} (continuous aggregate)",
                ident.as_string(None),
                ident,
                ("SELECT",),
                {u: _user_privs(policy, u, a.name, chunk=False) for u in users},
            )
        )
        if a.name in live:
            mat = sql.Identifier(*live[a.name])
            out.append(
                ExtraObject(
                    f"{live[a.name][0]}.{live[a.name][1]} (materialized hypertable of {a.name})",
                    mat.as_string(None),
                    mat,
                    ("SELECT",),
                    {
                        u: _user_privs(policy, u, a.name, chunk=False)
                        if policy.chunk_privileges == "copied"
                        else frozenset()
                        for u in users
                    },
                )
            )
    return out
