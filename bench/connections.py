"""Connections and pool borrows, against plain psycopg and psycopg_pool."""

from __future__ import annotations

import statistics
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

import tsaccess
from bench.common import RESULTS, median_of, report
from tsaccess.ephemeral import ServerInfo


def bench_connections(info: ServerInfo, quick: bool) -> None:
    print("\n[connections]")
    n = 20 if quick else 50
    params = info.params()
    raw = {k: v for k, v in params.items()}
    report(
        "connect: plain psycopg (verify-full)",
        median_of(lambda: psycopg.connect(**raw).close(), n) * 1000,
        "ms",
    )
    report(
        "connect: tsaccess.connect (TLS policy + server check)",
        median_of(lambda: tsaccess.connect(**params).close(), n) * 1000,
        "ms",
    )
    loops = 2000 if quick else 10000
    with psycopg.connect(**raw, autocommit=True) as conn:
        conn.execute("SELECT 1", prepare=True)
        plain = median_of(lambda: conn.execute("SELECT 1", prepare=True).fetchone(), loops)
    report("SELECT 1 round trip: plain psycopg (prepared)", plain * 1e6, "us")
    RESULTS["select1_us"] = plain * 1e6
    bench_pool_borrow(params, raw, plain, quick)


def bench_pool_borrow(
    params: dict[str, Any], raw: dict[str, Any], plain: float, quick: bool
) -> None:
    """Borrow + ``SELECT 1`` + return, through pools that differ only in what they do on borrow
    and return; rounds alternate so that machine drift hits every pool alike."""
    pools: dict[str, ConnectionPool[Any]] = {
        "psycopg_pool.ConnectionPool, no check, no reset": ConnectionPool(
            "", kwargs={**raw, "autocommit": True}, min_size=1, max_size=1, open=True
        ),
        "psycopg_pool.ConnectionPool + check on borrow": ConnectionPool(
            "",
            kwargs={**raw, "autocommit": True},
            min_size=1,
            max_size=1,
            open=True,
            check=ConnectionPool.check_connection,
        ),
        "tsaccess pool (check + one-round-trip reset)": tsaccess.create_pool(
            **params, min_size=1, max_size=1, autocommit=True
        ),
        "tsaccess pool, custom_settings=[1 name]": tsaccess.create_pool(
            **params, min_size=1, max_size=1, autocommit=True, custom_settings=["myapp.x"]
        ),
    }
    n = 500 if quick else 2000
    times: dict[str, list[float]] = {k: [] for k in pools}
    try:
        for _ in range(5):
            for label, pool in pools.items():

                def borrow(pool: ConnectionPool[Any] = pool) -> None:
                    with pool.connection() as c:
                        c.execute("SELECT 1").fetchone()

                borrow()
                times[label].append(median_of(borrow, n))
    finally:
        for pool in pools.values():
            pool.close()
    base = statistics.median(times["psycopg_pool.ConnectionPool, no check, no reset"])
    for label in pools:
        t = statistics.median(times[label])
        RESULTS[f"borrow+SELECT 1+return: {label}"] = t * 1e6
        report(
            f"borrow+SELECT 1+return: {label}",
            t * 1e6,
            "us",
            f"{t / plain:.2f}x prepared query, {t / base:.2f}x plain pool",
        )
