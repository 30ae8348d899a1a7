"""Audited ingest against the same work with no audit (and the tutorial's trigger)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from psycopg import sql

import tsaccess
from bench.common import RESULTS, create_db, report
from tsaccess.ephemeral import ServerInfo
from tsaccess.passwords import resolve_passwords
from tsaccess.plan.compose import apply
from tsaccess.policy import parse_policy

AUDIT_POLICY = {
    "database": {"name": "bench_audit", "timescaledb": "prefer"},
    "tables": {
        name: {
            "time_column": "time",
            "hypertable": True,
            "audit": mode,
            "columns": {
                "time": "timestamptz not null",
                "sensor_id": "text not null",
                "temperature": "numeric(5,2)",
                "humidity": "integer",
                "location": "text",
                "department": "text",
            },
        }
        for name, mode in (
            ("t_none", "off"),
            ("t_stmt", "statement"),
            ("t_row", "row"),
            ("t_capture", "off"),
            ("t_tutorial", "off"),
        )
    },
    "roles": {
        "writers": {
            "grants": {
                t: ["SELECT", "INSERT", "UPDATE", "DELETE"]
                for t in ("t_none", "t_stmt", "t_row", "t_capture", "t_tutorial")
            }
        }
    },
    "users": {"ingest": {"roles": ["writers"]}},
}

TUTORIAL_TRIGGER = """
CREATE FUNCTION public.tutorial_audit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO public.activity_audit (username, operation, table_name, description)
  VALUES (session_user, TG_OP, TG_TABLE_NAME, 'row ' || TG_OP);
  RETURN NULL;
END $$;
ALTER FUNCTION public.tutorial_audit() OWNER TO tsaccess_audit;
CREATE TRIGGER tutorial AFTER INSERT OR UPDATE OR DELETE ON public.t_tutorial
  FOR EACH ROW EXECUTE FUNCTION public.tutorial_audit();
"""

# The floor of any set-based statement audit: the server filling the transition table (and
# nothing else). The per-statement mode adds to it one count(*) and one audit row.
CAPTURE_ONLY = """
CREATE FUNCTION public.capture_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RETURN NULL;
END $$;
CREATE TRIGGER capture_ins AFTER INSERT ON public.t_capture
  REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION public.capture_only();
CREATE TRIGGER capture_upd AFTER UPDATE ON public.t_capture
  REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION public.capture_only();
"""


def _audit_runs(
    conn: Any,
    admin: Any,
    tables: tuple[str, ...],
    runs: int,
    rows: int,
    copy_data: bytes,
) -> dict[str, dict[str, list[float]]]:
    """Seconds per (table, statement kind), interleaved so that drift affects all equally; each
    audited statement's audit row is checked to carry the right row count."""
    results: dict[str, dict[str, list[float]]] = {t: {} for t in tables}
    for op in ("INSERT", "UPDATE", "COPY"):
        for _ in range(runs):
            for t in tables:
                ident = sql.Identifier(t)
                admin.execute(sql.SQL("TRUNCATE {}").format(ident))
                admin.execute("TRUNCATE activity_audit, tsaccess_audit.t_row")
                if op == "UPDATE":
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (time, sensor_id, temperature) SELECT"
                            " '2026-01-01'::timestamptz + i * interval '1 second', 's' || (i %% 50),"
                            " 20 FROM generate_series(1, %s) i"
                        ).format(ident),
                        (rows,),
                    )
                    conn.commit()
                    admin.execute("TRUNCATE activity_audit, tsaccess_audit.t_row")
                # same starting state for every table: no dead rows, no dirty buffers
                admin.execute(sql.SQL("VACUUM ANALYZE {}").format(ident))
                admin.execute("CHECKPOINT")
                t0 = time.perf_counter()
                if op == "INSERT":
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (time, sensor_id, temperature, humidity, location,"
                            " department) SELECT '2026-01-01'::timestamptz + i * interval '1 second',"
                            " 's' || (i %% 50), 20 + (i %% 10), 40, 'A', 'Eng'"
                            " FROM generate_series(1, %s) i"
                        ).format(ident),
                        (rows,),
                    )
                elif op == "UPDATE":
                    conn.execute(
                        sql.SQL("UPDATE {} SET temperature = temperature + 1").format(ident)
                    )
                else:
                    with conn.cursor().copy(
                        sql.SQL(
                            "COPY {} (time, sensor_id, temperature, humidity, location,"
                            " department) FROM STDIN"
                        ).format(ident)
                    ) as cp:
                        cp.write(copy_data)
                conn.commit()
                results[t].setdefault(op, []).append(time.perf_counter() - t0)
                if t in ("t_stmt", "t_row"):
                    recorded = admin.execute(
                        "SELECT row_count, (SELECT count(*) FROM tsaccess_audit.t_row)"
                        " FROM activity_audit"
                    ).fetchall()
                    want = [(rows, rows if t == "t_row" else 0)]
                    if recorded != want:
                        raise AssertionError(f"{op} on {t}: audit recorded {recorded}, not {want}")
    return results


