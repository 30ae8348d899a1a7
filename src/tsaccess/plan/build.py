"""The steps of a policy: what :func:`tsaccess.plan.compose.plan` and
:func:`tsaccess.plan.compose.render_init` run, assembled from the phases in order.

:func:`build_steps` calls every phase (schema, roles and settings, grants, audit, TimescaleDB,
markers, pruning, default privileges) against a catalog snapshot, or against none (an empty
database: ``render_init``, a saved plan for a database that does not exist yet).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from psycopg import sql

from tsaccess.audit.ddl import audit_steps
from tsaccess.audit.retention import retention_steps
from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog.timescale import TimescaleCatalog
from tsaccess.errors import PolicyError
from tsaccess.native import use_native
from tsaccess.passwords import Secret
from tsaccess.plan.phases.acl import acl_steps, column_grant_steps, default_privilege_steps
from tsaccess.plan.phases.chunks import chunk_steps
from tsaccess.plan.phases.markers import marker_steps
from tsaccess.plan.phases.prune import PruneInfo, prune_steps
from tsaccess.plan.phases.roles import role_steps, settings_steps
from tsaccess.plan.phases.routines import routine_runtime_steps, routine_steps
from tsaccess.plan.phases.slices import slice_steps
from tsaccess.plan.phases.tables import column_drift_steps, table_steps
from tsaccess.plan.phases.timescale import timescale_steps
from tsaccess.policy import Policy
from tsaccess.steps import Step

__all__ = ["build_steps", "timescaledb_decision"]


def build_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    passwords: Mapping[str, Secret],
    *,
    timescaledb: bool,
    require_passwords: bool = False,
    prune: PruneInfo | None = None,
    drop_roles: bool = False,
    drop_tables: bool = False,
    tsc: TimescaleCatalog | None = None,
    generated: dict[str, Secret] | None = None,
) -> tuple[list[Step], list[str]]:
    """The steps that bring ``cat`` (None: an empty database) to ``policy``, in phase order,
    and the warnings met on the way."""
    warnings: list[str] = []
    native = use_native(policy, cat)  # the compiled trigger functions (tsaccess.native)
    schema: list[Step] = []
    if timescaledb and (cat is None or not cat.timescaledb):
        schema.append(
            Step(
                sql.SQL("CREATE EXTENSION IF NOT EXISTS timescaledb"),
                "create extension timescaledb",
                "schema",
            )
        )
    if cat is None or not cat.schema_exists:
        schema.append(
            Step(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(policy.schema)),
                f"create schema {policy.schema}",
                "schema",
            )
        )
    for t in policy.tables:
        schema += table_steps(policy, t, cat, timescaledb, warnings)
        schema += column_drift_steps(policy, t, cat)
    security = role_steps(policy, cat, passwords, warnings, require_passwords, generated=generated)
    security += settings_steps(policy, cat)
    markers = marker_steps(policy, cat)
    acl = acl_steps(policy, cat)
    acl += column_grant_steps(policy, cat)
    # last: tables this plan creates start with the current default privileges
    defaults = default_privilege_steps(policy, cat)
    audit = audit_steps(policy, cat, timescaledb, native)
    acl_security = [s for s in acl if s.phase == "security"]
    acl_security += routine_steps(policy, cat, tsc.routines if tsc else None, warnings)
    acl_audit = [s for s in acl if s.phase == "audit"]
    pruned = (
        prune_steps(policy, cat, prune, warnings, drop_roles=drop_roles, drop_tables=drop_tables)
        if cat is not None and prune is not None
        else []
    )
    # after the audit phase: it switches DELETE triggers before compression is enabled, and
    # chunk ACLs are predicted from the hypertable grants planned above
    timescale = slice_steps(policy, cat, tsc, timescaledb, warnings)
    timescale += timescale_steps(policy, cat, tsc, timescaledb, warnings)
    timescale += retention_steps(policy, cat, tsc, timescaledb, warnings)
    timescale = [_with_object(policy, s) for s in timescale]
    repaired = frozenset(
        s.object.removeprefix("table ") for s in timescale if s.object and " on chunk " in s.summary
    )
    timescale += chunk_steps(policy, cat, tsc, timescaledb, repaired, native)
    timescale += routine_runtime_steps(policy, cat, tsc, timescaledb)
    return [
        *schema,
        *security,
        *acl_security,
        *audit,
        *acl_audit,
        *timescale,
        *markers,
        *pruned,
        *defaults,
    ], warnings


def _with_object(policy: Policy, step: Step) -> Step:
    """TimescaleDB steps are changes of a table or aggregate, never folded audit internals."""
    if step.object is not None:
        return step
    words = set(re.findall(r"[\w$]+", step.summary))
    for kind, names in (
        ("aggregate", [a.name for a in policy.aggregates]),
        ("table", [t.name for t in policy.tables]),
    ):
        hits = [n for n in names if n in words]
        if len(hits) == 1:
            return dataclasses.replace(step, object=f"{kind} {hits[0]}")
    return dataclasses.replace(step, object="timescaledb")


def timescaledb_decision(policy: Policy, cat: CatalogSnapshot) -> tuple[bool, list[str]]:
    """Whether the plan uses TimescaleDB on this server, and a warning when it falls back."""
    if policy.timescaledb == "off":
        return False, []
    if cat.timescaledb or (cat.timescaledb_available and cat.timescaledb_preloaded):
        return True, []
    why = (
        "the timescaledb extension is not installed on this server"
        if not cat.timescaledb_available
        else "timescaledb is not in shared_preload_libraries"
    )
    if policy.timescaledb == "require":
        raise PolicyError(
            f"the policy requires TimescaleDB but {why}; use a TimescaleDB server "
            'or set timescaledb = "prefer"',
            path="database.timescaledb",
            source=policy.source,
        )
    if any(t.hypertable for t in policy.tables):
        return False, [f"TimescaleDB unavailable ({why}): hypertables are created as plain tables"]
    return False, []
