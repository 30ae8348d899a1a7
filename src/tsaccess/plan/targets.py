"""One policy, many databases: plan, apply and verify on each target, reported per target.

A target is a connection string for an admin login to one database (a server, or another
database on the same server). Each target is planned / applied in its own connection and its
own transaction: a failure on one target rolls back that target only and does not stop the
others; the report says what happened where. The policy's database name is replaced by the
target's ``dbname`` when the target names one (group roles and users are per server: on one
server the second target finds them already created).

A targets file is TOML::

    [[targets]]
    name = "eu"                      # optional: default host:port/dbname
    dsn = "host=db-eu dbname=metrics sslmode=verify-full sslrootcert=ca.crt"

Keep passwords out of it (``passfile``, ``PGPASSFILE`` or a service file).
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tsaccess._log import get_logger
from tsaccess.client.connection import connect
from tsaccess.client.params import without_login
from tsaccess.errors import TargetsError, TsaccessError
from tsaccess.passwords import Secret
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import Policy
from tsaccess.steps import Phase
from tsaccess.verify import AccessMatrix, verify

__all__ = [
    "Target",
    "TargetResult",
    "TargetsReport",
    "apply_targets",
    "load_targets",
    "plan_targets",
    "targets_from_dsns",
    "verify_targets",
]

log = get_logger("tsaccess.plan.targets")


@dataclass(frozen=True)
class Target:
    """One database to bring to the policy. ``dsn`` may hold a password: not in the repr."""

    name: str
    dsn: str = field(repr=False)

    def params(self) -> dict[str, Any]:
        try:
            return conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError:
            raise TargetsError(
                f"target {self.name!r}: the connection string could not be parsed (not "
                "shown: it may contain a password)"
            ) from None

    def database(self, policy: Policy) -> str:
        return str(self.params().get("dbname") or policy.database)


def _default_name(dsn: str) -> str:
    try:
        p = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise TargetsError(
            "a target's connection string could not be parsed (not shown: it may contain a "
            "password); check its 'key=value' pairs or the postgresql:// URI syntax"
        ) from None
    host = p.get("host") or p.get("hostaddr") or "(default host)"
    port = f":{p['port']}" if p.get("port") else ""
    return f"{host}{port}/{p.get('dbname') or '(policy database)'}"


def _checked(targets: list[Target], source: str) -> tuple[Target, ...]:
    if not targets:
        raise TargetsError(f"{source}: no targets; give at least one [[targets]] with a dsn")
    seen: set[str] = set()
    for t in targets:
        t.params()  # parseable
        if t.name in seen:
            raise TargetsError(
                f"{source}: target name {t.name!r} appears twice; give each target a unique "
                "name (name = ...)"
            )
        seen.add(t.name)
    return tuple(targets)


def targets_from_dsns(dsns: Sequence[str]) -> tuple[Target, ...]:
    """Targets named after their host, port and database."""
    return _checked([Target(_default_name(d), d) for d in dsns], "--dsn")


def load_targets(path: str | Path) -> tuple[Target, ...]:
    """Read a TOML targets file (see the module documentation).

    Raises:
        TargetsError: unreadable, not TOML, or a target without a ``dsn``.
    """
    src = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TargetsError(f"cannot read targets file {src}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetsError(f"targets file {src} is not valid TOML: {exc}") from None
    entries = data.get("targets")
    if not isinstance(entries, list):
        raise TargetsError(
            f'{src}: expected [[targets]] tables, each with dsn = "..." (and optional name)'
        )
    out: list[Target] = []
    for i, entry in enumerate(entries):
        dsn = entry.get("dsn") if isinstance(entry, dict) else None
        if not isinstance(dsn, str) or not dsn.strip():
            raise TargetsError(f'{src}: targets[{i}] has no dsn = "..." (a connection string)')
        name = entry.get("name") or _default_name(dsn)
        unknown = set(entry) - {"name", "dsn"}
        if unknown:
            raise TargetsError(
                f"{src}: targets[{i}] has unknown key(s) {', '.join(sorted(unknown))}; "
                "only name and dsn are read"
            )
        out.append(Target(str(name), dsn))
    return _checked(out, src)


@dataclass(frozen=True)
class TargetResult:
    """What happened on one target."""

    target: str
    database: str
    ok: bool
    steps: tuple[str, ...] = ()
    """Summaries of the planned (plan) or applied (apply) statements."""
    seconds: float = 0.0
    error: str | None = None
    """Why this target failed (nothing was changed there)."""
    standbys: int | None = None
    """With ``wait_replicas``: how many standbys replayed the commit."""
    matrix: AccessMatrix | None = None
    """verify: the access matrix."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "database": self.database,
            "ok": self.ok,
            "steps": list(self.steps),
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "standbys": self.standbys,
            "matrix": self.matrix.as_dict() if self.matrix is not None else None,
        }


