"""Planning synthetic policies (100 and 1,000 tables)."""

from __future__ import annotations

import time
from typing import Any

import tsaccess
from bench.common import create_db, median_of, report
from tsaccess.ephemeral import ServerInfo
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import Policy, parse_policy


def synthetic_policy(db: str, tables: int, roles: int) -> dict[str, Any]:
    return {
        "database": {"name": db, "timescaledb": "off"},
        "tables": {
            f"t{i}": {"audit": "off", "columns": {"id": "bigint", "v": "text"}}
            for i in range(tables)
        },
        "roles": {
            f"r{j}": {
                "grants": {
                    f"t{i}": ["SELECT"] if (i + j) % 3 else ["SELECT", "INSERT"]
                    for i in range(j, tables, roles)
                }
            }
            for j in range(roles)
        },
        "users": {},
    }


def bench_plan(info: ServerInfo, quick: bool) -> None:
    print("\n[plan: synthetic policies on the throwaway server]")
    for tables, roles in ((100, 5), (1000, 50)):
        name = f"bench_plan_{tables}"
        db = create_db(info, name)
        policy = parse_policy(synthetic_policy(name, tables, roles))
        with tsaccess.connect(**db.params()) as admin:
            t0 = time.perf_counter()
            first = plan(admin, policy)
            t_empty = time.perf_counter() - t0
            admin.rollback()
            apply(admin, policy)

            def replan(p: Policy = policy) -> None:
                plan(admin, p)
                admin.rollback()

            t_plan = median_of(replan, 3)
            again = plan(admin, policy)
            admin.rollback()
        report(
            f"plan {tables} tables x {roles} roles, empty database",
            t_empty * 1000,
            "ms",
            f"{len(first)} statements, {first.catalog_queries} catalog queries",
        )
        report(
            f"plan {tables} tables x {roles} roles, applied (no-op)",
            t_plan * 1000,
            "ms",
            f"{len(again)} statements, {again.catalog_queries} catalog queries",
        )
