"""The tamper-evident chain: what it adds to audited ingest, and how fast seals and proofs are.

* Ingest: two databases with the same policy, one with the chain's objects (the index on the
  audit table's ``txid``, the chain table, the seal routines) and one without them; 100,000-row
  ``INSERT ... SELECT`` and ``COPY`` into a table audited per statement and one audited per row,
  and single-row ``INSERT`` statements, interleaved between the two. Ratio = with / without,
  next to an A/A control (a second database without the chain) that shows the noise floor.
* Seal and prove: 1,000,000 audit rows written by 1,000 transactions, then 1,000,000 per-row
  records (ten 100,000-row audited statements); the first seal of each, the proof of all, and
  the seal of the next 1,000 statements (what a seal every minute costs).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from psycopg import sql

import tsaccess
from bench.common import RESULTS, create_db, report
from tsaccess import audit
from tsaccess.ephemeral import ServerInfo
from tsaccess.passwords import Secret, resolve_passwords
from tsaccess.plan.compose import apply
from tsaccess.policy import Policy, parse_policy

__all__ = ["bench_integrity"]

COLUMNS = {
    "time": "timestamptz not null",
    "sensor_id": "text not null",
    "temperature": "numeric(5,2)",
    "humidity": "integer",
    "location": "text",
    "department": "text",
}


def _policy(name: str) -> Policy:
    return parse_policy(
        {
            "database": {"name": name, "timescaledb": "prefer"},
            "tables": {
                t: {"time_column": "time", "hypertable": True, "audit": mode, "columns": COLUMNS}
                for t, mode in (("c_stmt", "statement"), ("c_row", "row"))
            },
            "roles": {
                "chain_writers": {"grants": {t: ["SELECT", "INSERT"] for t in ("c_stmt", "c_row")}}
            },
            "users": {"chain_ingest": {"roles": ["chain_writers"]}},
        }
    )


_WITHOUT = (
    "DROP TABLE tsaccess_audit.tsaccess_chain",
    "DROP FUNCTION public.tsaccess_audit_seal(integer)",
    "DROP PROCEDURE public.tsaccess_audit_seal_job(integer, jsonb)",
)


def _setup(info: ServerInfo, name: str, pw: dict[str, Secret], chain: bool) -> ServerInfo:
    db = create_db(info, name)
    with tsaccess.connect(**db.params()) as admin:
        apply(admin, _policy(name), passwords=pw)
        if not chain:
            for index in admin.execute(
                "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_attribute a"
                " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
                " WHERE i.indrelid = 'public.activity_audit'::regclass AND a.attname = 'txid'"
            ).fetchall():
                admin.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index[0])))
            for statement in _WITHOUT:
                admin.execute(statement)
        for t in ("c_stmt", "c_row", "activity_audit", "tsaccess_audit.c_row"):
            admin.execute(
                sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(
                    sql.Identifier(*t.split("."))
                )
            )
        admin.commit()
    return db


def _cpu_ns(pid: int) -> int | None:
    """CPU time a server backend has used (``/proc/<pid>/schedstat``, local servers only):
    unlike the wall clock, it does not grow while other work on a shared machine runs."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _ingest_runs(
    dbs: dict[str, ServerInfo], pw: dict[str, Secret], runs: int, rows: int, singles: int
) -> dict[tuple[str, str, str], list[float]]:
    """Seconds per (database, table, statement kind), the databases interleaved; the writer
    backend's CPU seconds under ("cpu " + database, ...) where the server is local."""
    copy_data = "".join(
        f"2026-01-01 00:{i // 60 % 60:02d}:{i % 60:02d}+00\ts{i % 50}\t20.5\t40\tA\tEng\n"
        for i in range(rows)
    ).encode()
    out: dict[tuple[str, str, str], list[float]] = {}
    conns = {
        k: tsaccess.connect(**db.params(user="chain_ingest", password=pw["chain_ingest"].reveal()))
        for k, db in dbs.items()
    }
    admins = {k: tsaccess.connect(**db.params(), autocommit=True) for k, db in dbs.items()}
    try:
        for run in range(runs):
            for op in ("INSERT", "COPY", "single INSERTs"):
                for table in ("c_stmt", "c_row"):
                    # back to back, the order rotated every run: drift hits every side
                    names = list(dbs)
                    for k in names[run % len(names) :] + names[: run % len(names)]:
                        conn, admin = conns[k], admins[k]
                        ident = sql.Identifier(table)
                        admin.execute(
                            sql.SQL("TRUNCATE {}, activity_audit, tsaccess_audit.c_row").format(
                                ident
                            )
                        )
                        admin.execute(sql.SQL("VACUUM ANALYZE {}").format(ident))
                        admin.execute("CHECKPOINT")
                        cpu0 = _cpu_ns(conn.info.backend_pid)
                        t0 = time.perf_counter()
                        if op == "INSERT":
                            conn.execute(
                                sql.SQL(
                                    "INSERT INTO {} SELECT '2026-01-01'::timestamptz"
                                    " + i * interval '1 second', 's' || (i %% 50), 20, 40, 'A',"
                                    " 'Eng' FROM generate_series(1, %s) i"
                                ).format(ident),
                                (rows,),
                            )
                        elif op == "COPY":
                            with conn.cursor().copy(
                                sql.SQL("COPY {} FROM STDIN").format(ident)
                            ) as cp:
                                cp.write(copy_data)
                        else:
                            stmt = sql.SQL(
                                "INSERT INTO {} VALUES (now(), 's', 20, 40, 'A', 'Eng')"
                            ).format(ident)
                            for _ in range(singles):
                                conn.execute(stmt)
                                conn.commit()
                        conn.commit()
                        out.setdefault((k, table, op), []).append(time.perf_counter() - t0)
                        cpu1 = _cpu_ns(conn.info.backend_pid)
                        if cpu0 is not None and cpu1 is not None:
                            out.setdefault(("cpu " + k, table, op), []).append((cpu1 - cpu0) / 1e9)
    finally:
        for c in (*conns.values(), *admins.values()):
            c.close()
    return out