@dataclass(frozen=True)
class TargetsReport:
    """One result per target, in order."""

    action: str
    results: tuple[TargetResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> tuple[TargetResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    def to_text(self) -> str:
        lines = []
        for r in self.results:
            head = f"[{r.target}] database {r.database}: "
            if r.error is not None:
                lines.append(head + f"FAILED: {r.error}")
            elif r.matrix is not None:
                bad = len(r.matrix.disagreements)
                lines.append(
                    head
                    + (
                        f"{len(r.matrix.cells)} checks, {bad} disagreement(s)"
                        + (f", {len(r.matrix.untried)} not tried" if r.matrix.untried else "")
                        + (" (read side only: hot standby)" if r.matrix.read_only else "")
                    )
                )
            else:
                verb = "applied" if self.action == "apply" else "planned"
                lines.append(head + f"{len(r.steps)} statement(s) {verb}")
                lines += [f"  - {s}" for s in r.steps]
                if r.standbys is not None:
                    lines.append(f"  replayed on {r.standbys} standby(s)")
        n_bad = len(self.failed)
        lines.append(
            f"{self.action}: {len(self.results)} target(s), "
            + (f"{n_bad} failed" if n_bad else "all ok")
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "ok": self.ok,
            "targets": [r.as_dict() for r in self.results],
        }


def _message(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error):
        text = " ".join(str(exc).split()) or exc.__class__.__name__
        return f"{exc.__class__.__name__}: {text}"[:500]
    return str(exc)[:500]


def _each(targets: Sequence[Target], policy: Policy, action: str, run: Any) -> TargetsReport:
    results: list[TargetResult] = []
    for t in targets:
        db = t.database(policy)
        t0 = time.perf_counter()
        try:
            result: TargetResult = run(t, policy.with_database(db), db)
        except (TsaccessError, psycopg.Error) as exc:
            result = TargetResult(
                t.name, db, False, seconds=time.perf_counter() - t0, error=_message(exc)
            )
        log.info(f"target {action}", target=t.name, database=db, ok=result.ok)
        results.append(result)
    return TargetsReport(action, tuple(results))


def plan_targets(
    targets: Sequence[Target],
    policy: Policy,
    *,
    passwords: Mapping[str, Secret] | None = None,
    phases: Collection[Phase] | None = None,
) -> TargetsReport:
    """:func:`tsaccess.plan.compose.plan` on each target."""

    def run(t: Target, pol: Policy, db: str) -> TargetResult:
        t0 = time.perf_counter()
        with connect(t.dsn, dbname=db) as conn:
            p = plan(conn, pol, passwords=passwords, phases=phases)
        steps = tuple(s.summary for s in p.steps)
        return TargetResult(t.name, db, True, steps, time.perf_counter() - t0)

    return _each(targets, policy, "plan", run)


def apply_targets(
    targets: Sequence[Target],
    policy: Policy,
    *,
    passwords: Mapping[str, Secret] | None = None,
    phases: Collection[Phase] | None = None,
    wait_replicas: float | None = None,
    allow_cluster_changes: bool = False,
) -> TargetsReport:
    """:func:`tsaccess.plan.compose.apply` on each target, each in its own transaction.

    A target that fails is rolled back (nothing changed there) and reported; the others are
    still applied. ``report.ok`` is True only when every target was applied.
    """

    def run(t: Target, pol: Policy, db: str) -> TargetResult:
        with connect(t.dsn, dbname=db) as conn:
            res = apply(
                conn,
                pol,
                passwords=passwords,
                phases=phases,
                wait_replicas=wait_replicas,
                allow_cluster_changes=allow_cluster_changes,
            )
        return TargetResult(
            t.name,
            db,
            True,
            tuple(s.summary for s in res.plan.steps),
            res.seconds,
            standbys=len(res.replicas) if wait_replicas is not None else None,
        )

    return _each(targets, policy, "apply", run)


def verify_targets(
    targets: Sequence[Target], policy: Policy, passwords: Mapping[str, Secret]
) -> TargetsReport:
    """The access matrix of each target (users connect with the target's server settings)."""

    def run(t: Target, pol: Policy, db: str) -> TargetResult:
        t0 = time.perf_counter()
        with connect(t.dsn, dbname=db) as conn:
            matrix = verify(conn, pol, passwords, **without_login(t.params()))
        return TargetResult(t.name, db, matrix.ok, seconds=time.perf_counter() - t0, matrix=matrix)

    return _each(targets, policy, "verify", run)
