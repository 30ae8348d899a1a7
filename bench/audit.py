"""Audited writes against the same writes into the same hypertable with no tsaccess objects.

Issue 27's rows: 100,000 single-row INSERTs sent with ``executemany`` (one transaction),
1,000 single-row autocommit transactions, and the bulk statements (``INSERT ... SELECT``,
``COPY``, ``UPDATE`` of 100,000 rows), each into

* ``t_raw``: a hypertable made by hand, no tsaccess object at all (the baseline);
* ``t_off``: a policy table with ``audit = "off"`` (only the chunk ACL trigger);
* ``t_stmt``, ``t_row``: per-statement and per-row audit;
* ``t_floor``: a reference, the floor of any per-statement audit that counts rows: a
  ``SECURITY DEFINER`` statement trigger that only counts its transition table and writes
  nothing;
* ``t_tutorial``: the tutorial's per-row trigger (made to work), a reference.

The policy tables use the compiled trigger functions when the server has ``tsaccess_native``
(``nox -s bench`` installs it where it can); ``pl:t_off``, ``pl:t_stmt``, ``pl:t_row`` are the
same tables in a second database whose policy says ``native = "off"`` (the PL/pgSQL functions),
measured in the same rounds.

One run: every round runs every table once (order alternating), from the same state (table
emptied, its chunk and the audit tables' chunks already there, ``VACUUM ANALYZE``,
``CHECKPOINT``), as the policy user ``ingest`` on a fresh connection. Reported per statement
kind: the median of the rounds, their spread, the ratio of medians to ``t_raw`` and the spread
of the per-round ratios; where the server's process is visible, its CPU time too (less noisy
on a shared machine). Every audited run is checked: one audit row per statement with its row
count, and the changed rows in per-row mode.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

import tsaccess
from bench.common import RESULTS, create_db, ratio_spread, report, spread
from tsaccess.ephemeral import ServerInfo
from tsaccess.passwords import resolve_passwords
from tsaccess.plan.compose import apply
from tsaccess.policy import parse_policy

COLUMNS = {
    "time": "timestamptz not null",
    "sensor_id": "text not null",
    "temperature": "numeric(5,2)",
    "humidity": "integer",
    "location": "text",
    "department": "text",
}
COLS = sql.SQL("(time, sensor_id, temperature, humidity, location, department)")
MODES = {
    "t_off": "off",
    "t_stmt": "statement",
    "t_row": "row",
    "t_floor": "off",
    "t_tutorial": "off",
}
PL_TABLES = ("t_off", "t_stmt", "t_row")
TABLES = ("t_raw", *MODES, *(f"pl:{t}" for t in PL_TABLES))
LABELS = {
    "t_raw": "no tsaccess objects (baseline)",
    "t_off": "tsaccess, audit off (chunk ACL trigger only)",
    "t_stmt": "tsaccess per-statement audit",
    "t_row": "tsaccess per-row audit",
    "t_floor": "reference: a statement trigger that only counts its rows",
    "t_tutorial": "reference: the tutorial's row trigger (made to work)",
    "pl:t_off": "tsaccess, audit off, PL/pgSQL functions",
    "pl:t_stmt": "tsaccess per-statement audit, PL/pgSQL functions",
    "pl:t_row": "tsaccess per-row audit, PL/pgSQL functions",
}
AUDIT_POLICY = {
    "database": {"name": "bench_audit", "timescaledb": "prefer"},
    "tables": {
        name: {"time_column": "time", "hypertable": True, "audit": mode, "columns": COLUMNS}
        for name, mode in MODES.items()
    },
    "roles": {"writers": {"grants": {t: ["SELECT", "INSERT", "UPDATE", "DELETE"] for t in MODES}}},
    "users": {"ingest": {"roles": ["writers"]}},
}

RAW_TABLE = """
CREATE TABLE public.t_raw (time timestamptz NOT NULL, sensor_id text NOT NULL,
  temperature numeric(5,2), humidity integer, location text, department text);
