"""``tsaccess monitor``: one collection of a database with 1,000 tables and 50 roles.

Measured as the policy's monitoring user, against two baselines taken in the same run and
interleaved with it: the administrator's ``tsaccess plan`` of the same policy (the drift part is
that plan, read-only) and a ``SELECT 1`` round trip. Each part's share is reported, and the
first collection (which counts the whole audit trail once) apart from the steady state.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import tsaccess
from bench.common import create_db, report
from tsaccess.ephemeral import ServerInfo
from tsaccess.monitor import Monitor, MonitorOptions
from tsaccess.passwords import Secret
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import parse_policy

TABLES, ROLES, AUDITED, USERS = 1000, 50, 10, 20


def monitored_policy(db: str, timescaledb: bool) -> dict[str, Any]:
    tables: dict[str, Any] = {
        f"t{i}": {"audit": "off", "columns": {"id": "bigint", "v": "text"}} for i in range(TABLES)
    }
    for i in range(AUDITED):  # audited hypertables (u0 writes t0: r0 may INSERT)
        tables[f"t{i}"] = {
            "audit": "statement",
            "hypertable": timescaledb,
            "time_column": "time",
            "columns": {"time": "timestamptz not null", "id": "bigint", "v": "text"},
        }
    roles: dict[str, Any] = {
        f"r{j}": {
            "grants": {
                f"t{i}": ["SELECT"] if (i + j) % 3 else ["SELECT", "INSERT"]
                for i in range(j, TABLES, ROLES)
            }
        }
        for j in range(ROLES)
    }
    roles["mon"] = {"monitoring": True, "grants": {"activity_audit": ["SELECT"]}}
    users: dict[str, Any] = {f"u{k}": {"roles": [f"r{k % ROLES}"]} for k in range(USERS)}
    users["watcher"] = {"roles": ["mon"]}
    return {
        "database": {"name": db, "timescaledb": "prefer" if timescaledb else "off"},
        "tables": tables,
        "roles": roles,
        "users": users,
    }


def bench_monitor(info: ServerInfo, quick: bool) -> None:
    print(f"\n[monitor: one collection, {TABLES} tables x {ROLES} roles, as the monitoring user]")
    name = "bench_monitor"
    db = create_db(info, name)
    policy = parse_policy(monitored_policy(name, info.timescaledb))
    passwords = {u.name: Secret(f"bench-{u.name}-password") for u in policy.users}
    with tsaccess.connect(**db.params()) as admin:
        t0 = time.perf_counter()
        apply(admin, policy, passwords=passwords)
        print(f"  (applied in {time.perf_counter() - t0:.1f} s)")
    with tsaccess.connect(**db.params(user="u0", password="bench-u0-password")) as writer:
        for k in range(200 if quick else 2000):  # audit rows: one per statement
            writer.execute(
                "INSERT INTO t0 (time, id, v) VALUES (now() - %s * interval '1 hour', %s, 'x')",
                (k, k),
            )
            writer.commit()

    def watcher() -> Any:
        return tsaccess.connect(**db.params(user="watcher", password="bench-watcher-password"))

    rounds = 5 if quick else 15
    with (
        Monitor(watcher, policy, MonitorOptions(chain_every=10**9)) as monitor,
        tsaccess.connect(**db.params()) as admin,
    ):
        t0 = time.perf_counter()
        first = monitor.collect()
        t_first = time.perf_counter() - t0
        assert first.up and all(first.parts.values()), first.parts
        assert first.drift_steps == 0, first.drift
        ping = watcher()
        ping.autocommit = True
        collect_s, plan_s, ping_s = [], [], []
        parts: dict[str, list[float]] = {}
        for _ in range(rounds):  # interleaved: the same load on the machine for each
            t0 = time.perf_counter()
            r = monitor.collect()
            collect_s.append(time.perf_counter() - t0)
            for part, s in r.part_seconds.items():
                parts.setdefault(part, []).append(s)
            t0 = time.perf_counter()
            plan(admin, policy, passwords=passwords)
            admin.rollback()
            plan_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ping.execute("SELECT 1")
            ping_s.append(time.perf_counter() - t0)
        ping.close()
    c, p, q = (statistics.median(x) for x in (collect_s, plan_s, ping_s))
    report("monitor: first collection (counts the whole audit trail)", t_first * 1000, "ms")
    report(
        f"monitor: one collection, {TABLES} tables x {ROLES} roles",
        c * 1000,
        "ms",
        f"median of {rounds}; fastest {min(collect_s) * 1000:.0f} ms",
    )
    report("monitor: the administrator's plan of the same policy", p * 1000, "ms")
    report("monitor: collection / plan", c / p, "x", "interleaved, same run")
    report("monitor: collection / SELECT 1 round trip", c / q, "x", f"round trip {q * 1e6:.0f} us")
    for part, times in sorted(parts.items()):
        report(f"monitor: part {part}", statistics.median(times) * 1000, "ms")
