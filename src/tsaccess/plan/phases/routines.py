"""TimescaleDB's routines as plan steps: PUBLIC keeps only what normal use needs.

The rule is derived from the catalog on every plan (:mod:`tsaccess.catalog.routines`): a routine
PUBLIC may execute that the rule does not keep is revoked (also after an ``ALTER EXTENSION ...
UPDATE`` or a reinstall gave PUBLIC its default back: the next plan shows the repair), a kept
one PUBLIC lost is granted back, and a policy role or user that was granted a revoked routine
directly loses it.

The owners of the policy's tables run their jobs as themselves: when they are not superusers
(the connected administrator included, who creates the tables and tsaccess's own jobs) they get
the job entry points and ``add_job``. Everything else owners called before (``freeze_chunk``,
``create_chunk``, ``timescaledb_experimental``, ...) is a superuser's from then on, or anyone's a
superuser grants it to (``GRANT EXECUTE ON FUNCTION ... TO <owner>``; tsaccess leaves grants to
roles outside the policy alone).

With ``[database] public = "keep"`` (an adopted database, see ``tsaccess generate``) PUBLIC's
EXECUTE on the routines is left as it is, like every other privilege of PUBLIC's: the plan
warns, naming the routines any login user could erase data with, until the policy says
``public = "revoke"``.

A plan that creates the extension cannot read its routines yet, and one that creates a
continuous aggregate makes the rule keep what the aggregate's views call: there, one ``DO``
step after the TimescaleDB phase runs the same rule on the server.

See ``docs/timescaledb.md`` ("TimescaleDB's functions").
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog.routines import ROW_COLUMNS, RoutineInfo, derive_sql
from tsaccess.catalog.timescale import TimescaleCatalog
from tsaccess.policy import Policy
from tsaccess.steps import Step, role_ident

__all__ = ["ROUTINES_OBJECT", "routine_owners", "routine_runtime_steps", "routine_steps"]

ROUTINES_OBJECT = "TimescaleDB routines"
_SHOWN = 6


def _owner_needs(r: RoutineInfo) -> bool:
    """A non-superuser owner needs it for its jobs (tsaccess's retention job uses add_job)."""
    return r.job is not None or (not r.internal and r.name == "add_job")


def routine_owners(policy: Policy, cat: CatalogSnapshot | None) -> list[str]:
    """The owners of the policy's tables (the connected administrator for tables this plan
    creates) that are not superusers."""
    if cat is None:
        return []
    owners = {
        cat.tables[t.name].owner if t.name in cat.tables else cat.current_user
        for t in policy.tables
    }
    if not cat.superuser:
        owners.add(cat.current_user)
    return sorted(o for o in owners if not (cat.roles.get(o) and cat.roles[o].superuser))


def _targets(routines: Iterable[RoutineInfo]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{}({})").format(sql.Identifier(r.schema, r.name), sql.SQL(r.args))
        for r in routines
    )


def _names(routines: list[RoutineInfo]) -> str:
    names = sorted({r.name for r in routines})
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _step(verb: str, routines: list[RoutineInfo], who: str, why: str) -> Step:
    prep = "TO" if verb == "GRANT" else "FROM"
    return Step(
        sql.SQL("{} EXECUTE ON ROUTINE {} {} {}").format(
            sql.SQL(verb), _targets(routines), sql.SQL(prep), role_ident(who)
        ),
        f"{verb.lower()} EXECUTE on {len(routines)} TimescaleDB routine(s) {prep.lower()} "
        f"{who} ({why}: {_names(routines)})",
        "security",
        action="add" if verb == "GRANT" else "revoke",
        object=ROUTINES_OBJECT,
    )


def _runtime_step(owners: list[str], why: str) -> Step:
    """The rule run on the server when the step runs (after the objects this plan creates)."""
    grant = ""
    if owners:
        who = ", ".join(sql.Identifier(o).as_string(None) for o in owners)
        grant = (
            " IF rt.keep IS NULL AND (rt.job IS NOT NULL OR (NOT rt.internal"
            " AND rt.name = 'add_job')) THEN"
            " EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %I.%I(%s) TO "
            + who.replace("%", "%%").replace("'", "''")
            + "', rt.schema, rt.name, rt.args); END IF;"
        )
    body = (
        "DECLARE rt record; BEGIN"
        " FOR rt IN SELECT * FROM (" + derive_sql() + ") " + ROW_COLUMNS + " LOOP"
        " IF rt.keep IS NULL AND rt.public THEN"
        " EXECUTE pg_catalog.format("
        "'REVOKE EXECUTE ON ROUTINE %I.%I(%s) FROM PUBLIC', rt.schema, rt.name, rt.args);"
        " ELSIF rt.keep IS NOT NULL AND NOT rt.public THEN"
        " EXECUTE pg_catalog.format("
        "'GRANT EXECUTE ON ROUTINE %I.%I(%s) TO PUBLIC', rt.schema, rt.name, rt.args);"
        " END IF;" + grant + " END LOOP; END"
    )
    return Step(
        sql.SQL("DO {}").format(sql.Literal(body)),
        "EXECUTE on TimescaleDB's routines by the rule, derived on the server after "
        + why
        + " (PUBLIC keeps what normal use calls, owners their jobs' entry points)",
        "security",
        action="change",
        object=ROUTINES_OBJECT,
    )


def routine_runtime_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    tsc: TimescaleCatalog | None,
    timescaledb: bool,
) -> list[Step]:
    """The rule once more on the server, after the TimescaleDB phase, when this plan creates
    what changes it: the extension (its routines do not exist at plan time) or a continuous
    aggregate (its views use routines such as ``cagg_watermark``)."""
    extension_now = cat is not None and cat.timescaledb
    if (not timescaledb and not extension_now) or (cat is not None and not cat.superuser):
        return []
    if policy.public == "keep":
        return []  # PUBLIC's privileges are left as they are (routine_steps warns)
    if not extension_now:
        return [_runtime_step(routine_owners(policy, cat), "the extension is created")]
    live = tsc.aggregates if tsc else {}
    new = [a.name for a in policy.aggregates if a.name not in live]
    if new:
        return [_runtime_step(routine_owners(policy, cat), "creating " + ", ".join(new))]
    return []


