"""Pruning: what tsaccess managed and the policy no longer names loses its access.

tsaccess marks what it manages (:mod:`tsaccess.plan.phases.markers`): a role's comment lists the databases
whose policies manage it (``tsaccess:managed {"databases": [...]}``), a table's comment is
``tsaccess:managed``. Roles and tables without the marker are never touched here.

* a removed **user or role** (marked for this database only): memberships revoked (both ways),
  privileges in this database revoked, ``NOLOGIN``; dropped only with ``drop_roles`` and only
  when it owns nothing anywhere and holds no privilege in another database. Objects it owns are
  reported, never dropped. A role another database's policy still manages keeps its login; it
  loses this database's memberships and privileges and this database's mark.
* a removed **table**: reported with its row count and live grants; its grants are revoked;
  the data is kept unless ``drop_tables``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tsaccess.catalog import CatalogSnapshot
from tsaccess.plan.phases.markers import TABLE_MARKER, marked_databases, role_marker
from tsaccess.policy import Policy
from tsaccess.steps import Step, grant_steps, role_ident

__all__ = ["PruneInfo", "prune_steps", "read_prune", "removed_roles", "removed_tables"]


@dataclass(frozen=True)
class AclObject:
    """An object in this database on which a removed role holds privileges."""

    kind: str
    """``TABLE``, ``SEQUENCE``, ``SCHEMA`` or ``FUNCTION``."""
    target: tuple[str, ...]
    """Schema and name (tables, sequences), name (schemas) or the ``regprocedure`` text."""
    label: str


@dataclass(frozen=True)
class PruneInfo:
    """What pruning needs beyond the catalog snapshot (read by :func:`read_prune`)."""

    owned: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Removed role -> descriptions of the objects it owns (other databases: counted)."""
    acl_objects: dict[str, tuple[AclObject, ...]] = field(default_factory=dict)
    """Removed role -> objects in this database it holds privileges on."""
    elsewhere: dict[str, int] = field(default_factory=dict)
    """Removed role -> number of privileges it holds in other databases."""
    rows: dict[str, int] = field(default_factory=dict)
    """Removed table -> row count."""


def removed_roles(policy: Policy, cat: CatalogSnapshot) -> list[str]:
    """Roles marked as managed for this database that the policy no longer names."""
    named = {r.name for r in policy.roles} | {u.name for u in policy.users} | {policy.audit.owner}
    return sorted(
        name
        for name, info in cat.roles.items()
        if policy.database in marked_databases(info.comment)
        and name not in named
        and name != cat.current_user
        and not info.superuser
    )


def removed_tables(policy: Policy, cat: CatalogSnapshot) -> list[str]:
    """Tables marked as managed in the schema that the policy no longer names."""
    named = {t.name for t in policy.tables} | {policy.audit.table, policy.audit.rows_view}
    return sorted(
        name
        for name, info in cat.tables.items()
        if info.comment == TABLE_MARKER and name not in named
    )


