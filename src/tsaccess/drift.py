"""Drift the first phases did not compare, as plan steps.

* column nullability and defaults of the policy's tables;
* role settings (``ALTER ROLE ... SET``) of the roles and users the policy manages, and the
  ``search_path`` of users of a schema other than ``public``;
* column grants (``"SELECT (a, b)"``) and default privileges on tables created later;
* the managed marker: the comment that says a role or a table is tsaccess's (see
  :mod:`tsaccess.prune`).

Like :mod:`tsaccess.phases`, each function compares the policy with a catalog snapshot
(``None``: an empty database) and returns only the steps that make a difference.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from psycopg import sql

from tsaccess._steps import Step, role_ident
from tsaccess.catalog import CatalogSnapshot, ColumnInfo
from tsaccess.policy import Column, Policy, Table

__all__ = [
    "TABLE_MARKER",
    "column_drift_steps",
    "column_grant_steps",
    "default_privilege_steps",
    "marked_databases",
    "marker_steps",
    "role_marker",
    "settings_steps",
    "wanted_column_grants",
    "wanted_settings",
]

Action = Literal["add", "change", "revoke"]
ROLE_MARKER_PREFIX = "tsaccess:managed "
TABLE_MARKER = "tsaccess:managed"
"""The comment tsaccess puts on the tables it manages."""


def marked_databases(comment: str | None) -> tuple[str, ...]:
    """The databases whose policies manage a role, from its comment (empty: not tsaccess's)."""
    if not comment or not comment.startswith(ROLE_MARKER_PREFIX):
        return ()
    try:
        data = json.loads(comment[len(ROLE_MARKER_PREFIX) :])
    except ValueError:
        return ()
    dbs = data.get("databases") if isinstance(data, dict) else None
    return tuple(sorted(str(d) for d in dbs)) if isinstance(dbs, list) else ()


def role_marker(databases: tuple[str, ...] | list[str] | set[str]) -> str:
    """The comment marking a role as managed by the policies of ``databases``."""
    return ROLE_MARKER_PREFIX + json.dumps({"databases": sorted(set(databases))})


def marker_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    """Mark the policy's roles, users and tables as managed by tsaccess (comments)."""
    steps: list[Step] = []
    for name, kind in [(r.name, "role") for r in policy.roles] + [
        (u.name, "user") for u in policy.users
    ]:
        info = cat.roles.get(name) if cat else None
        have = marked_databases(info.comment if info else None)
        if policy.database in have:
            continue
        steps.append(
            Step(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(role_marker([*have, policy.database]))
                ),
                f"mark {kind} {name} as managed by tsaccess",
                "security",
                action="change",
                object=f"{kind} {name}",
                internal=True,
            )
        )
    for t in policy.tables:
        tinfo = cat.tables.get(t.name) if cat else None
        if tinfo is not None and tinfo.comment == TABLE_MARKER:
            continue
        steps.append(
            Step(
                sql.SQL("COMMENT ON TABLE {} IS {}").format(
                    sql.Identifier(policy.schema, t.name), sql.Literal(TABLE_MARKER)
                ),
                f"mark table {t.name} as managed by tsaccess",
                "schema",
                action="change",
                object=f"table {t.name}",
                internal=True,
            )
        )
    return steps


def _literal_text(live: str) -> str:
    """``'-1'::integer`` -> ``-1``; ``'it''s'::text`` -> ``it's``; ``1.50`` -> ``1.50``."""
    m = re.fullmatch(r"'((?:[^']|'')*)'(?:::[a-z][a-z0-9 _\[\]()]*)?", live.strip())
    return m.group(1).replace("''", "'") if m else live.strip()


def _same_default(c: Column, live: ColumnInfo) -> bool:
    if c.default_function:
        return live.default is not None and live.default.lower() == c.default_function.lower()
    if c.default is None:
        return live.default is None
    if live.default is None:
        return False
    have = _literal_text(live.default)
    if isinstance(c.default, bool):
        return have.lower() in (("true", "t") if c.default else ("false", "f"))
    if isinstance(c.default, int | float):
        try:
            return float(have) == float(c.default)
        except ValueError:
            return False
    return have == c.default


