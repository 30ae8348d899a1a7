"""The security phase's privileges: on the database, the schema and the managed tables (exactly
the policy's, extra ones revoked; PUBLIC's left as they are with ``[database] public =
"keep"``), column grants (``"SELECT (a, b)"``) and default privileges on tables created later.

Each function compares the policy with a catalog snapshot (``None``: an empty database) and
returns only the steps that make a difference.
"""

from __future__ import annotations

from typing import Literal

from psycopg import sql

from tsaccess.catalog import CatalogSnapshot
from tsaccess.plan.phases.grants import (
    column_grants,
    table_columns,
    table_grants,
    wanted_column_grants,
)
from tsaccess.policy import Policy
from tsaccess.steps import Phase, Step, grant_steps, managed_grants, role_ident

__all__ = ["acl_steps", "column_grant_steps", "default_privilege_steps"]

Action = Literal["add", "change", "revoke"]


def acl_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    steps: list[Step] = []
    roles = sorted(r.name for r in policy.roles)
    # database: CONNECT for the group roles only; PUBLIC loses CONNECT and TEMPORARY
    owner = cat.database_owner if cat else None
    have_db = {g for g in (cat.database_acl if cat else _public_defaults("d")) if g[0] != owner}
    have_db = managed_grants(have_db, policy.public)
    steps += grant_steps(
        sql.Identifier(policy.database),
        f"database {policy.database}",
        "DATABASE",
        have_db,
        {(r, "CONNECT") for r in (*roles, *policy.also_connect)},
        "security",
    )
    # schema: USAGE for group roles (and the audit owner, in the audit phase); nobody CREATE
    aud = policy.audit.owner if policy.audited else None
    s_owner = cat.schema_owner if cat else None
    have_ns = {g for g in (cat.schema_acl if cat else _public_defaults("n")) if g[0] != s_owner}
    have_ns = managed_grants(have_ns, policy.public)
    schema_ident = sql.Identifier(policy.schema)
    steps += grant_steps(
        schema_ident,
        f"schema {policy.schema}",
        "SCHEMA",
        {g for g in have_ns if g[0] != aud},
        {(r, "USAGE") for r in roles},
        "security",
    )
    if aud:
        steps += grant_steps(
            schema_ident,
            f"schema {policy.schema}",
            "SCHEMA",
            {g for g in have_ns if g[0] == aud},
            {(aud, "USAGE")},
            "audit",
        )
    for t in (*policy.tables, None):
        name = t.name if t else policy.audit.table
        if t is None and not policy.audited:
            continue
        info = cat.tables.get(name) if cat else None
        t_owner = info.owner if info else (policy.audit.owner if t is None else None)
        born = cat.default_acl if cat else frozenset()
        have, want = table_grants(policy, cat, name)
        phase: Phase = "audit" if t is None else "security"
        target = sql.Identifier(policy.schema, name)
        steps += grant_steps(target, f"table {name}", "TABLE", have, want, phase)
        if t is None:  # the per-row view: readable by exactly those who read the audit table
            view = policy.audit.rows_view
            vinfo = cat.tables.get(view) if cat else None
            v_owner = vinfo.owner if vinfo else policy.audit.owner
            steps += grant_steps(
                sql.Identifier(policy.schema, view),
                f"view {view}",
                "TABLE",
                managed_grants(
                    {g for g in (vinfo.acl if vinfo else born) if g[0] != v_owner}, policy.public
                ),
                want,
                phase,
            )
        wanted_cols = wanted_column_grants(policy, name, info)
        for col, grantee, priv in sorted(info.column_acl if info else ()):
            if grantee == t_owner or (col, grantee, priv) in wanted_cols:
                continue
            if grantee == "PUBLIC" and policy.public == "keep":
                continue
            steps.append(
                Step(
                    sql.SQL("REVOKE {}({}) ON TABLE {} FROM {}").format(
                        sql.SQL(priv), sql.Identifier(col), target, role_ident(grantee)
                    ),
                    f"revoke {priv}({col}) on table {name} from {grantee}",
                    phase,
                )
            )
    return steps


def _public_defaults(kind: str) -> set[tuple[str, str]]:
    """PUBLIC's default privileges on a new database / the public schema (PostgreSQL 15+)."""
    return (
        {("PUBLIC", "CONNECT"), ("PUBLIC", "TEMPORARY")} if kind == "d" else {("PUBLIC", "USAGE")}
    )


def column_grant_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    """GRANT the policy's column privileges that are missing (extra ones: acl_steps revokes),
    the table privileges granted column by column included."""
    steps: list[Step] = []
    for t in policy.tables:
        info = cat.tables.get(t.name) if cat else None
        have, want = column_grants(policy, cat, t.name)
        order = {c: i for i, c in enumerate(table_columns(policy, t.name, info))}
        missing: dict[tuple[str, str], list[str]] = {}
        for col, grantee, priv in want - have:
            missing.setdefault((grantee, priv), []).append(col)
        for (grantee, priv), cols in sorted(missing.items()):
            cols.sort(key=lambda c: (order.get(c, len(order)), c))
            steps.append(
                Step(
                    sql.SQL("GRANT {} ({}) ON TABLE {} TO {}").format(
                        sql.SQL(priv),
                        sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                        sql.Identifier(policy.schema, t.name),
                        sql.Identifier(grantee),
                    ),
                    f"grant {priv} ({', '.join(cols)}) on table {t.name} to {grantee}",
                    "security",
                    action="add",
                    object=f"table {t.name}",
                )
            )
    return steps


def default_privilege_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    """Default privileges on tables the administrator creates later in the schema."""
    want = {(r.name, str(p)) for r in policy.roles for p in r.default_grants}
    have = managed_grants(cat.default_acl, policy.public) if cat else set()
    steps: list[Step] = []
    plan: tuple[tuple[str, set[tuple[str, str]], str, Action], ...] = (
        ("REVOKE", have - want, "FROM", "revoke"),
        ("GRANT", want - have, "TO", "add"),
    )
    for verb, diff, prep, action in plan:
        by: dict[str, list[str]] = {}
        for grantee, priv in diff:
            by.setdefault(grantee, []).append(priv)
        for grantee in sorted(by):
            privs = sorted(by[grantee])
            steps.append(
                Step(
                    sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} {} {} ON TABLES {} {}").format(
                        sql.Identifier(policy.schema),
                        sql.SQL(verb),
                        sql.SQL(", ").join(sql.SQL(p) for p in privs),
                        sql.SQL(prep),
                        role_ident(grantee),
                    ),
                    f"{verb.lower()} {', '.join(privs)} on future tables in schema "
                    f"{policy.schema} {prep.lower()} {grantee}",
                    "security",
                    action=action,
                    object=f"schema {policy.schema}",
                )
            )
    return steps