def read_prune(conn: psycopg.Connection[Any], policy: Policy, cat: CatalogSnapshot) -> PruneInfo:
    """Ownership and privileges of the removed roles, row counts of the removed tables."""
    roles = removed_roles(policy, cat)
    tables = removed_tables(policy, cat)
    owned: dict[str, list[str]] = {}
    acl: dict[str, list[AclObject]] = {}
    elsewhere: dict[str, int] = {}
    skip_tables = {*policy.managed_tables, policy.audit.rows_view, *tables}
    if roles:
        rows = conn.execute(
            "WITH here AS (SELECT oid FROM pg_catalog.pg_database"
            "  WHERE datname = pg_catalog.current_database())"
            " SELECT r.rolname, s.deptype, s.dbid = (SELECT oid FROM here),"
            "  s.classid = 'pg_catalog.pg_database'::regclass AND s.objid = (SELECT oid FROM here),"
            "  CASE WHEN s.dbid IN (0, (SELECT oid FROM here))"
            "   THEN pg_catalog.pg_describe_object(s.classid, s.objid, s.objsubid) END,"
            "  s.classid::regclass::text, n.nspname, c.relname, c.relkind, ns.nspname,"
            "  CASE WHEN s.classid = 'pg_catalog.pg_proc'::regclass"
            "   AND s.dbid = (SELECT oid FROM here) THEN s.objid::regprocedure::text END"
            " FROM pg_catalog.pg_shdepend s"
            " JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid"
            " LEFT JOIN pg_catalog.pg_class c ON s.classid = 'pg_catalog.pg_class'::regclass"
            "  AND c.oid = s.objid AND s.dbid = (SELECT oid FROM here)"
            " LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_catalog.pg_namespace ns"
            "  ON s.classid = 'pg_catalog.pg_namespace'::regclass AND ns.oid = s.objid"
            "  AND s.dbid = (SELECT oid FROM here)"
            " WHERE s.refclassid = 'pg_catalog.pg_authid'::regclass"
            "  AND r.rolname = ANY(%s) AND s.deptype IN ('o', 'a')",
            (roles,),
        ).fetchall()
        for role, deptype, here, this_db, descr, cls, nsp, rel, relkind, nspname, proc in rows:
            if deptype == "o":
                owned.setdefault(role, []).append(descr or f"an object in another database ({cls})")
                continue
            if this_db:
                continue  # the database's own ACL: acl_steps keeps it to the policy
            if not here:
                elsewhere[role] = elsewhere.get(role, 0) + 1
                continue
            if rel is not None:
                if nsp == policy.schema and rel in skip_tables:
                    continue
                if nsp == policy.audit.data_schema:
                    continue
                kind = "SEQUENCE" if relkind == "S" else "TABLE"
                acl.setdefault(role, []).append(AclObject(kind, (nsp, rel), descr or rel))
            elif nspname is not None:
                if nspname in (policy.schema, policy.audit.data_schema):
                    continue
                acl.setdefault(role, []).append(AclObject("SCHEMA", (nspname,), descr or ""))
            elif proc is not None:
                name = proc.removeprefix(f"{policy.schema}.")
                if name.startswith("tsaccess_") and "." not in name.split("(")[0]:
                    continue  # the audit functions: the audit phase keeps their grants exact
                acl.setdefault(role, []).append(AclObject("FUNCTION", (proc,), descr or proc))
    counts: dict[str, int] = {}
    for t in tables:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(policy.schema, t))
        ).fetchone()
        counts[t] = int(row[0]) if row else 0
    return PruneInfo(
        {k: tuple(sorted(v)) for k, v in owned.items()},
        {k: tuple(v) for k, v in acl.items()},
        elsewhere,
        counts,
    )


def _revoke_all(obj: AclObject, role: str) -> Step:
    if obj.kind == "FUNCTION":
        target: sql.Composable = sql.SQL(obj.target[0])  # regprocedure text, quoted by the server
    else:
        target = sql.Identifier(*obj.target)
    return Step(
        sql.SQL("REVOKE ALL ON {} {} FROM {}").format(
            sql.SQL(obj.kind), target, sql.Identifier(role)
        ),
        f"revoke all on {obj.label} from removed role {role}",
        "security",
        action="revoke",
        object=f"role {role}",
    )


def _end_sessions(role: str, obj: str) -> Step:
    """End the removed user's open sessions (NOLOGIN only stops new ones); waits up to 5 s."""
    return Step(
        sql.SQL(
            "SELECT pg_catalog.pg_terminate_backend(pid, 5000)"
            " FROM pg_catalog.pg_stat_activity WHERE usename = {}"
            " AND pid <> pg_catalog.pg_backend_pid()"
        ).format(sql.Literal(role)),
        f"end the open sessions of removed {obj} (if any)",
        "security",
        action="revoke",
        object=obj,
    )