def _throughput(info: ServerInfo, pw: dict[str, Secret], rows: int) -> None:
    db = _setup(info, "bench_chain_seal", pw, True)
    policy = _policy("bench_chain_seal")
    work = Path(tempfile.mkdtemp(prefix="tsaccess-bench-chain-"))
    pair = audit.keygen(work / "key")
    with tsaccess.connect(**db.params(), autocommit=True) as admin:
        per_tx = 1000
        t0 = time.perf_counter()
        for _ in range(rows // per_tx):  # one transaction each: real transaction ids
            admin.execute(
                "INSERT INTO activity_audit (username, operation, table_name, description,"
                " effective_role, txid, client_addr, application_name, actor, request_id,"
                " row_count) SELECT 'bob', 'INSERT', 'c_stmt', 'INSERT of ' || i || ' row(s)',"
                " 'chain_writers', txid_current(), '10.1.2.3', 'etl', 'job ' || (i %% 7), NULL,"
                " i FROM generate_series(1, %s) i",
                (per_tx,),
            )
        made = time.perf_counter() - t0
        admin.execute("VACUUM ANALYZE activity_audit")
        print(f"  ({rows:,} audit rows written in {made:.1f} s by {rows // per_tx} transactions)")
        t0 = time.perf_counter()
        audit.seal(admin, policy, key=pair.private, out=work / "cps")
        t_seal = time.perf_counter() - t0
        report(f"seal {rows:,} audit rows", t_seal, "s", f"{rows / t_seal:,.0f} rows/s")
        RESULTS["seal audit rows per s"] = rows / t_seal
    user = db.params(user="chain_ingest", password=pw["chain_ingest"].reveal())
    with tsaccess.connect(**user) as conn:
        for _ in range(10):
            conn.execute(
                "INSERT INTO c_row SELECT now() - i * interval '1 second', 's' || (i %% 50), 20,"
                " 40, 'A', 'Eng' FROM generate_series(1, %s) i",
                (rows // 10,),
            )
            conn.commit()
    with tsaccess.connect(**db.params(), autocommit=True) as admin:
        admin.execute("VACUUM ANALYZE tsaccess_audit.c_row")
        t0 = time.perf_counter()
        audit.seal(admin, policy, key=pair.private, out=work / "cps")
        t_rec = time.perf_counter() - t0
        report(f"seal {rows:,} per-row records", t_rec, "s", f"{rows / t_rec:,.0f} records/s")
        RESULTS["seal per-row records per s"] = rows / t_rec
        t0 = time.perf_counter()
        proof = audit.prove(admin, policy, checkpoints=work / "cps", public_key=pair.public)
        t_prove = time.perf_counter() - t0
        assert proof.intact, proof.to_text()
        total = proof.rows + proof.records
        report(
            f"prove {proof.rows:,} audit rows + {proof.records:,} records",
            t_prove,
            "s",
            f"{total / t_prove:,.0f} rows+records/s",
        )
        RESULTS["prove rows+records per s"] = total / t_prove
        size = admin.execute(
            "SELECT pg_total_relation_size('tsaccess_audit.tsaccess_chain'),"
            " pg_total_relation_size('activity_audit')"
            " + coalesce((SELECT sum(pg_total_relation_size(c))"
            "   FROM show_chunks('activity_audit') c), 0)"
        ).fetchone()
        assert size is not None
        report(
            "chain table size per audit row",
            size[0] / proof.position,
            "bytes",
            f"audit table: {size[1] / max(proof.rows, 1):.0f} bytes per row (its chunks)",
        )
    with tsaccess.connect(**user) as conn:
        for _ in range(1000):
            conn.execute("INSERT INTO c_stmt VALUES (now(), 's', 20, 40, 'A', 'Eng')")
            conn.commit()
    with tsaccess.connect(**db.params(), autocommit=True) as admin:
        t0 = time.perf_counter()
        audit.seal(admin, policy, key=pair.private, out=work / "cps")
        t_inc = time.perf_counter() - t0
        report("seal the next 1,000 audited statements", t_inc * 1000, "ms", "incl. checkpoint")
        RESULTS["seal 1000 new rows ms"] = t_inc * 1000


def bench_integrity(info: ServerInfo, quick: bool) -> None:
    print("\n[integrity: the chain's cost on ingest (with / without its objects), seal, prove]")
    pw = resolve_passwords(["chain_ingest"], generate=True, environ={})
    dbs = {
        "with": _setup(info, "bench_chain_with", pw, True),
        "without": _setup(info, "bench_chain_without", pw, False),
        # an A/A control: the same database as "without" again, measured the same way, shows
        # how far two identical sides differ on this machine (the noise floor)
        "control": _setup(info, "bench_chain_control", pw, False),
    }
    runs = 4 if quick else 15
    singles = 100 if quick else 300
    res = _ingest_runs(dbs, pw, runs, 100_000, singles)
    print("  (median of per-run ratios of back-to-back runs [quartiles]: wall clock, and the")
    print("   writer backend's CPU time, which other work on the machine does not inflate;")
    print("   A/A: two databases without the chain, the noise floor of this machine)")
    for table, mode in (("c_stmt", "statement"), ("c_row", "row")):
        for op in ("INSERT", "COPY", "single INSERTs"):
            label = {"INSERT": "100k INSERT...SELECT", "COPY": "100k COPY"}.get(
                op, f"{singles} {op}"
            )
            for side, what in (("with", "chain / no chain"), ("control", "A/A control")):
                notes = []
                for clock in ("", "cpu "):
                    base = res.get((clock + "without", table, op))
                    mine = res.get((clock + side, table, op))
                    if not base or not mine:
                        continue
                    ratios = [a / b for a, b in zip(mine, base, strict=True)]
                    q1, _, q3 = statistics.quantiles(ratios, n=4)
                    ratio = statistics.median(ratios)
                    notes.append(
                        f"{clock or 'wall '}{ratio:.3f} [{q1:.2f}, {q3:.2f}]"
                        f" ({statistics.median(mine) * 1000:.0f} vs"
                        f" {statistics.median(base) * 1000:.0f} ms)"
                    )
                    RESULTS[f"chain {side} {clock or 'wall '}ratio {op} {mode}"] = ratio
                key = f"chain {side} {'cpu ' if len(notes) > 1 else 'wall '}ratio {op} {mode}"
                report(f"{label}, {mode} audit: {what}", RESULTS[key], "x", "; ".join(notes))
    _throughput(info, pw, 100_000 if quick else 1_000_000)
