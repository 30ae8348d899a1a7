"""Pre-flight checks against the round trip they save."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import tsaccess
from bench.common import RESULTS, create_db, median_of, report
from tsaccess.ephemeral import ServerInfo
from tsaccess.preflight import Checker, take_snapshot

ANALYST_QUERIES = [
    # joins of 2-4 tables, CTEs, aggregates; {i} makes every text a new shape (an alias)
    "SELECT s.name AS n{i}, avg(r.temperature) FROM sensor_readings r"
    " JOIN sensors s ON s.id = r.sensor_id WHERE r.time > now() - interval '1 day'"
    " GROUP BY 1 ORDER BY 2 DESC",
    "SELECT d.name AS n{i}, s.name, max(r.temperature) FROM sensor_readings r"
    " JOIN sensors s ON s.id = r.sensor_id JOIN departments d ON d.id = s.department_id"
    " WHERE r.time > now() - interval '7 days' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10",
    "WITH recent AS (SELECT sensor_id, max(time) AS t FROM sensor_readings"
    " WHERE time > now() - interval '1 day' GROUP BY sensor_id)"
    " SELECT r.sensor_id AS s{i}, r.temperature FROM sensor_readings r"
    " JOIN recent ON recent.sensor_id = r.sensor_id AND recent.t = r.time",
    "SELECT d.name AS n{i}, count(*), avg(r.temperature) FROM sensor_readings r"
    " JOIN sensors s ON s.id = r.sensor_id JOIN departments d ON d.id = s.department_id"
    " JOIN sites x ON x.id = s.site_id WHERE x.name = 'A' GROUP BY 1",
    "SELECT date_bin('1 hour', time, TIMESTAMPTZ '2000-01-01') AS h{i}, sensor_id,"
    " avg(temperature) FROM sensor_readings WHERE time > now() - interval '1 day'"
    " GROUP BY 1, 2 ORDER BY 1",
]
# the same kind of queries on tables granted in full (the fast path: no parse)
GRANTED_QUERIES = [
    "SELECT d.name AS n{i}, count(*) FROM sensors s JOIN departments d ON d.id = s.department_id"
    " GROUP BY 1 ORDER BY 2 DESC",
    "SELECT d.name AS n{i}, x.name, count(*) FROM sensors s"
    " JOIN departments d ON d.id = s.department_id JOIN sites x ON x.id = s.site_id"
    " WHERE x.name LIKE 'A%' GROUP BY 1, 2",
    "WITH big AS (SELECT department_id, count(*) AS n FROM sensors GROUP BY 1 HAVING count(*) > 1)"
    " SELECT d.name AS n{i}, big.n FROM big JOIN departments d ON d.id = big.department_id",
]


def _next_check(checker: Checker, texts: Iterator[str]) -> Callable[[], Any]:
    return lambda: checker.check(next(texts))


def bench_preflight(info: ServerInfo, quick: bool) -> None:
    print("\n[pre-flight]")
    db = create_db(info, "bench_preflight")
    with tsaccess.connect(**db.params(), autocommit=True) as admin:
        admin.execute(
            "CREATE TABLE sensor_readings (time timestamptz NOT NULL, sensor_id text,"
            " temperature numeric(5,2), humidity int, location text, department text)"
        )
        admin.execute(
            "INSERT INTO sensor_readings SELECT now() - i * interval '1 min', 's1', 20,"
            " 40, 'A', 'Eng' FROM generate_series(1, 100) i"
        )
        admin.execute(
            "CREATE TABLE sites (id int, name text);"
            " CREATE TABLE departments (id int, name text);"
            " CREATE TABLE sensors (id text, name text, department_id int, site_id int)"
        )
        admin.execute("CREATE ROLE analyst LOGIN PASSWORD 'bench-only-password'")
        admin.execute("GRANT SELECT (time, sensor_id, temperature) ON sensor_readings TO analyst")
        admin.execute("GRANT SELECT ON sites, departments, sensors TO analyst")
        admin.execute(
            "DO $$ BEGIN FOR i IN 1..5000 LOOP EXECUTE format("
            "'CREATE TABLE IF NOT EXISTS filler_%s (id int, v text)', i); END LOOP; END $$"
        )
    params = db.params(user="analyst", password="bench-only-password")
    bucket = ANALYST_QUERIES[-1].replace("{i}", "")
    with tsaccess.connect(**params, autocommit=True) as conn:
        checker = Checker(conn)
        parser = Checker(conn, fast_path=False)  # the baseline: sqlglot parses every shape
        t_snap = median_of(lambda: take_snapshot(conn), 5)
        report("snapshot build, 5,000+ tables (one catalog query)", t_snap * 1000, "ms")
        for stmt in ANALYST_QUERIES:  # sqlglot loaded, column privileges cached: steady state
            assert checker.check(stmt.replace("{i}", "x")).status == "allowed"
            assert parser.check(stmt.replace("{i}", "x")).status == "allowed"
        loops = 20000 if quick else 100000
        cached = median_of(lambda: checker.check(bucket), loops)
        rt_loops = 2000 if quick else 10000
        n_new = 300 if quick else 1000
        rts, consts, shapes, granted, parsed = [], [], [], [], []
        for rnd in range(5):  # rounds alternate: machine drift hits every figure alike
            rts.append(
                median_of(lambda: conn.execute("SELECT 1", prepare=True).fetchone(), rt_loops)
            )
            texts = iter(
                [bucket.replace("1 day", f"{rnd * n_new + i} minutes") for i in range(n_new)]
            )
            consts.append(median_of(_next_check(checker, texts), n_new))
            fresh = iter(
                [
                    stmt.replace("{i}", f"_{rnd}_{i}")
                    for i in range(n_new // len(ANALYST_QUERIES))
                    for stmt in ANALYST_QUERIES
                ]
            )
            shapes.append(median_of(_next_check(checker, fresh), n_new - n_new % 5))
            fresh = iter(
                [
                    stmt.replace("{i}", f"_p{rnd}_{i}")
                    for i in range(n_new // len(ANALYST_QUERIES) // 3)
                    for stmt in ANALYST_QUERIES
                ]
            )
            parsed.append(median_of(_next_check(parser, fresh), (n_new // 15) * 5))
            full = iter(
                [
                    stmt.replace("{i}", f"_{rnd}_{i}")
                    for i in range(n_new // len(GRANTED_QUERIES))
                    for stmt in GRANTED_QUERIES
                ]
            )
            granted.append(median_of(_next_check(checker, full), n_new - n_new % 3))
        rt = statistics.median(rts)
        new = statistics.median(consts)
        shape = statistics.median(shapes)
        report("verdict, cached statement", cached * 1e6, "us")
        report(
            "verdict, new statement (new constants: shared verdict)",
            new * 1e6,
            "us",
            f"{new / rt:.2f}x the SELECT 1 round trip",
        )
        report(
            "verdict, new query shape (token scan, column grants)",
            shape * 1e6,
            "us",
            f"{shape / rt:.2f}x the SELECT 1 round trip",
        )
        base = statistics.median(parsed)
        report(
            "verdict, new query shape, baseline: sqlglot parse + analysis",
            base * 1e6,
            "us",
            f"{base / rt:.2f}x the round trip; the scan is {base / shape:.1f}x faster",
        )
        fast = statistics.median(granted)
        report(
            "verdict, new query shape, tables granted in full (no parse)",
            fast * 1e6,
            "us",
            f"{fast / rt:.2f}x the SELECT 1 round trip",
        )
        report("SELECT 1 round trip over TLS (prepared)", rt * 1e6, "us", "median of 5 rounds")
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:  # the other core kept busy: no wake-up from idle in the round trip
            time.sleep(0.3)
            warm = median_of(lambda: conn.execute("SELECT 1", prepare=True).fetchone(), rt_loops)
        finally:
            busy.kill()
            busy.wait()
        report(
            "SELECT 1 round trip, other core kept busy (for reference)",
            warm * 1e6,
            "us",
            f"the new query shape is {shape / warm:.2f}x this one",
        )
        RESULTS["preflight new shape, granted in full / round trip"] = fast / rt
        RESULTS["preflight new statement / round trip"] = new / rt
        RESULTS["preflight new shape / round trip"] = shape / rt
        RESULTS["preflight new shape / round trip, busy core"] = shape / warm
        RESULTS["preflight new shape, parsed / round trip"] = base / rt
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

                def q(pool: Any = pool) -> None:
                    with pool.connection() as c:
                        c.execute(bucket).fetchall()

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
