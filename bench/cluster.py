"""Costs of running beyond one server (``python -m bench.cluster [--json FILE]``).

On a throwaway primary + 2 standbys + PgBouncer (transaction mode), each figure against a
baseline measured in the same run:

* the replay wait after ``apply(..., wait_replicas=...)`` (a REVOKE / GRANT flip), with the
  standbys' ``wal_receiver_status_interval`` of the cluster (1 s);
* the pre-flight privilege snapshot taken on a standby vs on the primary;
* a transaction scoped with ``pooler="pgbouncer"`` (BEGIN + transaction-local role in one round
  trip) vs an unscoped transaction, both through PgBouncer and straight to the primary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from psycopg import sql

import tsaccess
from tsaccess.demo import company_policy
from tsaccess.ephemeral import ClusterInfo, EphemeralCluster
from tsaccess.passwords import resolve_passwords
from tsaccess.plan.compose import apply
from tsaccess.preflight import take_snapshot


def _median_ms(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def replay_wait(info: ClusterInfo, runs: int) -> dict[str, Any]:
    with tsaccess.connect(**info.primary.params(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench_cluster")
    policy = company_policy().with_database("bench_cluster")
    pw = resolve_passwords([u.name for u in policy.users], generate=True, environ={})
    analysts = dataclasses.replace(policy.roles[0], grants=())
    flipped = dataclasses.replace(policy, roles=(analysts, *policy.roles[1:]))
    waits, applies = [], []
    with tsaccess.connect(**info.primary.params(dbname="bench_cluster")) as conn:
        apply(conn, policy, passwords=pw, wait_replicas=30)
        for i in range(runs):
            res = apply(conn, flipped if i % 2 == 0 else policy, passwords=pw, wait_replicas=30)
            waits.append(res.replica_seconds * 1000)
            applies.append(res.seconds * 1000)
    return {
        "apply_ms_median": round(statistics.median(applies), 1),
        "replay_wait_ms_median": round(statistics.median(waits), 1),
        "replay_wait_ms_max": round(max(waits), 1),
        "runs": runs,
    }


def snapshots(info: ClusterInfo, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, node in (("primary", info.primary), ("standby1", info.standbys[0])):
        with tsaccess.connect(**node.params(dbname="bench_cluster")) as conn:
            out[f"snapshot_ms_{name}"] = round(_median_ms(partial(take_snapshot, conn), n), 3)
    return out


def scoping(info: ClusterInfo, n: int) -> dict[str, Any]:
    assert info.pgbouncer is not None
    with tsaccess.connect(**info.primary.params(), autocommit=True) as conn:
        conn.execute("CREATE ROLE bench_app LOGIN PASSWORD 'bench-app-password-0123'")
        conn.execute("CREATE ROLE bench_role NOLOGIN")
        conn.execute("GRANT bench_role TO bench_app")
    login = {"user": "bench_app", "password": "bench-app-password-0123"}
    out: dict[str, Any] = {}
    for where, node in (("pgbouncer", info.pgbouncer), ("direct", info.primary)):
        with (
            tsaccess.connect(**node.params(**login), pooler="pgbouncer", role="bench_role") as s,
            tsaccess.connect(**node.params(**login)) as plain,
        ):
            plain.prepare_threshold = None

            def txn(c: tsaccess.TsConnection) -> None:
                with c.transaction():
                    c.execute(sql.SQL("SELECT 1")).fetchone()

            for c in (s, plain):
                _median_ms(partial(txn, c), 50)  # warm up
            scoped = plain_ms = 0.0
            rounds = 5
            for _ in range(rounds):  # interleaved, to share the machine's noise
                scoped += _median_ms(lambda: txn(s), n) / rounds
                plain_ms += _median_ms(lambda: txn(plain), n) / rounds
            out[f"txn_ms_{where}_scoped"] = round(scoped, 3)
            out[f"txn_ms_{where}_unscoped"] = round(plain_ms, 3)
            out[f"txn_overhead_ms_{where}"] = round(scoped - plain_ms, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    with EphemeralCluster(standbys=2, pgbouncer=True, default_pool_size=1) as info:
        results = {
            **replay_wait(info, args.runs),
            **snapshots(info, 50),
            **scoping(info, 400),
        }
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
