"""One collection: everything the exporter knows, read read-only from the database.

:class:`Monitor` keeps one connection (opened again after a failure) and what the counters need
between collections; :meth:`Monitor.collect` returns a :class:`Reading`, plain data that
:meth:`Reading.samples` turns into metric samples (``tsaccess.monitor.exporter`` serves them).

Every query runs in its own autocommit statement in a ``default_transaction_read_only`` session
with a short ``lock_timeout``: no snapshot is held between them, no lock but the catalogs' and
the audit table's ``AccessShareLock`` (which only ``ACCESS EXCLUSIVE`` waits for), no advisory
lock — a collection never blocks a writer and never waits behind an ``apply``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tsaccess._log import get_logger
from tsaccess.audit.templates import display_name
from tsaccess.monitor.chunks import ChunkWatch, TableWrites
from tsaccess.monitor.metrics import MetricSpec, spec
from tsaccess.monitor.security import PRIVILEGED_ATTRIBUTES, privileged_roles, sessions
from tsaccess.monitor.serverlog import UNKNOWN_USER, ServerLog
from tsaccess.monitor.trail import AuditCounts, ChainState, TrailCounter, chain_state
from tsaccess.plan.drift import drift
from tsaccess.policy import Policy
from tsaccess.steps import Phase

__all__ = ["PARTS", "Monitor", "MonitorOptions", "Reading", "Sample"]

log = get_logger("tsaccess.monitor")

PARTS = ("drift", "roles", "sessions", "audit", "chunks", "chain", "server_log")
_PHASES: tuple[Phase, ...] = ("schema", "security", "audit")
_ACTIONS = ("add", "change", "revoke")
_AUDITED_OPS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")

Sample = tuple[MetricSpec, tuple[str, ...], float]
"""A metric, its label values (in the metric's label order) and the value."""


@dataclass(frozen=True)
class MonitorOptions:
    """How :class:`Monitor` reads (``tsaccess monitor``'s options)."""

    applier: str | None = None
    """The administrator who applies the policy (drift is planned as it would plan); default:
    the owner of the policy's tables."""
    expect_privileged: frozenset[str] = frozenset()
    """Roles allowed SUPERUSER, BYPASSRLS, CREATEROLE, REPLICATION (besides the bootstrap
    superuser): not counted in ``tsaccess_privileged_roles``."""
    server_log: str | None = None
    """The jsonlog: a file or directory path, or ``postgres`` (``pg_read_binary_file``)."""
    chain_every: int = 20
    """Check every sealed block's row count every this many collections (1: each time)."""
    state_file: Path | None = None
    """Where the chunk watch keeps what it saw (survives restarts)."""
    lock_timeout_ms: int = 1000
    statement_timeout_ms: int = 30000


@dataclass
class Reading:
    """What one collection found. A part that failed is None (and not ok in ``parts``)."""

    up: bool = False
    parts: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0
    part_seconds: dict[str, float] = field(default_factory=dict)
    """How long each part took (the benchmark's breakdown)."""
    at: float = 0.0
    drift: Counter[tuple[str, str]] | None = None
    unchecked: tuple[str, ...] = ()
    privileged: dict[str, tuple[str, ...]] | None = None
    sessions: Counter[tuple[str, str, str]] | None = None
    audit: AuditCounts | None = None
    writes: Counter[str] | None = None
    unrecorded_drops: Counter[str] | None = None
    chain: ChainState | None = None
    failed_logins: Counter[str] | None = None
    error: str = ""

    @property
    def drift_steps(self) -> int:
        return sum(self.drift.values()) if self.drift is not None else -1

    def samples(self) -> Iterator[Sample]:
        """Every sample of this reading (counters' values are totals)."""
        yield spec("tsaccess_up"), (), float(self.up)
        for part in PARTS:
            if part in self.parts:
                yield spec("tsaccess_collect_ok"), (part,), float(self.parts[part])
        yield spec("tsaccess_collect_duration_seconds"), (), self.seconds
        yield spec("tsaccess_collect_timestamp_seconds"), (), self.at
        if self.drift is not None:
            m = spec("tsaccess_policy_drift_steps")
            for phase in _PHASES:
                for action in _ACTIONS:
                    yield m, (phase, action), float(self.drift.get((phase, action), 0))
            for part in self.unchecked:
                yield spec("tsaccess_policy_drift_unchecked"), (part,), 1.0
        if self.privileged is not None:
            for attribute in PRIVILEGED_ATTRIBUTES:
                names = self.privileged.get(attribute, ())
                yield spec("tsaccess_privileged_roles"), (attribute,), float(len(names))
                for name in names:
                    yield spec("tsaccess_privileged_role"), (name, attribute), 1.0
        if self.sessions is not None:
            for key, n in sorted(self.sessions.items()):
                yield spec("tsaccess_sessions"), key, float(n)
        yield from self._trail()
        if self.failed_logins is not None:
            for user, n in sorted(self.failed_logins.items()):
                yield spec("tsaccess_failed_logins"), (user,), float(n)

    def _trail(self) -> Iterator[Sample]:
        if self.audit is not None:
            for key, n in sorted(self.audit.rows.items()):
                yield spec("tsaccess_audit_rows"), key, float(n)
            for user, n in sorted(self.audit.denied.items()):
                yield spec("tsaccess_denied"), (user,), float(n)
            for user, n in sorted(self.audit.unrecorded.items()):
                yield spec("tsaccess_denied_unrecorded_seconds"), (user,), float(n)
        if self.writes is not None:
            for table, n in sorted(self.writes.items()):
                yield spec("tsaccess_table_writes"), (table,), float(n)
        if self.audit is not None and self.unrecorded_drops is not None:
            by_retention = spec("tsaccess_hypertable_chunks_dropped_by_retention")
            outside = spec("tsaccess_hypertable_chunks_dropped_outside_retention")
            tables = {t for t, _ in self.audit.drops} | set(self.unrecorded_drops)
            for table in sorted(tables):
                yield by_retention, (table,), float(self.audit.drops[table, "retention"])
                yield outside, (table, "true"), float(self.audit.drops[table, "drop_table"])
                yield outside, (table, "false"), float(self.unrecorded_drops[table])
        if self.chain is not None:
            yield spec("tsaccess_audit_chain_ok"), (), float(self.chain.ok)
            yield spec("tsaccess_audit_chain_blocks"), (), float(self.chain.blocks)
            if self.chain.last_seal is not None:
                yield spec("tsaccess_audit_last_seal_timestamp_seconds"), (), self.chain.last_seal
            yield spec("tsaccess_audit_unsealed_seconds"), (), self.chain.unsealed_seconds


class Monitor:
    """Collects :class:`Reading` objects for one policy through ``connect`` (a function that
    opens a connection as the monitoring user; called again after a failure)."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        policy: Policy,
        options: MonitorOptions | None = None,
    ) -> None:
        self._connect = connect
        self.policy = policy
        self.options = options or MonitorOptions()
        self._conn: psycopg.Connection[Any] | None = None
        self._trail = TrailCounter(policy)
        self._chunks = ChunkWatch(policy, self.options.state_file)
        self._writes = TableWrites(policy)
        self._log = ServerLog(self.options.server_log) if self.options.server_log else None
        self._count = 0
        self.last: Reading | None = None
        """The latest reading (what the exporter serves; None before the first)."""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = self._connect()
            conn.autocommit = True
            conn.execute(
                "SELECT pg_catalog.set_config('default_transaction_read_only', 'on', false),"
                " pg_catalog.set_config('lock_timeout', %s, false),"
                " pg_catalog.set_config('statement_timeout', %s, false)",
                (f"{self.options.lock_timeout_ms}ms", f"{self.options.statement_timeout_ms}ms"),
            )
            self._conn = conn
        return self._conn

    def collect(self) -> Reading:
        """Read everything once; a failing part is logged and left out, the others go on."""
        t0 = time.perf_counter()
        r = Reading()
        try:
            conn = self._connection()
            row = conn.execute(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'timescaledb')"
            ).fetchone()
            timescaledb = bool(row and row[0])
            r.up = True
        except (psycopg.Error, OSError) as exc:
            self.close()
            r.error = " ".join(str(exc).split()) or exc.__class__.__name__
            log.warning("monitor cannot reach the database", error=r.error)
            return self._done(r, t0)
        self._count += 1
        full = self.options.chain_every <= 1 or self._count % self.options.chain_every == 1
        steps: list[tuple[str, Callable[[], None]]] = [
            ("drift", lambda: self._drift(conn, r)),
            ("roles", lambda: self._roles(conn, r)),
            ("sessions", lambda: setattr(r, "sessions", sessions(conn))),
            ("audit", lambda: self._audit(conn, r, timescaledb)),
            ("chunks", lambda: self._chunk_watch(conn, r, timescaledb)),
            ("chain", lambda: setattr(r, "chain", chain_state(conn, self.policy, all_blocks=full))),
        ]
        if self._log is not None:
            steps.append(("server_log", lambda: self._server_log(conn, r)))
        for part, step in steps:
            t1 = time.perf_counter()
            try:
                step()
                r.parts[part] = True
            except psycopg.Error as exc:
                r.parts[part] = False
                log.warning("monitor part failed", part=part, error=" ".join(str(exc).split()))
                if conn.broken:
                    r.up = False
                    self.close()
                    break
            except OSError as exc:
                r.parts[part] = False
                log.warning("monitor part failed", part=part, error=str(exc))
            finally:
                r.part_seconds[part] = time.perf_counter() - t1
        return self._done(r, t0)

    def _done(self, r: Reading, t0: float) -> Reading:
        r.seconds = time.perf_counter() - t0
        r.at = time.time()
        self.last = r
        return r

    def _drift(self, conn: psycopg.Connection[Any], r: Reading) -> None:
        d = drift(conn, self.policy, applier=self.options.applier)
        r.drift = Counter(d.kinds())
        r.unchecked = d.unchecked

    def _roles(self, conn: psycopg.Connection[Any], r: Reading) -> None:
        p = self.policy
        named = {u.name for u in p.users} | {x.name for x in p.roles} | {p.audit.owner}
        r.privileged = privileged_roles(conn, self.options.expect_privileged, named)

    # Counters start at 0 for what the policy names: a series born at 5 hides its first
    # increase from Prometheus's increase() and rate().

    def _audit(self, conn: psycopg.Connection[Any], r: Reading, timescaledb: bool) -> None:
        p = self.policy
        if p.audited:
            r.audit = self._trail.read(conn)
            for t in p.tables:
                if t.audit != "off":
                    for op in _AUDITED_OPS:
                        r.audit.rows[display_name(p, t.name), op] += 0
            r.audit.rows["", "DENIED"] += 0
            for u in p.users:
                r.audit.denied[u.name] += 0
                r.audit.unrecorded[u.name] += 0
        r.writes = self._writes.read(conn, timescaledb)

    def _chunk_watch(self, conn: psycopg.Connection[Any], r: Reading, timescaledb: bool) -> None:
        r.unrecorded_drops = Counter(self._chunks.read(conn, timescaledb))
        if timescaledb:
            for t in self.policy.tables:
                if t.hypertable:
                    r.unrecorded_drops[t.name] += 0

    def _server_log(self, conn: psycopg.Connection[Any], r: Reading) -> None:
        assert self._log is not None
        roles = [str(x[0]) for x in conn.execute("SELECT rolname FROM pg_catalog.pg_roles")]
        r.failed_logins = self._log.read(conn, roles)
        for name in [UNKNOWN_USER, *(u.name for u in self.policy.users)]:
            r.failed_logins[name] += 0
