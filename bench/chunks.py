"""A single-row INSERT into an existing chunk as the chunk count grows (issue 27, point 1).

Three hypertables with the same columns, written by the same login user over TLS:

* ``t_base``: no tsaccess object at all (created outside the policy): the baseline;
* ``t_gate``: a policy table with audit off, so only tsaccess's chunk trigger runs;
* ``t_window``: the chunk trigger tsaccess shipped before (it revisited every chunk made in the
  last five minutes, with ``aclexplode`` per chunk, on every statement), for comparison.

States, each measured interleaved (round by round, table by table): a few chunks; 3,000 more
chunks just made by a backfill (another session); the same, in the session that made them (its
statistics still show the chunk rows it inserted: the gate's second comparison); the same chunks
a day old (their creation time moved back a day). Reported: milliseconds per INSERT, each table's
ratio to ``t_base`` in the same state, and ``t_gate``'s ratio to its own few-chunk figure.
"""

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

COLUMNS = {"time": "timestamptz not null", "sensor_id": "text not null", "v": "integer"}
TABLES = ("t_base", "t_gate", "t_window")
BUDGET = 1.5
"""Seconds per table and round at most (the old trigger takes ~35 ms per INSERT at 3,000 new
chunks): at least 5 INSERTs each."""

POLICY = {
    "database": {"name": "bench_chunks", "timescaledb": "require"},
    "audit": {"default_mode": "off"},
    "tables": {
        t: {
            "time_column": "time",
            "hypertable": True,
            "chunk_interval": "1 day",
            "columns": COLUMNS,
        }
        for t in ("t_gate", "t_window")
    },
    "roles": {"writers": {"grants": {t: ["SELECT", "INSERT"] for t in ("t_gate", "t_window")}}},
    "users": {"ingest": {"roles": ["writers"]}},
}

# The trigger tsaccess shipped before issue 27 (slices.py at f1a0cde), for comparison.
WINDOW_BODY = """
DECLARE ch regclass; sliced text; writers text;
BEGIN
  FOR ch, sliced, writers IN
    SELECT x.ch, x.sliced, x.writers FROM (
      SELECT k.oid::regclass AS ch,
        (SELECT pg_catalog.string_agg(DISTINCT pg_catalog.quote_ident(g.rolname), ', ')
         FROM pg_catalog.aclexplode(k.relacl) a JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
         WHERE g.rolname = ANY (TG_ARGV)) AS sliced,
        (SELECT pg_catalog.string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, ', ')
         FROM pg_catalog.aclexplode(k.relacl) a
         WHERE a.grantee <> k.relowner AND a.privilege_type <> 'SELECT') AS writers
      FROM _timescaledb_catalog.hypertable h
      JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = h.id
      JOIN pg_catalog.pg_class k
        ON k.oid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', c.schema_name, c.table_name))
      WHERE h.schema_name = TG_TABLE_SCHEMA AND h.table_name = TG_TABLE_NAME
        AND c.creation_time >= pg_catalog.transaction_timestamp() - interval '5 minutes'
    ) x WHERE x.sliced IS NOT NULL OR x.writers IS NOT NULL
  LOOP
    IF sliced IS NOT NULL THEN
      EXECUTE pg_catalog.format('REVOKE ALL ON TABLE %s FROM %s', ch, sliced);
    END IF;
    IF writers IS NOT NULL THEN
      EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'
                                ' ON TABLE %s FROM %s', ch, writers);
    END IF;
  END LOOP;
  RETURN NULL;
END
"""


def _setup(admin: Any) -> None:
    admin.execute(
        "CREATE TABLE public.t_base (time timestamptz NOT NULL, sensor_id text NOT NULL, v int)"
    )
    admin.execute("SELECT create_hypertable('public.t_base', by_range('time', interval '1 day'))")
    admin.execute("GRANT SELECT, INSERT ON public.t_base TO writers")
    admin.execute(
        sql.SQL(
            "CREATE FUNCTION public.tsaccess_window_acl() RETURNS trigger LANGUAGE plpgsql"
            " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {}"
        ).format(sql.Literal(WINDOW_BODY))
    )
    for name in [
        r[0]
        for r in admin.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.t_window'::regclass"
            " AND tgname LIKE 'tsaccess_chunk_acl_%'"
        )
    ]:
        admin.execute(sql.SQL("DROP TRIGGER {} ON public.t_window").format(sql.Identifier(name)))
    admin.execute(
        "CREATE TRIGGER window_acl AFTER INSERT OR UPDATE ON public.t_window"
        " FOR EACH STATEMENT EXECUTE FUNCTION public.tsaccess_window_acl()"
    )
    for t in TABLES:  # a few chunks (the last few days)
        admin.execute(
            sql.SQL(
                "INSERT INTO {} SELECT g, 's', 1 FROM generate_series(now() - interval '4 days',"
                " now(), interval '1 hour') g"
            ).format(sql.Identifier(t))
        )
    admin.commit()


