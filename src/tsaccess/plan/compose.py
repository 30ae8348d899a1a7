"""Plan, apply and render a policy.

* :func:`plan` reads the live catalog (a fixed number of set-based queries) and returns the exact
  SQL that brings the database to the policy, with a human summary. Privileges the policy does
  not list on objects it manages (its tables, the database, the schema, its roles) are revoked.
* :func:`apply` runs a plan in one transaction under an advisory lock, re-reads the catalog in
  the same transaction and rolls back unless the database now matches the policy.
* :func:`render_init` writes the same plan as ``init/01-schema.sql``, ``02-security.sql``,
  ``03-audit.sql`` and a ``docker-compose.yml`` for a ``docker-entrypoint-initdb.d`` setup
  (:mod:`tsaccess.plan.render_init`).

The steps themselves are assembled by :mod:`tsaccess.plan.build`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tsaccess._log import get_logger
from tsaccess.catalog import CatalogSnapshot, read_catalog
from tsaccess.catalog.timescale import read_timescale
from tsaccess.client.topology import ReplicaState, current_lsn, require_primary
from tsaccess.client.topology import wait_replicas as wait_replicas_
from tsaccess.errors import ApplyError, PolicyError
from tsaccess.passwords import Secret
from tsaccess.plan.build import build_steps, timescaledb_decision
from tsaccess.plan.canon import digest
from tsaccess.plan.cluster import ClusterChange, cluster_changes
from tsaccess.plan.format import counts, render
from tsaccess.plan.phases.prune import read_prune
from tsaccess.plan.render_init import render_init
from tsaccess.plan.secret_sql import CONCURRENT_ERRORS, run_secret
from tsaccess.policy import Policy
from tsaccess.steps import AUDIT_ONLY, Phase, Step

__all__ = ["ApplyResult", "Plan", "Step", "apply", "install_audit", "plan", "render_init"]

log = get_logger("tsaccess.plan.compose")

_LOCK_KEY = 0x7473616363657373  # "tsaccess"


@dataclass(frozen=True)
class Plan:
    """What :func:`apply` would run. Empty (falsy) when the database matches the policy."""

    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()
    timescaledb: bool = False
    catalog_queries: int = 0
    fingerprint: str = ""
    """Digest of the catalog the plan was made from: another value means the database moved."""
    logins: frozenset[str] = frozenset()
    """Login roles (policy users and live ones), to name membership changes ``user ...``."""
    tables: tuple[str, ...] = ()
    """The policy's tables (audit internals fold into one line per table)."""
    generated: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    """Passwords generated for users that need one (``generate_passwords``); never shown."""
    cluster_changes: tuple[ClusterChange, ...] = ()
    """Steps that change a role another tsaccess-managed database relies on (roles are the
    cluster's): :func:`apply` refuses them unless ``allow_cluster_changes=True``."""

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def sql(self, *, redact: bool = True) -> str:
        """The statements as a SQL script (password verifiers redacted unless asked)."""
        return "".join(f"{s.text(redact=redact)};\n" for s in self.steps)

    def summary(self, *, verbose: bool = False) -> str:
        """The plan grouped by object with ``+``/``-``/``~`` markers and a ``Plan:`` line;
        audit internals folded unless ``verbose``."""
        return render(
            self.steps, self.warnings, verbose=verbose, logins=self.logins, tables=self.tables
        )

    def counts(self, *, verbose: bool = False) -> dict[str, int]:
        """``{"add": n, "change": n, "revoke": n}`` as the summary shows them."""
        c = counts(self.steps, verbose=verbose, logins=self.logins, tables=self.tables)
        return {str(k): v for k, v in c.items()}

    def __str__(self) -> str:
        return self.summary()