SELECT create_hypertable('public.t_raw', by_range('time', INTERVAL '7 days'));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t_raw TO writers;
"""

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

# The floor of any per-statement audit that counts: the trigger, its transition table, one
# count (as the audit functions do: SECURITY DEFINER, no pinned search_path), no write.
FLOOR_TRIGGER = """
CREATE FUNCTION public.floor_count() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
  n pg_catalog.int8;
BEGIN
  SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM floor_rows LIMIT 1000) s;
  RETURN NULL;
END $$;
ALTER FUNCTION public.floor_count() OWNER TO tsaccess_audit;
CREATE TRIGGER floor_ins AFTER INSERT ON public.t_floor REFERENCING NEW TABLE AS floor_rows
  FOR EACH STATEMENT EXECUTE FUNCTION public.floor_count();
CREATE TRIGGER floor_upd AFTER UPDATE ON public.t_floor REFERENCING NEW TABLE AS floor_rows
  FOR EACH STATEMENT EXECUTE FUNCTION public.floor_count();
"""

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _rows(n: int) -> list[tuple[Any, ...]]:
    return [
        (START + dt.timedelta(seconds=i), f"s{i % 50}", 20 + i % 10, 40, "A", "Eng")
        for i in range(n)
    ]


class Op:
    """One kind of write: what it sends, how many statements and rows per statement."""

    def __init__(
        self,
        label: str,
        run: Callable[[psycopg.Connection[Any], sql.Identifier], None],
        statements: int,
        per_statement: int,
        preload: int = 0,
    ) -> None:
        self.label, self.run = label, run
        self.statements, self.per_statement, self.preload = statements, per_statement, preload


def _ops(quick: bool) -> list[Op]:
    n_em = 10_000 if quick else 100_000
    n_ac = 300 if quick else 1_000
    n_bulk = 20_000 if quick else 100_000
    em_rows, ac_rows = _rows(n_em), _rows(n_ac)
    copy_data = "".join(
        f"{r[0].isoformat()}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]}\t{r[5]}\n" for r in _rows(n_bulk)
    ).encode()

    def insert(t: sql.Identifier) -> sql.Composed:
        return sql.SQL("INSERT INTO {} {} VALUES (%s, %s, %s, %s, %s, %s)").format(t, COLS)

    def executemany(conn: psycopg.Connection[Any], t: sql.Identifier) -> None:
        with conn.cursor() as cur:
            cur.executemany(insert(t), em_rows)
        conn.commit()

    def autocommit(conn: psycopg.Connection[Any], t: sql.Identifier) -> None:
        conn.autocommit = True
        q = insert(t)
        for r in ac_rows:
            conn.execute(q, r)

    def insert_select(conn: psycopg.Connection[Any], t: sql.Identifier) -> None:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} {} SELECT '2026-01-01'::timestamptz + i * interval '1 second',"
                " 's' || (i %% 50), 20 + (i %% 10), 40, 'A', 'Eng' FROM generate_series(1, %s) i"
            ).format(t, COLS),
            (n_bulk,),
        )
        conn.commit()

    def copy(conn: psycopg.Connection[Any], t: sql.Identifier) -> None:
        with conn.cursor().copy(sql.SQL("COPY {} {} FROM STDIN").format(t, COLS)) as cp:
            cp.write(copy_data)
        conn.commit()

    def update(conn: psycopg.Connection[Any], t: sql.Identifier) -> None:
        conn.execute(sql.SQL("UPDATE {} SET temperature = temperature + 1").format(t))
        conn.commit()

    return [
        Op(f"{n_em:,} single-row INSERTs, executemany, one transaction", executemany, n_em, 1),
        Op(f"{n_ac:,} single-row INSERTs, each its own transaction", autocommit, n_ac, 1),
        Op(f"INSERT ... SELECT of {n_bulk:,} rows", insert_select, 1, n_bulk),
        Op(f"COPY of {n_bulk:,} rows", copy, 1, n_bulk),
        Op(f"UPDATE of {n_bulk:,} rows", update, 1, n_bulk, preload=n_bulk),
    ]


def _prepare(admin: psycopg.Connection[Any], table: str, preload: int) -> None:
    """The same starting state for every run: the table empty but for its chunk (a row at the
    start time, made by the admin), the audit tables' current chunks there, no dead rows."""
    t = sql.Identifier(table)
    admin.execute(sql.SQL("TRUNCATE {}").format(t))
    admin.execute("TRUNCATE activity_audit, tsaccess_audit.t_row")
    if preload:
        admin.execute(
            sql.SQL(
                "INSERT INTO {} {} SELECT '2026-01-01'::timestamptz + i * interval '1 second',"
                " 's' || (i %% 50), 20, 40, 'A', 'Eng' FROM generate_series(1, %s) i"
            ).format(t, COLS),
            (preload,),
        )
    else:
        admin.execute(
            sql.SQL("INSERT INTO {} {} VALUES ('2026-01-01', 'x', 1, 1, 'A', 'Eng')").format(
                t, COLS
            )
        )
        admin.execute(sql.SQL("DELETE FROM {}").format(t))
    # the audit tables' chunks for now() exist, so no run makes one
    admin.execute(
        "INSERT INTO activity_audit (username, operation, table_name) VALUES ('x', 'SETUP', 'x')"
    )
    admin.execute("INSERT INTO tsaccess_audit.t_row (audit_id, event_time) VALUES (0, now())")
    admin.execute("DELETE FROM activity_audit")
    admin.execute("DELETE FROM tsaccess_audit.t_row")
    admin.execute(sql.SQL("VACUUM ANALYZE {}").format(t))
    admin.execute("VACUUM activity_audit, tsaccess_audit.t_row")
    admin.execute("CHECKPOINT")