def _backfill(conn: Any, chunks: int) -> None:
    """``chunks`` new daily chunks per table, in the past (one statement per table)."""
    for t in TABLES:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT now() - interval '10 days' - g * interval '1 day', 'b', 1"
                " FROM generate_series(1, %s) g"
            ).format(sql.Identifier(t)),
            (chunks,),
        )
        conn.commit()


def _rounds(conn: Any, inserts: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per single-row INSERT into today's chunk (one transaction per table and round),
    per table, interleaved by round."""
    out: dict[str, list[float]] = {t: [] for t in TABLES}
    stmts = {
        t: sql.SQL("INSERT INTO {} (time, sensor_id, v) VALUES (now(), 'x', 1)").format(
            sql.Identifier(t)
        )
        for t in TABLES
    }
    for _ in range(rounds):
        for t in TABLES:
            n = 0
            t0 = time.perf_counter()
            while n < inserts and (n < 5 or time.perf_counter() - t0 < BUDGET):
                conn.execute(stmts[t])
                n += 1
            conn.commit()
            out[t].append((time.perf_counter() - t0) / n)
    return out


def _report(state: str, res: dict[str, list[float]], few: dict[str, float]) -> None:
    base = statistics.median(res["t_base"])
    report(f"INSERT 1 row, {state}: no tsaccess", base * 1000, "ms")
    for t, label in (("t_gate", "chunk trigger"), ("t_window", "5-minute trigger (before)")):
        med = statistics.median(res[t])
        spread = (max(res[t]) - min(res[t])) * 1000
        note = f"{med / base:.2f}x of no tsaccess, spread {spread:.3f} ms"
        if t in few:
            note += f"; {med / few[t]:.2f}x of its few-chunk figure"
        report(f"INSERT 1 row, {state}: {label}", med * 1000, "ms", note)
        RESULTS[f"chunks ratio {t} {state}"] = med / base
        if t in few:
            RESULTS[f"chunks growth {t} {state}"] = med / few[t]


def bench_chunks(info: ServerInfo, quick: bool) -> None:
    if not info.timescaledb:
        print("\n[chunks: skipped, no TimescaleDB]")
        return
    chunks = 1000 if quick else 3000
    inserts, rounds = (100, 3) if quick else (300, 7)
    print(
        f"\n[chunks: single-row INSERT into an existing chunk, {inserts} per round, median of"
        f" {rounds} rounds; {chunks} chunks backfilled]"
    )
    db = create_db(info, "bench_chunks")
    pw = resolve_passwords(["ingest"], generate=True, environ={})
    with tsaccess.connect(**db.params()) as admin:
        apply(admin, parse_policy(POLICY), passwords=pw)
        _setup(admin)
    user = db.params(user="ingest", password=pw["ingest"].reveal())
    with tsaccess.connect(**user) as conn, tsaccess.connect(**user) as backfiller:
        few_res = _rounds(conn, inserts, rounds)
        few = {t: statistics.median(v) for t, v in few_res.items()}
        _report("a few chunks", few_res, {})
        t0 = time.perf_counter()
        _backfill(backfiller, chunks)
        report(f"backfill of {chunks} chunks x 3 tables", time.perf_counter() - t0, "s")
        _report(f"+{chunks} chunks just made", _rounds(conn, inserts, rounds), few)
        _report(f"+{chunks} just made, same session", _rounds(backfiller, inserts, rounds), few)
        with tsaccess.connect(**db.params(), autocommit=True) as admin:
            admin.execute(
                "UPDATE _timescaledb_catalog.chunk SET creation_time = creation_time"
                " - interval '1 day'"
            )
        _report(f"+{chunks} chunks a day old", _rounds(conn, inserts, rounds), few)