def plan(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    passwords: Mapping[str, Secret] | None = None,
    require_passwords: bool = False,
    phases: Collection[Phase] | None = None,
    drop_removed: bool = False,
    drop_removed_tables: bool = False,
    generate_passwords: bool = False,
) -> Plan:
    """The statements that bring the connected database to ``policy``.

    Args:
        conn: an admin connection (superuser, or owner of the objects with CREATEROLE) to the
            policy's database.
        passwords: login passwords (see :mod:`tsaccess.passwords`); needed for users that do
            not exist yet (a warning here, an error with ``require_passwords``, as in
            :func:`apply`); a password that differs from the stored one is planned as a change
            when the stored verifier is readable (superuser).
        phases: only these phases (``schema``, ``security``, ``audit``); without ``schema``
            and ``security`` the tables, columns and group roles they would create must exist
            already (see :func:`install_audit`).
        drop_removed: drop the users and roles tsaccess managed that the policy no longer
            names (when they own nothing); by default they are disabled (NOLOGIN) and lose
            their memberships and privileges (see :mod:`tsaccess.plan.phases.prune`).
        drop_removed_tables: drop the tables tsaccess managed that the policy no longer names,
            with their data; by default they are kept and only lose their grants.
        generate_passwords: generate a password for each user that needs one and has none in
            ``passwords`` (a new user, or an existing login user without a password); they are
            in ``Plan.generated``. Existing passwords are never replaced by generated ones.

    Raises:
        PolicyError: connected to another database than the policy's, the live objects
            cannot be reconciled without data changes, or (with ``phases``) an object an
            omitted phase would create is missing, or the policy names the connected
            administrator itself.
        StandbyError: ``conn`` is on a hot standby (connect to the primary).
    """
    require_primary(conn, "plan")
    current = conn.execute(
        "SELECT pg_catalog.current_database(), session_user, current_user"
    ).fetchone()
    if current is None or current[0] != policy.database:
        raise PolicyError(
            f"connected to database {current[0] if current else '?'!r} but the policy is for "
            f"{policy.database!r}; connect to that database (create it first with "
            f"CREATE DATABASE) or change database.name",
            path="database.name",
            source=policy.source,
        )
    _refuse_admin(policy, {str(current[1]), str(current[2])})
    cat = read_catalog(conn, policy.schema, policy.audit.data_schema)
    tsc = read_timescale(conn, policy.schema, timescaledb=cat.timescaledb)
    ts, warnings = timescaledb_decision(policy, cat)
    if phases is not None:
        if "schema" not in phases:
            ts = ts and cat.timescaledb  # the extension is not created by the omitted phase
            _require_schema(policy, cat)
        if "security" not in phases:
            require_passwords = False
            _require_roles(policy, cat)
    pinfo = read_prune(conn, policy, cat)
    generated: dict[str, Secret] | None = {} if generate_passwords else None
    steps, more = build_steps(
        policy,
        cat,
        passwords or {},
        timescaledb=ts,
        require_passwords=require_passwords,
        prune=pinfo,
        drop_roles=drop_removed,
        drop_tables=drop_removed_tables,
        tsc=tsc,
        generated=generated,
    )
    if phases is not None:
        steps = [s for s in steps if s.phase in phases]
        if not {"schema", "security"} & set(phases):
            more = []  # about tables and users, which this plan leaves alone
    if phases is not None and "security" not in phases:
        generated = None  # no step of this plan sets a password
    shared = cluster_changes(steps, cat, policy.database)
    more += [
        f"cluster-wide: {c} (apply refuses this unless allowed: --allow-cluster-changes,"
        " allow_cluster_changes=True)"
        for c in shared
    ]
    return Plan(
        tuple(steps),
        tuple(warnings + more),
        ts,
        cat.queries + tsc.queries + 1,
        fingerprint=digest(cat, dataclasses.replace(pinfo, rows={}), skip=frozenset({"queries"})),
        logins=frozenset(
            {u.name for u in policy.users} | {n for n, r in cat.roles.items() if r.login}
        ),
        tables=tuple(t.name for t in policy.tables),
        generated=generated or {},
        cluster_changes=shared,
    )


def _refuse_admin(policy: Policy, admins: set[str]) -> None:
    """The connected administrator cannot be one of the policy's roles: apply would take its
    own privileges away half-way (NOSUPERUSER, NOLOGIN, revoked memberships)."""
    named = [(f"users.{u.name}", u.name) for u in policy.users]
    named += [(f"roles.{r.name}", r.name) for r in policy.roles]
    named.append(("audit.owner", policy.audit.owner))
    for path, name in named:
        if name in admins:
            raise PolicyError(
                f"{name!r} is the administrator this plan is made with; a policy cannot manage "
                "the role that applies it. Connect as another administrator (e.g. postgres) or "
                "rename the policy's role",
                path=path,
                source=policy.source,
            )


def _require_schema(policy: Policy, cat: CatalogSnapshot) -> None:
    """Without the schema phase: the tables (with the audited columns) must exist."""
    for t in policy.tables:
        info = cat.tables.get(t.name)
        if info is None:
            raise PolicyError(
                f"table {policy.schema}.{t.name} does not exist; create it first (tsaccess "
                "apply, or your own migration) or remove it from the policy",
                path=f"tables.{t.name}",
                source=policy.source,
            )
        live = {c.name for c in info.columns}
        needed = t.audited_data_columns if t.audit == "row" else ()
        missing = [c for c in needed if c not in live]
        if missing:
            raise PolicyError(
                f"table {policy.schema}.{t.name} has no column {missing[0]!r}, which per-row "
                "audit records; add the column or leave it out with audit_exclude",
                path=f"tables.{t.name}.columns",
                source=policy.source,
            )