def prune_steps(
    policy: Policy,
    cat: CatalogSnapshot,
    info: PruneInfo,
    warnings: list[str],
    *,
    drop_roles: bool = False,
    drop_tables: bool = False,
    exempt: Collection[str] = (),
) -> list[Step]:
    """Revoke, disable (or drop) what the policy no longer names; warn about what stays."""
    steps: list[Step] = []
    for t in removed_tables(policy, cat):
        tinfo = cat.tables[t]
        target = sql.Identifier(policy.schema, t)
        grants = sorted(g for g in tinfo.acl if g[0] != tinfo.owner)
        col_grants = sorted(g for g in tinfo.column_acl if g[1] != tinfo.owner)
        shown = ", ".join(f"{g} {p}" for g, p in grants) or "none"
        rows = info.rows.get(t, 0)
        if drop_tables:
            warnings.append(f"table {t} is no longer in the policy: dropped with its {rows} row(s)")
            steps.append(
                Step(
                    sql.SQL("DROP TABLE {}").format(target),
                    f"drop table {t} ({rows} row(s); no longer in the policy)",
                    "schema",
                    action="revoke",
                    object=f"table {t}",
                )
            )
            continue
        warnings.append(
            f"table {t} is no longer in the policy: {rows} row(s) kept, live grants: {shown}"
            + ("; its grants are revoked" if grants or col_grants else "")
            + " (drop it yourself, or apply with --drop-removed-tables)"
        )
        steps += [
            dataclasses.replace(s, action="revoke", object=f"table {t}")
            for s in grant_steps(target, f"table {t}", "TABLE", set(grants), set(), "security")
        ]
        for col, grantee, priv in col_grants:
            steps.append(
                Step(
                    sql.SQL("REVOKE {}({}) ON TABLE {} FROM {}").format(
                        sql.SQL(priv), sql.Identifier(col), target, role_ident(grantee)
                    ),
                    f"revoke {priv}({col}) on table {t} from {grantee}",
                    "security",
                    action="revoke",
                    object=f"table {t}",
                )
            )
    managed = {u.name for u in policy.users} | {r.name for r in policy.roles}
    superusers = {n for n, ri in cat.roles.items() if ri.superuser}
    gone = removed_roles(policy, cat)

    def ours(name: str) -> bool:
        info = cat.roles.get(name)
        return info is not None and policy.database in marked_databases(info.comment)

    def only_ours(name: str) -> bool:
        info = cat.roles.get(name)
        return info is not None and marked_databases(info.comment) == (policy.database,)

    revoked: set[tuple[str, str]] = set()  # a membership between two removed roles: once
    for role in gone:
        rinfo = cat.roles[role]
        kind = "user" if rinfo.login else "role"
        ident = sql.Identifier(role)
        obj = f"{kind} {role}"
        # memberships both ways that role_steps does not already handle
        for group, member in sorted(cat.members):
            if role not in (group, member) or group in managed or member in managed:
                continue
            if (group, member) in revoked:
                continue
            if not ours(group) or (not only_ours(group) and not ours(member)):
                continue  # a membership another database's policy (or nobody) manages
            if member in superusers or member in exempt or member == cat.current_user:
                continue
            revoked.add((group, member))
            steps.append(
                Step(
                    sql.SQL("REVOKE {} FROM {}").format(
                        sql.Identifier(group), sql.Identifier(member)
                    ),
                    f"revoke membership of {member} in {group} (removed from the policy)",
                    "security",
                    action="revoke",
                    object=obj,
                )
            )
        for acl_obj in info.acl_objects.get(role, ()):
            steps.append(_revoke_all(acl_obj, role))
        owned = info.owned.get(role, ())
        if owned:
            warnings.append(
                f"{kind} {role} is no longer in the policy but owns {len(owned)} object(s): "
                f"{'; '.join(owned[:5])}{' ...' if len(owned) > 5 else ''} — left alone; "
                f"reassign them (REASSIGN OWNED BY {role} TO ...) before dropping it"
            )
        others = [d for d in marked_databases(rinfo.comment) if d != policy.database]
        if others:
            steps.append(
                Step(
                    sql.SQL("COMMENT ON ROLE {} IS {}").format(
                        ident, sql.Literal(role_marker(others))
                    ),
                    f"{kind} {role}: no longer managed for {policy.database} (still for "
                    f"{', '.join(others)})",
                    "security",
                    action="revoke",
                    object=obj,
                )
            )
            continue
        if drop_roles and not owned and not info.elsewhere.get(role):
            steps.append(
                Step(
                    sql.SQL("DROP ROLE {}").format(ident),
                    f"drop removed {kind} {role}",
                    "security",
                    action="revoke",
                    object=obj,
                )
            )
            if rinfo.login:
                steps.append(_end_sessions(role, obj))
            continue
        if not drop_roles and not owned:
            warnings.append(
                f"{kind} {role} is no longer in the policy: kept without access here"
                + (" and disabled (NOLOGIN)" if kind == "user" else "")
                + "; drop it with --drop-removed (drop_removed=True)"
            )
        if drop_roles:
            warnings.append(
                f"{kind} {role} is not dropped: it "
                + ("owns objects" if owned else "holds privileges in other databases")
                + "; it is disabled (NOLOGIN) instead"
            )
        if rinfo.login:
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} NOLOGIN").format(ident),
                    f"disable login of removed {kind} {role} (NOLOGIN)",
                    "security",
                    action="revoke",
                    object=obj,
                )
            )
            steps.append(_end_sessions(role, obj))
    return steps