def routine_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    routines: tuple[RoutineInfo, ...] | None,
    warnings: list[str],
) -> list[Step]:
    """Steps that bring EXECUTE on TimescaleDB's routines to the rule, as read in the catalog
    (None or empty: no extension yet; :func:`routine_runtime_steps` covers it). Only the
    routines' owner (the superuser who created the extension) or a superuser can change their
    privileges: others get a warning."""
    owners = routine_owners(policy, cat)
    if not routines:
        return []
    if policy.public == "keep":
        open_ = [r for r in routines if r.keep is None and r.public]
        if open_:
            warnings.append(
                f'public = "keep": {len(open_)} TimescaleDB routine(s) stay executable by PUBLIC '
                f"although they change data, chunks or jobs unchecked or only TimescaleDB's "
                f"internals call them ({_names(open_)}): any login user can drop any chunk, "
                'the audit trail\'s included; set [database] public = "revoke" and apply'
            )
        return []
    if cat is not None and not cat.superuser:
        mine = tuple(r for r in routines if r.owner == cat.current_user)
        open_ = [r for r in routines if r.keep is None and r.public and r not in mine]
        if open_:
            warnings.append(
                f"not a superuser: {len(open_)} TimescaleDB routine(s) that change data, chunks "
                f"or jobs unchecked ({_names(open_)}) stay executable by PUBLIC (their owner is "
                f"{open_[0].owner}); run tsaccess apply once as a superuser"
            )
        routines = mine
    steps: list[Step] = []
    revoke = [r for r in routines if r.keep is None and r.public]
    if revoke:
        steps.append(
            _step(
                "REVOKE",
                revoke,
                "PUBLIC",
                "they change data, chunks or jobs unchecked, "
                "or only TimescaleDB's internals call them",
            )
        )
    back = [r for r in routines if r.keep is not None and not r.public]
    if back:
        steps.append(_step("GRANT", back, "PUBLIC", "normal use calls them"))
    policy_roles = {r.name for r in policy.roles} | {u.name for u in policy.users}
    for who in sorted(policy_roles):
        direct = [
            r
            for r in routines
            if r.keep is None and (who, "EXECUTE") in r.grants and who not in owners
        ]
        if direct:
            steps.append(_step("REVOKE", direct, who, "a policy role: PUBLIC's rule applies"))
    for who in owners:
        missing = [
            r
            for r in routines
            if _owner_needs(r) and r.keep is None and (who, "EXECUTE") not in r.grants
        ]
        if missing:
            steps.append(_step("GRANT", missing, who, "an owner's jobs"))
    return steps
