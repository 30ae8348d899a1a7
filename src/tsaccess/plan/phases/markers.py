"""The managed marker: the comment that says a role or a table is tsaccess's (see
:mod:`tsaccess.plan.phases.prune`), and which databases' policies manage a role.
"""

from __future__ import annotations

import json

from psycopg import sql

from tsaccess.catalog import CatalogSnapshot
from tsaccess.policy import Policy
from tsaccess.steps import Step

__all__ = ["ROLE_MARKER_PREFIX", "TABLE_MARKER", "marked_databases", "marker_steps", "role_marker"]

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