def _require_roles(policy: Policy, cat: CatalogSnapshot) -> None:
    """Without the security phase: the group roles (granted audit privileges) must exist."""
    for r in policy.roles:
        if r.name not in cat.roles:
            raise PolicyError(
                f"group role {r.name!r} does not exist; create it first (tsaccess apply) or "
                "remove it from the policy",
                path=f"roles.{r.name}",
                source=policy.source,
            )


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply` did."""

    plan: Plan
    """The plan that was run."""
    seconds: float
    """Wall time of the whole transaction."""
    applied: int = field(default=0)
    """Statements run."""
    commit_lsn: str | None = None
    """With ``wait_replicas``: the primary's WAL position right after the commit."""
    replicas: tuple[ReplicaState, ...] = ()
    """With ``wait_replicas``: the standbys that replayed the commit (before returning)."""
    replica_seconds: float = 0.0
    """With ``wait_replicas``: how long the wait for the standbys took."""


def apply(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    passwords: Mapping[str, Secret] | None = None,
    on_step: Callable[[int, Step], None] | None = None,
    phases: Collection[Phase] | None = None,
    wait_replicas: float | None = None,
    drop_removed: bool = False,
    drop_removed_tables: bool = False,
    check: Callable[[Plan], None] | None = None,
    generate_passwords: bool = False,
    before_commit: Callable[[Plan], None] | None = None,
    allow_cluster_changes: bool = False,
) -> ApplyResult:
    """Plan and apply ``policy`` (or only some ``phases`` of it, see :func:`plan`) in one
    transaction; all or nothing.

    The plan is made under a transaction-level advisory lock (concurrent applies queue), run,
    and the catalog is read again in the same transaction: if anything still differs the
    transaction is rolled back and :class:`ApplyError` raised. A step that meets a transient
    conflict (a TimescaleDB job updating the same catalog row: ``tuple concurrently updated``;
    a deadlock; a serialization failure) rolls the attempt back, and the whole transaction runs
    again from a new plan, up to three times (``on_step``, ``check`` and ``before_commit`` are
    called again for the new attempt).

    Args:
        on_step: called before each step with its index (progress display, fault injection).
        wait_replicas: after the commit, wait up to this many seconds until every standby in
            the primary's ``pg_stat_replication`` has replayed it (so each enforces the
            policy); None does not wait.
        drop_removed, drop_removed_tables: see :func:`plan`.
        check: called with the plan made under the lock, before anything runs; raise (an
            :class:`ApplyError`) to refuse it, e.g. because it is not the plan that was shown
            or saved (see :mod:`tsaccess.plan.saved`).
        generate_passwords: see :func:`plan`; the generated passwords are in
            ``result.plan.generated``.
        before_commit: called with the plan after every step ran and the database was checked,
            before the commit; an exception rolls everything back. Write generated passwords
            down here, so a failure after the commit cannot lose them.
        allow_cluster_changes: run a plan that changes roles (attributes, memberships,
            passwords, dropping them) the policies of other databases of the cluster also
            manage (``Plan.cluster_changes``); refused by default.

    Returns:
        the plan that was applied and how long it took.

    Raises:
        StandbyError: ``conn`` is on a hot standby.
        ReplicaLagError: (after the commit) a standby had not replayed it in time; named.
        ApplyError: the plan changes roles other databases' policies manage (see
            ``allow_cluster_changes``), or a step failed (rolled back).
    """
    t0 = time.perf_counter()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ApplyError("apply() needs an idle connection (commit or roll back first)")
    require_primary(conn, "apply")
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            the_plan = _apply_once(
                conn,
                policy,
                passwords,
                on_step,
                phases,
                drop_removed,
                drop_removed_tables,
                check,
                generate_passwords,
                before_commit,
                allow_cluster_changes,
            )
            break
        except _Transient as exc:
            if attempt == _ATTEMPTS:
                raise ApplyError(
                    f"{exc}; tried {_ATTEMPTS} times (a TimescaleDB job or another session "
                    "kept changing the same catalog rows); the transaction was rolled back, "
                    "nothing changed. Run it again, or pause the jobs (alter_job(..., "
                    "scheduled => false)) while applying"
                ) from exc.__cause__
            log.info("apply retried", attempt=attempt, reason=str(exc))
            time.sleep(0.2 * attempt)
    seconds = time.perf_counter() - t0
    log.info(
        "policy applied", database=policy.database, steps=len(the_plan), seconds=round(seconds, 3)
    )
    if wait_replicas is None:
        return ApplyResult(the_plan, seconds, len(the_plan))
    t1 = time.perf_counter()
    lsn = current_lsn(conn)
    states = wait_replicas_(conn, lsn, timeout=wait_replicas)
    waited = time.perf_counter() - t1
    log.info("standbys replayed", lsn=lsn, standbys=len(states), seconds=round(waited, 3))
    return ApplyResult(the_plan, seconds, len(the_plan), lsn, states, waited)


_ATTEMPTS = 3
"""How often :func:`apply` runs its transaction when a step meets a transient conflict."""


class _Transient(Exception):
    """A step met a conflict that running the whole transaction again resolves (a background
    job updated the same catalog row, a deadlock, a serialization failure)."""


def _is_transient(exc: psycopg.Error) -> bool:
    if isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
        return True
    # GRANT/REVOKE update pg_class rows without a lock: compress_chunk (a job) truncating the
    # same chunk makes the server say this, and the next attempt succeeds
    return exc.diag.message_primary == "tuple concurrently updated"


def _apply_once(
    conn: psycopg.Connection[Any],
    policy: Policy,
    passwords: Mapping[str, Secret] | None,
    on_step: Callable[[int, Step], None] | None,
    phases: Collection[Phase] | None,
    drop_removed: bool,
    drop_removed_tables: bool,
    check: Callable[[Plan], None] | None,
    generate_passwords: bool,
    before_commit: Callable[[Plan], None] | None,
    allow_cluster_changes: bool,
) -> Plan:
    """One attempt of :func:`apply`: plan under the lock, run, re-check, commit."""
    try:
        with conn.transaction():
            conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            the_plan = plan(
                conn,
                policy,
                passwords=passwords,
                require_passwords=True,
                phases=phases,
                drop_removed=drop_removed,
                drop_removed_tables=drop_removed_tables,
                generate_passwords=generate_passwords,
            )
            if check is not None:
                check(the_plan)
            if the_plan.cluster_changes and not allow_cluster_changes:
                raise ApplyError(
                    "this plan changes roles other tsaccess-managed databases of the cluster "
                    "rely on (roles are cluster-wide); nothing was applied: "
                    + "; ".join(str(c) for c in the_plan.cluster_changes[:5])
                    + ". Give this policy its own role names, or apply with "
                    "allow_cluster_changes=True (tsaccess apply --allow-cluster-changes) if "
                    "the other databases' policies should change too"
                )
            passwords = {**(passwords or {}), **the_plan.generated}
            for i, step in enumerate(the_plan.steps):
                try:
                    if on_step is not None:
                        on_step(i, step)
                    if step.secret:
                        run_secret(conn, step.statement)
                    else:
                        conn.execute(step.statement)
                except psycopg.Error as exc:
                    if conn.broken:
                        raise ApplyError(
                            f"connection lost at step {i + 1}/{len(the_plan)} ({step.summary}); "
                            "the server rolls the transaction back: nothing changed. Run it "
                            "again."
                        ) from exc
                    if _is_transient(exc):
                        raise _Transient(
                            f"step {i + 1}/{len(the_plan)} ({step.summary}) failed: "
                            f"{exc.diag.message_primary}"
                        ) from exc
                    if isinstance(exc, CONCURRENT_ERRORS):
                        raise ApplyError(
                            f"step {i + 1}/{len(the_plan)} ({step.summary}) failed: "
                            f"{exc.diag.message_primary}: another apply (or administrator) "
                            "changed the same objects at the same time; the transaction was "
                            "rolled back, nothing changed. Run it again when the other one "
                            "has finished."
                        ) from exc
                    raise ApplyError(
                        f"step {i + 1}/{len(the_plan)} ({step.summary}) failed: "
                        f"{exc.diag.message_primary or exc.__class__.__name__}; the transaction "
                        "was rolled back, nothing changed"
                    ) from exc
            after = plan(
                conn,
                policy,
                passwords=passwords,
                phases=phases,
                drop_removed=drop_removed,
                drop_removed_tables=drop_removed_tables,
            )
            if after:
                raise ApplyError(
                    "after applying, the database still differs from the policy (rolled back, "
                    f"nothing changed): {'; '.join(s.summary for s in after.steps[:5])}"
                )
            if before_commit is not None:
                before_commit(the_plan)
    except psycopg.OperationalError as exc:
        raise ApplyError(
            f"connection lost during apply ({exc.__class__.__name__}); the "
            "server rolls the transaction back: nothing changed. Run it again."
        ) from exc
    return the_plan


def install_audit(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    on_step: Callable[[int, Step], None] | None = None,
) -> ApplyResult:
    """Install, or bring up to date, only the audit trail of ``policy``, in one transaction.

    The audit phase of :func:`apply`: the audit owner role, the audit table, the per-row data
    schema, the definer functions, the triggers on every audited table, the
    ``<audit table>_rows`` view and the audit grants. The tables and group roles must exist
    already (created by ``tsaccess apply`` or by your own migrations); a missing one raises
    :class:`~tsaccess.PolicyError` naming it, before anything runs. Preview with
    ``plan(conn, policy, phases=("audit",))``.

    Returns:
        what was applied (:class:`ApplyResult`).
    """
    return apply(conn, policy, on_step=on_step, phases=AUDIT_ONLY)
