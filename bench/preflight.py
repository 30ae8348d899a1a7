"""Pre-flight checks against the round trip they save.

240 distinct generated statements (bench/shapes.py: joins of 1-4 tables, CTEs, subqueries,
windows, aggregates, DML; tables read in full and through column grants), shuffled, each
checked once per round as a never-seen shape (the analysis and verdict caches emptied between
rounds; the privilege snapshot and the columns it loaded kept: a long-lived connection's steady
state). After each check a TLS ``SELECT 1`` round trip is timed, the server having idled during
the check ("interleaved"), and rounds of back-to-back round trips ("tight loop") are timed
beside them. Median and p95 of the checks are reported against both round trips.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import tsaccess
from bench import compiled
from bench.common import RESULTS, create_db, median_of, report
from bench.shapes import GRANTS, SCHEMA, shapes
from tsaccess.ephemeral import ServerInfo
from tsaccess.preflight import Checker, take_snapshot
from tsaccess.preflight.text import shape

PASSWORD = "bench-only-password"
REFUSED = "SELECT s.name, r.location FROM sensors s JOIN sensor_readings r ON r.sensor_id = s.id"


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def _setup(info: ServerInfo) -> ServerInfo:
    db = create_db(info, "bench_preflight")
    with tsaccess.connect(**db.params(), autocommit=True) as admin:
        admin.execute(SCHEMA)
        admin.execute(f"CREATE ROLE analyst LOGIN PASSWORD '{PASSWORD}'")
        admin.execute(GRANTS.format(user="analyst"))
        admin.execute(
            "DO $$ BEGIN FOR i IN 1..5000 LOOP EXECUTE format("
            "'CREATE TABLE IF NOT EXISTS filler_%s (id int, v text)', i); END LOOP; END $$"
        )
    return db


def _timed_rounds(
    conn: Any, checker: Checker, texts: list[str], rounds: int
) -> tuple[list[float], list[float], list[float], int]:
    """Per check: its time; per check, the round trip right after it; tight-loop round trips;
    how many checks the token scan decided (no parse)."""
    checks: list[float] = []
    inter: list[float] = []
    tight: list[float] = []
    scanned = 0
    rt = conn.execute
    for rnd in range(rounds):
        checker._analyses.clear()  # every shape never seen again
        checker._verdicts.clear()
        order = texts[:]
        random.Random(rnd).shuffle(order)
        for text in order:
            t0 = time.perf_counter()
            checker.check(text)
            t1 = time.perf_counter()
            rt("SELECT 1", prepare=True).fetchone()
            t2 = time.perf_counter()
            checks.append(t1 - t0)
            inter.append(t2 - t1)
            scanned += (shape(text) or text, False) not in checker._analyses
        for _ in order:
            t0 = time.perf_counter()
            rt("SELECT 1", prepare=True).fetchone()
            tight.append(time.perf_counter() - t0)
    return checks, inter, tight, scanned


def _report_ratio(key: str, value: float, inter: float, tight: float, note: str = "") -> None:
    report(
        key,
        value * 1e6,
        "us",
        f"{value / inter:.2f}x the interleaved round trip, {value / tight:.2f}x tight" + note,
    )


def bench_preflight(info: ServerInfo, quick: bool) -> None:
    print("\n[pre-flight]")
    db = _setup(info)
    params = db.params(user="analyst", password=PASSWORD)
    texts = shapes(240)
    rounds = 3 if quick else 7
    with tsaccess.connect(**params, autocommit=True) as conn:
        t_snap = median_of(lambda: take_snapshot(conn), 5)
        report("snapshot build, 5,000+ tables (one catalog query)", t_snap * 1000, "ms")
        checker = Checker(conn, ttl=3600)  # one snapshot for the run: its cost is above
        for text in texts:  # sqlglot loaded, columns of every table loaded: steady state
            verdict = checker.check(text)
            assert verdict.status == "allowed", (text, verdict)
        checks, inter_rts, tight_rts, scanned = _timed_rounds(conn, checker, texts, rounds)
        inter, tight = statistics.median(inter_rts), statistics.median(tight_rts)
        med, p95 = statistics.median(checks), _p95(checks)
        n = len(texts)
        report("TLS SELECT 1 round trip, interleaved (server idle between)", inter * 1e6, "us")
        report("TLS SELECT 1 round trip, tight loop", tight * 1e6, "us")
        _report_ratio(
            f"verdict, new shape ({n} shapes x {rounds} rounds): median", med, inter, tight
        )
        _report_ratio("verdict, new shape: p95", p95, inter, tight)
        report("  of which decided from tokens (no parse)", 100 * scanned / len(checks), "%")
        RESULTS["preflight median / interleaved round trip"] = med / inter
        RESULTS["preflight p95 / interleaved round trip"] = p95 / inter
        RESULTS["preflight median / tight round trip"] = med / tight
        RESULTS["preflight p95 / tight round trip"] = p95 / tight
        if compiled.wanted():
            found = compiled.measure(params, texts, rounds)
            if isinstance(found, str):
                report("compiled scan (mypyc): skipped", 0, "us", found)
            else:
                _report_ratio("compiled scan (mypyc): median", found[0], inter, tight,
                              f"; pure Python is {med / found[0]:.2f}x it")  # fmt: skip
                _report_ratio("compiled scan (mypyc): p95", found[1], inter, tight)
        parser = Checker(conn, ttl=3600, fast_path=False)  # baseline: sqlglot for every shape
        parser._snapshot = checker._snapshot
        parsed, _, _, _ = _timed_rounds(conn, parser, texts, 1)
        _report_ratio(
            "baseline, sqlglot parse + analysis: median", statistics.median(parsed), inter, tight
        )
        _report_ratio("baseline, sqlglot parse + analysis: p95", _p95(parsed), inter, tight)
        bucket = (
            "SELECT r.sensor_id, avg(r.temperature) FROM sensor_readings r"
            " WHERE r.time > now() - interval '1 day' GROUP BY 1"
        )
        checker.check(bucket)
        cached = median_of(lambda: checker.check(bucket), 20000 if quick else 100000)
        report("verdict, cached statement", cached * 1e6, "us")
        consts = iter([bucket.replace("1 day", f"{i} minutes") for i in range(2000)])
        new = median_of(lambda: checker.check(next(consts)), 2000)
        _report_ratio("verdict, new constants of a known shape", new, inter, tight)
        _confirmation(conn, inter, quick)
        _huge(conn)
    _busy_round_trip(params, med, quick)
    _pools(params, bucket, quick)


def _confirmation(conn: Any, inter: float, quick: bool) -> None:
    """What a refusal costs: the live privilege check and the EXPLAIN that confirms it."""
    checker = Checker(conn, ttl=3600)
    assert checker.check(REFUSED).status == "denied"
    n = 50 if quick else 200
    cost = median_of(lambda: checker.check(REFUSED), n)
    report(
        "refusal confirmed (privilege check + EXPLAIN, autocommit)",
        cost * 1e6,
        "us",
        f"{cost / inter:.1f}x the interleaved round trip",
    )
    RESULTS["preflight refusal confirmation / interleaved round trip"] = cost / inter
    conn.autocommit = False
    conn.execute("SELECT 1")  # inside a transaction: savepoints around each probe
    in_tx = median_of(lambda: checker.check(REFUSED), n)
    conn.rollback()
    conn.autocommit = True
    report(
        "refusal confirmed inside a transaction (savepoints)",
        in_tx * 1e6,
        "us",
        f"{in_tx / inter:.1f}x the interleaved round trip",
    )


def _huge(conn: Any) -> None:
    in_list = ", ".join(str(i) for i in range(150_000))  # ~1 MB
    huge = f"SELECT count(*) FROM sensor_readings WHERE temperature IN ({in_list})"
    t_check = median_of(lambda: Checker(conn).check(huge), 5)
    t_server = median_of(lambda: conn.execute(huge).fetchone(), 3)
    report(
        f"verdict, {len(huge) / 1e6:.1f} MB IN list (deferred)",
        t_check * 1000,
        "ms",
        f"server runs it in {t_server * 1000:.0f} ms",
    )


def _busy_round_trip(params: dict[str, Any], med: float, quick: bool) -> None:
    with tsaccess.connect(**params, autocommit=True) as conn:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:  # the other core kept busy: no wake-up from idle in the round trip
            time.sleep(0.3)
            warm = median_of(
                lambda: conn.execute("SELECT 1", prepare=True).fetchone(), 2000 if quick else 10000
            )
        finally:
            busy.kill()
            busy.wait()
    report(
        "SELECT 1 round trip, other core kept busy (for reference)",
        warm * 1e6,
        "us",
        f"the median check is {med / warm:.2f}x this one",
    )


def _pools(params: dict[str, Any], bucket: str, quick: bool) -> None:
    n = 1000 if quick else 4000
    pools = {
        flag: tsaccess.create_pool(
            **params, preflight=flag, min_size=1, max_size=1, autocommit=True
        )
        for flag in (False, True)
    }
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(5):  # alternate rounds: machine drift hits both sides alike
            for flag, pool in pools.items():
                q: Callable[[], None] = _query(pool, bucket)
                q()
                t0 = time.perf_counter()
                for _ in range(n):
                    q()
                rates[flag].append(n / (time.perf_counter() - t0))
    finally:
        for pool in pools.values():
            pool.close()
    for flag in (False, True):
        RESULTS[f"qps preflight={flag}"] = statistics.median(rates[flag])
    on, off = RESULTS["qps preflight=True"], RESULTS["qps preflight=False"]
    report("pool throughput, pre-flight off", off, "q/s")
    report("pool throughput, pre-flight on", on, "q/s", f"{on / off:.3f}x off")


def _query(pool: Any, text: str) -> Callable[[], None]:
    def q() -> None:
        with pool.connection() as c:
            c.execute(text).fetchall()

    return q
