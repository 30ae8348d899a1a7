"""The async client against plain psycopg's async connection and pool, in the same run.

Rounds alternate between the variants so machine drift hits every one alike. Reported as ratios
to plain ``psycopg.AsyncConnection``'s prepared ``SELECT 1``: what the tsaccess face adds per
statement (nothing but the custom-setting scan on pooled connections), what a cached pre-flight
verdict costs on the event loop, what a trip to the sync face in a worker thread costs (paid
only for a DENIED event: a check that needs the server awaits it on the event loop), and a pool
borrow.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

import tsaccess
from bench.common import RESULTS, report
from tsaccess.ephemeral import ServerInfo


async def _median_of(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _noop(face: Any) -> None:
    return None


async def _run(info: ServerInfo, quick: bool) -> None:
    params = info.params()
    loops = 500 if quick else 2000
    plain = await psycopg.AsyncConnection.connect(**params, autocommit=True)
    ts = await tsaccess.connect_async(**params, autocommit=True)
    pf = await tsaccess.connect_async(**params, autocommit=True, preflight=True)
    pools: dict[str, Any] = {
        "psycopg_pool.AsyncConnectionPool + check": AsyncConnectionPool(
            "",
            kwargs={**params, "autocommit": True},
            min_size=1,
            max_size=1,
            open=False,
            check=AsyncConnectionPool.check_connection,
        ),
        "tsaccess async pool (reset on return, check skipped after a reset)": await tsaccess.create_async_pool(
            **params, min_size=1, max_size=1, autocommit=True
        ),
    }
    await pools["psycopg_pool.AsyncConnectionPool + check"].open(wait=True)

    def select1(conn: Any) -> Callable[[], Awaitable[Any]]:
        async def run() -> Any:
            cur = await conn.execute("SELECT 1", prepare=True)
            return await cur.fetchone()

        return run

    def borrow(pool: Any) -> Callable[[], Awaitable[Any]]:
        async def run() -> Any:
            async with pool.connection() as c:
                cur = await c.execute("SELECT 1")
                return await cur.fetchone()

        return run

    async def thread_trip() -> None:
        await ts.run_sync(_noop)

    variants: dict[str, Callable[[], Awaitable[Any]]] = {
        "SELECT 1: psycopg.AsyncConnection (prepared)": select1(plain),
        "SELECT 1: tsaccess.connect_async": select1(ts),
        "SELECT 1: connect_async(preflight=True), verdict cached": select1(pf),
        "sync-face trip (worker thread, lock held), no I/O": thread_trip,
        **{f"borrow+SELECT 1+return: {k}": borrow(p) for k, p in pools.items()},
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for _ in range(5):
            for label, fn in variants.items():
                await fn()
                times[label].append(await _median_of(fn, loops // 4))
    finally:
        for conn in (plain, ts, pf):
            await conn.close()
        for pool in pools.values():
            await pool.close()
    base = statistics.median(times["SELECT 1: psycopg.AsyncConnection (prepared)"])
    for label in variants:
        t = statistics.median(times[label])
        RESULTS[f"async {label}"] = t * 1e6
        report(f"async {label}", t * 1e6, "us", f"{t / base:.2f}x plain async SELECT 1")


def bench_aio(info: ServerInfo, quick: bool) -> None:
    print("\n[async]")
    asyncio.run(_run(info, quick))