def _report_ratios(
    results: dict[str, dict[str, list[float]]],
    suffix: str,
    labels: tuple[tuple[str, str], ...],
) -> None:
    """Median per statement kind for the unaudited table, then each table's ratio to it."""
    for op in ("INSERT", "UPDATE", "COPY"):
        base = statistics.median(results["t_none"][op])
        report(f"{op}: no audit{suffix}", base * 1000, "ms")
        for t, label in labels:
            med = statistics.median(results[t][op])
            report(f"{op}: {label}{suffix}", med * 1000, "ms", f"{med / base:.3f}x")
            RESULTS[f"ratio {op} {t}{suffix}"] = med / base


def bench_audit(info: ServerInfo, quick: bool) -> None:
    print("\n[audit: 100,000-row batches, median of runs; ratio = audited / no audit]")
    db = create_db(info, "bench_audit")
    policy = parse_policy(AUDIT_POLICY)
    pw = resolve_passwords(["ingest"], generate=True, environ={})
    with tsaccess.connect(**db.params()) as admin:
        apply(admin, policy, passwords=pw)
        admin.execute(TUTORIAL_TRIGGER)
        admin.execute(CAPTURE_ONLY)
        # each timed statement starts after an explicit VACUUM; autovacuum waking up during a
        # run (on 2 cores) would only add noise
        names = ("t_none", "t_stmt", "t_row", "t_capture", "t_tutorial", "activity_audit")
        for t in (*names, "tsaccess_audit.t_row"):
            admin.execute(
                sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(
                    sql.Identifier(*t.split("."))
                )
            )
        admin.commit()
    rows = 100_000
    runs = 3 if quick else 11
    copy_data = "".join(
        f"2026-01-01 00:00:{i % 60:02d}+00\ts{i % 50}\t20.5\t40\tA\tEng\n" for i in range(rows)
    ).encode()
    user = db.params(user="ingest", password=pw["ingest"].reveal())
    with (
        tsaccess.connect(**user) as conn,
        tsaccess.connect(**db.params(), autocommit=True) as admin,
    ):
        results = _audit_runs(
            conn,
            admin,
            ("t_none", "t_stmt", "t_row", "t_capture", "t_tutorial"),
            runs,
            rows,
            copy_data,
        )
        # The transition table is sized by the writer's work_mem when the statement starts; at
        # the default 4MB a 100,000-row statement spills it to a temporary file.
        conn.execute("SET work_mem = '64MB'")
        conn.commit()
        roomy = _audit_runs(conn, admin, ("t_none", "t_stmt", "t_capture"), runs, rows, copy_data)
    _report_ratios(
        results,
        "",
        (
            ("t_stmt", "per-statement audit"),
            ("t_row", "per-row audit (typed rows)"),
            ("t_capture", "reference: transition table capture only"),
            ("t_tutorial", "reference: tutorial row trigger (made to work)"),
        ),
    )
    print("\n  writer session with work_mem = 64MB (the transition table stays in memory):")
    _report_ratios(
        roomy,
        " work_mem=64MB",
        (("t_stmt", "per-statement audit"), ("t_capture", "reference: capture only")),
    )
    print("  (every audited run was checked: one audit row with row_count 100000, and 100000")
    print("   changed rows for per-row audit)")
