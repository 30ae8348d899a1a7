"""The policy's grants on one table as the plan compares them with the catalog, shared by the
security phase (:mod:`tsaccess.plan.phases.acl`) and the chunk ACLs
(:mod:`tsaccess.plan.phases.timescale`, which predicts what TimescaleDB copies to chunks).

A role that sees a slice of a hypertable's rows holds its SELECT (INSERT, UPDATE) on every
column, not on the table (:meth:`tsaccess.policy.Policy.by_columns`): TimescaleDB copies a
hypertable's table-level ACL to every chunk it makes, whatever made it, and never its column
privileges.
"""

from __future__ import annotations

from tsaccess.catalog import CatalogSnapshot, TableInfo
from tsaccess.policy import Policy
from tsaccess.steps import managed_grants

__all__ = [
    "ColumnGrant",
    "Grant",
    "column_grants",
    "table_columns",
    "table_grants",
    "wanted_column_grants",
]

Grant = tuple[str, str]
"""(grantee, privilege)."""
ColumnGrant = tuple[str, str, str]
"""(column, grantee, privilege)."""


def table_grants(
    policy: Policy, cat: CatalogSnapshot | None, name: str
) -> tuple[set[Grant], set[Grant]]:
    """(grantee, privilege) on the table ``name`` (a policy table or the audit table): what it
    has besides its owner (PUBLIC left out with ``public = "keep"``; a table created by this
    plan starts with the schema's default privileges) and what the policy wants granted on
    the table itself (privileges granted column by column are not: :meth:`Policy.by_columns`)."""
    info = cat.tables.get(name) if cat else None
    t_owner = info.owner if info else (policy.audit.owner if name == policy.audit.table else None)
    born = cat.default_acl if cat else frozenset()
    have = managed_grants(
        {g for g in (info.acl if info else born) if g[0] != t_owner}, policy.public
    )
    want = {(r.name, str(p)) for r in policy.roles for p in policy.table_level(name, r.name)}
    return have, want


def table_columns(policy: Policy, table: str, info: TableInfo | None) -> tuple[str, ...]:
    """Every column of ``table``: the policy's, then the live ones it does not list."""
    t = policy.table(table)
    cols = [c.name for c in t.columns] if t else []
    cols += [c.name for c in (info.columns if info else ()) if c.name not in cols]
    return tuple(cols)


def wanted_column_grants(
    policy: Policy, table: str, info: TableInfo | None = None
) -> set[ColumnGrant]:
    """(column, grantee, privilege) the policy grants on ``table``: its column grants, and the
    table privileges it grants column by column on every column (:meth:`Policy.by_columns`;
    ``info``: the live table, whose columns the policy does not list count too)."""
    out = {
        (c, r.name, priv)
        for r in policy.roles
        for t, priv, cols in r.column_grants
        if t == table
        for c in cols
    }
    every = table_columns(policy, table, info)
    for r in policy.roles:
        out |= {(c, r.name, str(p)) for p in policy.by_columns(table, r.name) for c in every}
    return out


def column_grants(
    policy: Policy, cat: CatalogSnapshot | None, table: str
) -> tuple[set[ColumnGrant], set[ColumnGrant]]:
    """(column, grantee, privilege) on ``table`` once this plan's table-level steps ran (a
    table-level REVOKE also revokes the privilege on every column), and what the policy wants
    (:func:`wanted_column_grants`)."""
    info = cat.tables.get(table) if cat else None
    have_t, want_t = table_grants(policy, cat, table)
    gone = have_t - want_t
    have = {g for g in (info.column_acl if info else ()) if (g[1], g[2]) not in gone}
    return have, wanted_column_grants(policy, table, info)