def _check(admin: psycopg.Connection[Any], table: str, op: Op) -> None:
    """The audit recorded every statement with its row count (and every row, per row)."""
    table = table.removeprefix("pl:")
    if table not in ("t_stmt", "t_row"):
        return
    got = admin.execute(
        "SELECT count(*), coalesce(sum(row_count), 0) FROM activity_audit WHERE table_name = %s",
        (table,),
    ).fetchone()
    want = (op.statements, op.statements * op.per_statement)
    if tuple(got or ()) != want:
        raise AssertionError(f"{op.label} on {table}: audit rows, rows {got}, not {want}")
    if table == "t_row":
        n = admin.execute("SELECT count(*) FROM tsaccess_audit.t_row").fetchone()
        if n != (want[1],):
            raise AssertionError(f"{op.label}: {n} changed rows recorded, not {want[1]}")


def _cpu_seconds(pid: int) -> float | None:
    """CPU time of the server process ``pid``, when it runs on this machine."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except OSError:
        return None


Target = tuple[psycopg.Connection[Any], dict[str, Any]]
"""A database's administrator connection and its writer's connection parameters."""


def _runs(
    targets: dict[str, Target], op: Op, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    wall: dict[str, list[float]] = {t: [] for t in TABLES}
    cpu: dict[str, list[float]] = {t: [] for t in TABLES}
    for r in range(rounds):
        for key in TABLES if r % 2 == 0 else TABLES[::-1]:
            admin, user = targets["pl" if key.startswith("pl:") else ""]
            table = key.removeprefix("pl:")
            _prepare(admin, table, op.preload)
            with tsaccess.connect(**user) as conn:
                pid = conn.info.backend_pid
                c0, t0 = _cpu_seconds(pid), time.perf_counter()
                op.run(conn, sql.Identifier(table))
                t1, c1 = time.perf_counter(), _cpu_seconds(pid)
            wall[key].append(t1 - t0)
            if c0 is not None and c1 is not None:
                cpu[key].append(c1 - c0)
            _check(admin, table, op)
    return wall, cpu


def _report(op: Op, wall: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
    print(f"\n  {op.label}:")
    base = wall["t_raw"]
    for table in TABLES:
        ratio, rounds = ratio_spread(wall[table], base)
        note = f"{ratio:.2f}x ({rounds}) {spread(wall[table], 1000)}"
        if cpu[table] and len(cpu[table]) == len(wall[table]):
            cpu_ratio, _ = ratio_spread(cpu[table], cpu["t_raw"])
            note += f"; server CPU {cpu_ratio:.2f}x"
            RESULTS[f"audit cpu ratio {op.label} {table}"] = cpu_ratio
        report(f"    {LABELS[table]}", statistics.median(wall[table]) * 1000, "ms", note)
        RESULTS[f"audit ratio {op.label} {table}"] = ratio
        RESULTS[f"audit ms {op.label} {table}"] = [w * 1000 for w in wall[table]]


def _pl_policy() -> dict[str, Any]:
    """The policy of the PL/pgSQL database: the same tables, other role names (roles are the
    cluster's), ``native = "off"``."""
    return {
        "database": {"name": "bench_audit_pl", "timescaledb": "prefer", "native": "off"},
        "tables": {
            t: {"time_column": "time", "hypertable": True, "audit": MODES[t], "columns": COLUMNS}
            for t in PL_TABLES
        },
        "roles": {
            "writers_pl": {
                "grants": {t: ["SELECT", "INSERT", "UPDATE", "DELETE"] for t in PL_TABLES}
            }
        },
        "users": {"ingest_pl": {"roles": ["writers_pl"]}},
    }


def _setup(info: ServerInfo, name: str, raw: dict[str, Any], user: str, extra: bool) -> Target:
    db = create_db(info, name)
    pw = resolve_passwords([user], generate=True, environ={})
    with tsaccess.connect(**db.params()) as admin:
        apply(admin, parse_policy(raw), passwords=pw)
        tables = list(raw["tables"])
        if extra:
            admin.execute(RAW_TABLE)
            admin.execute(TUTORIAL_TRIGGER)
            admin.execute(FLOOR_TRIGGER)
            tables.append("t_raw")
        # each timed run starts after an explicit VACUUM; autovacuum waking up during a run
        # (on 2 cores) would only add noise
        for t in (*tables, "activity_audit", "tsaccess_audit.t_row"):
            admin.execute(
                sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(
                    sql.Identifier(*t.split("."))
                )
            )
        admin.commit()
        lang = admin.execute(
            "SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
            " WHERE p.proname = 'tsaccess_audit_stmt'"
        ).fetchone()
    print(f"  {name}: the audit trigger function is {lang[0] if lang else '?'}")
    admin = tsaccess.connect(**db.params(), autocommit=True)
    return admin, db.params(user=user, password=pw[user].reveal())


def bench_audit(info: ServerInfo, quick: bool) -> None:
    print("\n[audit: the same writes into the same hypertable without tsaccess = 1.00x]")
    targets = {
        "": _setup(info, "bench_audit", AUDIT_POLICY, "ingest", True),
        "pl": _setup(info, "bench_audit_pl", _pl_policy(), "ingest_pl", False),
    }
    # TSACCESS_BENCH_AUDIT_OPS=executemany,autocommit runs only those kinds of write
    wanted = [w for w in os.environ.get("TSACCESS_BENCH_AUDIT_OPS", "").split(",") if w]
    try:
        for op in _ops(quick):
            if wanted and not any(w in op.run.__name__ for w in wanted):
                continue
            # 100,000 statements: 5 rounds (minutes each); the rest 9 (bulk runs are short, noisy)
            rounds = 3 if quick else (5 if op.statements >= 100_000 else 9)
            wall, cpu = _runs(targets, op, rounds)
            _report(op, wall, cpu)
    finally:
        for admin, _ in targets.values():
            admin.close()
    print("  (every audited run was checked: one audit row per statement with its row count,")
    print("   and every changed row in per-row mode)")