def column_drift_steps(policy: Policy, t: Table, cat: CatalogSnapshot | None) -> list[Step]:
    """Nullability and defaults of the table's existing columns, as the policy says."""
    info = cat.tables.get(t.name) if cat else None
    if info is None or info.kind not in ("r", "p"):
        return []
    live = {c.name: c for c in info.columns}
    target = sql.Identifier(policy.schema, t.name)
    steps: list[Step] = []
    for c in t.columns:
        lc = live.get(c.name)
        if lc is None:
            continue
        col = sql.Identifier(c.name)
        if lc.not_null == c.nullable:
            verb = "DROP NOT NULL" if c.nullable else "SET NOT NULL"
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} {}").format(target, col, sql.SQL(verb)),
                    f"column {t.name}.{c.name}: {verb.lower()}",
                    "schema",
                    action="change",
                    object=f"table {t.name}",
                )
            )
        if not _same_default(c, lc):
            if c.default_function:
                expr: sql.Composable = sql.SQL("SET DEFAULT " + c.default_function)
                what = c.default_function
            elif c.default is not None:
                expr = sql.SQL("SET DEFAULT {}").format(sql.Literal(c.default))
                what = repr(c.default)
            else:
                expr, what = sql.SQL("DROP DEFAULT"), "none"
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} {}").format(target, col, expr),
                    f"column {t.name}.{c.name}: default {lc.default or 'none'} -> {what}",
                    "schema",
                    action="change",
                    object=f"table {t.name}",
                )
            )
    return steps


def _plain_ident(name: str) -> str:
    """An identifier as PostgreSQL prints it in a setting (quoted only when needed)."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def wanted_settings(policy: Policy, user: str) -> dict[str, str]:
    """The settings tsaccess keeps for ``user`` in the policy's database."""
    u = next((x for x in policy.users if x.name == user), None)
    if u is None:
        return {}
    out = dict(u.settings)
    if policy.schema != "public" and "search_path" not in out:
        out["search_path"] = f"{_plain_ident(policy.schema)}, public"
    return out


def settings_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    """Role settings: exactly the policy's for its users and roles, here and everywhere."""
    steps: list[Step] = []
    db = sql.Identifier(policy.database)
    kinds = [(r.name, "role") for r in policy.roles] + [(u.name, "user") for u in policy.users]
    for name, kind in kinds:
        ident = sql.Identifier(name)
        settings = cat.role_settings if cat else {}
        everywhere = settings.get((name, False), ())
        if everywhere:
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} RESET ALL").format(ident),
                    f"{kind} {name}: reset settings not in the policy ({', '.join(everywhere)})",
                    "security",
                    action="change",
                    object=f"{kind} {name}",
                )
            )
        have = dict(s.split("=", 1) for s in settings.get((name, True), ()) if "=" in s)
        want = wanted_settings(policy, name)
        for key in sorted(set(have) - set(want)):
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} IN DATABASE {} RESET {}").format(
                        ident, db, sql.SQL(key)
                    ),
                    f"{kind} {name}: reset {key} (was {have[key]})",
                    "security",
                    action="change",
                    object=f"{kind} {name}",
                )
            )
        for key in sorted(want):
            if have.get(key) == want[key]:
                continue
            if key == "search_path" and "search_path" not in dict(
                next((u.settings for u in policy.users if u.name == name), ())
            ):
                value: sql.Composable = sql.SQL(", ").join(
                    [sql.Identifier(policy.schema), sql.SQL("public")]
                )
            else:
                value = sql.Literal(want[key])
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                        ident, db, sql.SQL(key), value
                    ),
                    f"{kind} {name}: set {key} = {want[key]}"
                    + (f" (was {have[key]})" if key in have else ""),
                    "security",
                    action="add" if key not in have else "change",
                    object=f"{kind} {name}",
                )
            )
    return steps


def column_grant_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    """GRANT the policy's column privileges that are missing (extra ones: acl_steps revokes)."""
    steps: list[Step] = []
    for r in policy.roles:
        for table, priv, cols in r.column_grants:
            info = cat.tables.get(table) if cat else None
            have = info.column_acl if info else frozenset()
            missing = [c for c in cols if (c, r.name, priv) not in have]
            if not missing:
                continue
            steps.append(
                Step(
                    sql.SQL("GRANT {} ({}) ON TABLE {} TO {}").format(
                        sql.SQL(priv),
                        sql.SQL(", ").join(sql.Identifier(c) for c in missing),
                        sql.Identifier(policy.schema, table),
                        sql.Identifier(r.name),
                    ),
                    f"grant {priv} ({', '.join(missing)}) on table {table} to {r.name}",
                    "security",
                    action="add",
                    object=f"table {table}",
                )
            )
    return steps


def wanted_column_grants(policy: Policy, table: str) -> set[tuple[str, str, str]]:
    """(column, grantee, privilege) the policy grants on ``table``."""
    return {
        (c, r.name, priv)
        for r in policy.roles
        for t, priv, cols in r.column_grants
        if t == table
        for c in cols
    }


def default_privilege_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    """Default privileges on tables the administrator creates later in the schema."""
    want = {(r.name, str(p)) for r in policy.roles for p in r.default_grants}
    have = set(cat.default_acl) if cat else set()
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
