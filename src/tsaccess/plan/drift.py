"""Drift: the steps :func:`~tsaccess.plan.compose.plan` would run now, computed read-only by a
role that may read the catalog but not change it (``tsaccess monitor``'s monitoring role).

The plan is made as the administrator who applies the policy would make it (the *applier*: its
default privileges, whether it is a superuser, the memberships and roles it is exempt from),
from catalog reads any role may do. Nothing is locked beyond the catalog reads' own
``AccessShareLock`` on catalog tables: no advisory lock (an ``apply`` takes one; drift never
waits for it), no lock on a data table, no row of a data table read.

What a low-privilege reader cannot see is left out of the count and named in
:attr:`Drift.unchecked`:

* ``passwords``: the stored verifiers (``pg_authid``) are readable by superusers only; a
  password changed by hand is not drift here (``tsaccess plan`` as the administrator sees it);
* ``slice attributes``: the row slices' user attributes (``tsaccess_rls.user_attributes``) are
  private to their owner; when unreadable they are taken as the policy says.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg

from tsaccess.catalog import CatalogSnapshot, read_catalog
from tsaccess.catalog.timescale import read_timescale
from tsaccess.plan.build import build_steps, timescaledb_decision
from tsaccess.plan.format import action_of
from tsaccess.plan.phases.prune import read_prune
from tsaccess.policy import Policy
from tsaccess.steps import Step

__all__ = ["Drift", "drift", "infer_applier"]

_GRANTEE = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END"


@dataclass(frozen=True)
class Drift:
    """What ``plan`` would run now; empty (falsy) when the database is what the policy says."""

    steps: tuple[Step, ...]
    applier: str
    """The administrator the plan was made for (its default privileges and exemptions)."""
    unchecked: tuple[str, ...] = ()
    """Parts this reader could not see and left out (``passwords``, ``slice attributes``)."""
    queries: int = 0

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def kinds(self) -> dict[tuple[str, str], int]:
        """Steps by (phase, action): ``("security", "revoke") -> 2``."""
        return dict(Counter((s.phase, action_of(s)) for s in self.steps))


def infer_applier(policy: Policy, cat: CatalogSnapshot) -> str:
    """Who applies the policy: the owner of most of the policy's existing tables (``apply``
    creates them as itself), else the owner of the schema, else of the database."""
    owners = Counter(cat.tables[t.name].owner for t in policy.tables if t.name in cat.tables)
    if owners:
        return sorted(owners.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    return cat.schema_owner or cat.database_owner


def _default_acl(conn: psycopg.Connection[Any], schema: str, role: str) -> frozenset[Any]:
    rows = conn.execute(
        f"SELECT {_GRANTEE}, a.privilege_type FROM pg_catalog.pg_default_acl d"
        " JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace,"
        " LATERAL pg_catalog.aclexplode(d.defaclacl) a"
        " WHERE n.nspname = %s AND d.defaclobjtype = 'r'"
        " AND d.defaclrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)",
        (schema, role),
    ).fetchall()
    return frozenset((r[0], r[1]) for r in rows)


def drift(conn: psycopg.Connection[Any], policy: Policy, *, applier: str | None = None) -> Drift:
    """The steps ``plan`` would run now, read with ``conn``'s own (low) privileges.

    Args:
        conn: any role that may connect to the policy's database (the monitoring role:
            ``pg_monitor`` is not even needed for this part); autocommit recommended, so no
            snapshot is held between scrapes.
        applier: the administrator who applies the policy; default: :func:`infer_applier`.
    """
    cat = read_catalog(conn, policy.schema, policy.audit.data_schema)
    who = applier or infer_applier(policy, cat)
    info = cat.roles.get(who)
    unchecked = [] if cat.superuser else ["passwords"]
    cat = dataclasses.replace(
        cat,
        current_user=who,
        superuser=info.superuser if info is not None else True,
        default_acl=_default_acl(conn, policy.schema, who),
    )
    tsc = read_timescale(conn, policy.schema, timescaledb=cat.timescaledb)
    if not tsc.attributes_readable:
        unchecked.append("slice attributes")
        wanted = frozenset((u.name, k, v) for u in policy.users for k, v in u.attributes)
        tsc = dataclasses.replace(tsc, attributes=wanted)
    ts, _ = timescaledb_decision(policy, cat)
    pinfo = read_prune(conn, policy, cat, count_rows=False)
    steps, _ = build_steps(policy, cat, {}, timescaledb=ts, prune=pinfo, tsc=tsc)
    return Drift(tuple(steps), who, tuple(unchecked), cat.queries + tsc.queries + 2)
