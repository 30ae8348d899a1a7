"""New chunks, attacked by name as every user of examples/timescale.toml (issues 21 and 27).

Whatever made a chunk — INSERT, COPY, MERGE, a backfill of hundreds at once, compression (an
UPDATE cannot move a row into another chunk: TimescaleDB refuses it) —
no policy user can use it by name with more than the policy allows once it is visible: SELECT
for the readers of its hypertable that see every row, nothing for the sliced ones (carol), no
write for anyone. The chunk trigger has no time window and cannot be talked out of its work.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers import Company, apply_company
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import load_policy

pytestmark = pytest.mark.timescaledb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "timescale.toml"
WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


@pytest.fixture
def ts(db):
    return apply_company(db, load_policy(EXAMPLE))


def _relations(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(relation, policy table) for every chunk, compressed chunk and compressed hypertable."""
    return conn.execute(
        "SELECT format('%I.%I', c.schema_name, c.table_name), h.table_name"
        " FROM _timescaledb_catalog.hypertable h"
        " JOIN _timescaledb_catalog.hypertable x ON x.id = h.id OR x.id = h.compressed_hypertable_id"
        " JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = x.id"
        " WHERE h.schema_name = 'public' AND h.table_name IN ('sensor_readings', 'financial_metrics')"
        " UNION ALL SELECT format('%I.%I', x.schema_name, x.table_name), h.table_name"
        " FROM _timescaledb_catalog.hypertable h"
        " JOIN _timescaledb_catalog.hypertable x ON x.id = h.compressed_hypertable_id"
        " WHERE h.schema_name = 'public'"
    ).fetchall()


def _leaks(company: Company) -> list[tuple[str, str, str]]:
    """(user, relation, privilege) the catalog grants beyond the policy, on every chunk."""
    p = company.policy
    with company.db.admin() as conn:
        rels = _relations(conn)
        users = [u.name for u in p.users]
        rows = conn.execute(
            "SELECT u, r, priv FROM unnest(%s::text[]) u, unnest(%s::text[]) r,"
            " unnest(%s::text[]) priv WHERE has_table_privilege(u, r, priv)",
            (users, [r for r, _ in rels], ["SELECT", *WRITES]),
        ).fetchall()
    parent = dict(rels)
    leaks = []
    for user, rel, priv in rows:
        table = parent[rel]
        sliced = any(
            (role := p.role(r)) is not None and role.slice_of(table) is not None
            for r in p.roles_of(user)
        )
        allowed = (
            priv == "SELECT"
            and not sliced
            and "SELECT" in p.expected_privileges(user).get(table, ())
        )
        if not allowed:
            leaks.append((user, rel, priv))
    return leaks


def _try_all(company: Company, user: str, rels: list[str]) -> list[str]:
    """The chunks ``user`` could write (or, sliced, read) by name: tried, rolled back."""
    got = []
    with company.connect(user) as conn:
        for rel in rels:
            for stmt in ("DELETE FROM {} WHERE false", "TRUNCATE {}"):
                try:
                    conn.execute(sql.SQL(stmt).format(sql.SQL(rel)))
                    got.append(f"{stmt.split()[0]} {rel}")
                except psycopg.errors.InsufficientPrivilege:
                    pass
                except psycopg.Error as exc:  # refused before any privilege check?
                    if "compressed" not in str(exc):
                        got.append(f"{stmt.split()[0]} {rel}: {exc}")
                conn.rollback()
    return got


def test_chunks_made_by_every_path_are_closed_for_every_user(ts):
    with ts.connect("bob") as bob, ts.connect("david") as david:
        bob.execute(  # a backfill: hundreds of chunks in one statement
            "INSERT INTO sensor_readings (time, sensor_id) SELECT g, 's'"
            " FROM generate_series('2030-01-01'::timestamptz, '2036-01-01', interval '1 week') g"
        )
        bob.commit()
        with bob.cursor() as cur:
            with cur.copy("COPY sensor_readings (time, sensor_id) FROM STDIN") as cp:
                cp.write_row(("2040-01-01 00:00+00", "copy"))
        bob.commit()
        with pytest.raises(psycopg.errors.CheckViolation):  # TimescaleDB moves no row
            bob.execute("UPDATE sensor_readings SET time = '2041-01-01' WHERE time = '2040-01-01'")
        bob.rollback()
        david.execute(
            "INSERT INTO financial_metrics (time, metric_type, department) SELECT g, 'm', d"
            " FROM generate_series(now() - interval '60 days', now(), interval '1 day') g,"
            " unnest(ARRAY['Sales', 'Ops']) d"
        )
        david.commit()
        david.execute(
            "MERGE INTO financial_metrics t USING (VALUES ('2042-01-01'::timestamptz)) s(ts)"
            " ON t.time = s.ts WHEN NOT MATCHED THEN"
            " INSERT (time, metric_type, department) VALUES (s.ts, 'merge', 'Ops')"
        )
        david.commit()
    with ts.db.admin() as conn:  # compressed chunks (made by the owner's compression)
        n = conn.execute(
            "SELECT count(compress_chunk(c)) FROM show_chunks('sensor_readings',"
            " newer_than => '2029-12-01'::timestamptz) c"
        ).fetchone()[0]
        conn.commit()
        assert n > 300
        assert not plan(conn, ts.policy)  # nothing for apply to repair: closed at birth
    assert _leaks(ts) == []
    with ts.db.admin() as conn:
        rels = [r for r, _ in _relations(conn)]
    sample = sorted(rels)[-6:] + [r for r in rels if "compress" in r][:3]
    for user in ("bob", "david"):
        assert _try_all(ts, user, sample) == []
    with ts.db.admin() as conn:
        fin = [r for r, t in _relations(conn) if t == "financial_metrics"]
    with ts.connect("carol") as conn:
        assert conn.execute("SELECT DISTINCT department FROM financial_metrics").fetchall() == [
            ("Sales",)
        ]
        for rel in fin:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT department FROM {}").format(sql.SQL(rel)))
            conn.rollback()


def test_the_chunk_trigger_cannot_be_talked_out_of_its_work(ts):
    """A forged mark makes the writer's own statement fail; calling the fixer closes chunks and
    nothing else; a transaction that made a chunk long after it began is covered."""
    with ts.connect("bob") as conn:
        conn.execute("SELECT set_config('tsaccess.chunk_mark', 'on', false)")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="currval"):
            conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES ('2050-01-01', 'x')")
        conn.rollback()
        conn.execute("RESET tsaccess.chunk_mark")
        assert conn.execute("SELECT public.tsaccess_chunk_fix()").fetchone() == (True,)
        conn.commit()
    with ts.connect("alice") as conn:  # a reader makes no chunk: no business with the fixer
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT public.tsaccess_chunk_fix()")
    with ts.connect("bob") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT setval('public.tsaccess_chunk_mark', 1000000)")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE public.tsaccess_chunk_state SET chunk_id = 1000000")
        conn.rollback()
        conn.execute("SELECT 1")
        for year in (2051, 2052):  # two new chunks in one transaction, the second much later
            conn.execute(
                "INSERT INTO sensor_readings (time, sensor_id) VALUES (%s, 'x')",
                (f"{year}-01-01",),
            )
        conn.commit()
    assert _leaks(ts) == []


def test_a_chunk_made_without_a_write_is_closed_by_the_next_fix_and_by_apply(ts):
    """A superuser's create_chunk (the only caller left) fires no trigger: the next statement
    that makes a chunk, in any session, closes it, and so does apply; verify and plan show it
    meanwhile."""
    with ts.db.admin() as conn:
        conn.execute(
            "SELECT _timescaledb_functions.create_chunk('financial_metrics',"
            " jsonb_build_object('time', ARRAY[_timescaledb_functions.to_unix_microseconds("
            "'2060-01-01'), _timescaledb_functions.to_unix_microseconds('2060-01-08')]))"
        )
        conn.commit()
        assert _leaks(ts)  # the hypertable's ACL, sliced and writers' privileges included
        assert "on chunk" in plan(conn, ts.policy).summary()
        conn.rollback()
    with ts.connect("bob") as conn:  # any session's next chunk closes every new chunk
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES ('2061-01-01', 'x')")
        conn.commit()
    assert _leaks(ts) == []
    with ts.db.admin() as conn:
        conn.execute(
            "SELECT _timescaledb_functions.create_chunk('financial_metrics',"
            " jsonb_build_object('time', ARRAY[_timescaledb_functions.to_unix_microseconds("
            "'2062-01-01'), _timescaledb_functions.to_unix_microseconds('2062-01-08')]))"
        )
        conn.commit()
        apply(conn, ts.policy, passwords=ts.passwords)
        assert not plan(conn, ts.policy)
    assert _leaks(ts) == []


def test_retention_with_a_frozen_chunk_drops_and_audits_the_others_and_reports_it(ts):
    """A frozen chunk (drop_chunks skips it silently) no longer wedges the job: the others are
    dropped and recorded, the frozen one is recorded as kept, and the job succeeds."""
    with ts.db.admin() as conn:
        # the scheduler must not run this database's jobs meanwhile (a concurrent compression or
        # retention run deadlocks with the one called here): unschedule them, wait for workers
        conn.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
            " WHERE job_id >= 1000"
        )
        conn.commit()
        for _ in range(300):
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type LIKE 'TimescaleDB Background Worker%'"
                " AND backend_type NOT LIKE '%Scheduler%'"
            ).fetchone()
            conn.commit()
            if busy == (0,):
                break
            time.sleep(0.1)
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) SELECT t, 's' FROM unnest(ARRAY["
            " now() - interval '600 days', now() - interval '500 days', now() - interval"
            " '420 days', now() - interval '1 day']) t"
        )
        conn.commit()
        old = [
            r[0]
            for r in conn.execute(
                "SELECT format('%I.%I', chunk_schema, chunk_name) FROM"
                " timescaledb_information.chunks WHERE hypertable_name = 'sensor_readings'"
                " AND range_end <= now() - interval '365 days' ORDER BY range_start"
            )
        ]
        assert len(old) == 3
        conn.execute("SELECT _timescaledb_functions.freeze_chunk(%s)", (old[1],))
        (job,) = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'tsaccess_retention'"
        ).fetchone()
        conn.commit()
        conn.autocommit = True
        conn.execute("CALL run_job(%s)", (job,))
        left = {
            r[0]
            for r in conn.execute(
                "SELECT format('%I.%I', chunk_schema, chunk_name) FROM"
                " timescaledb_information.chunks WHERE hypertable_name = 'sensor_readings'"
            )
        }
        rows = conn.execute(
            "SELECT operation, description, row_count FROM activity_audit"
            " WHERE operation IN ('DROP CHUNK', 'KEEP CHUNK') ORDER BY id"
        ).fetchall()
        conn.execute("CALL run_job(%s)", (job,))  # and again: still no wedge
    assert old[1] in left and not {old[0], old[2]} & left
    assert sorted((op, n) for op, _, n in rows) == [
        ("DROP CHUNK", 1),
        ("DROP CHUNK", 1),
        ("KEEP CHUNK", 1),
    ]
    kept = next(d for op, d, _ in rows if op == "KEEP CHUNK")
    assert old[1] in kept and "frozen" in kept and f"retention job {job}" in kept


def _estimates(company: Company, user: str, values: list[str]) -> list[int]:
    with company.connect(user) as conn:
        return [
            conn.execute(
                "EXPLAIN (FORMAT JSON) SELECT * FROM financial_metrics WHERE metric_type = %s",
                (v,),
            ).fetchone()[0][0]["Plan"]["Plan Rows"]
            for v in values
        ]


def test_without_statistics_estimates_tell_carol_nothing_outside_her_slice(db):
    """Leakproof operators use statistics under row-level security: with them, carol's EXPLAIN
    tells a value only Ops has from one nobody has; with ``statistics = false``, it cannot."""
    import dataclasses

    policy = load_policy(EXAMPLE)
    assert policy.table("financial_metrics").statistics is False
    leaky = dataclasses.replace(
        policy,
        tables=tuple(
            dataclasses.replace(t, statistics=True) if t.name == "financial_metrics" else t
            for t in policy.tables
        ),
    )
    company = apply_company(db, leaky)
    with db.admin() as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, department)"
            " SELECT now() - (g % 20) * interval '1 day', CASE WHEN g % 50 = 0 THEN 'ops_secret'"
            " ELSE 'revenue' END, CASE WHEN g % 50 = 0 THEN 'Ops' ELSE 'Sales' END"
            " FROM generate_series(1, 20000) g"
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE financial_metrics")
        conn.autocommit = False
    secret, nothing = _estimates(company, "carol", ["ops_secret", "no_such_metric"])
    assert secret > 5 * nothing  # the leak, measured
    with db.admin() as conn:
        summary = plan(conn, policy.with_database(db.name)).summary(verbose=True)
        conn.rollback()
        assert "no planner statistics on financial_metrics" in summary
        apply(conn, policy.with_database(db.name), passwords=company.passwords)
        conn.autocommit = True
        conn.execute("ANALYZE financial_metrics")  # gathers nothing any more
        stats = conn.execute(
            "SELECT count(*) FROM pg_stats WHERE tablename = 'financial_metrics'"
            " OR tablename IN (SELECT chunk_name FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'financial_metrics')"
        ).fetchone()[0]
    assert stats == 0
    secret, nothing = _estimates(company, "carol", ["ops_secret", "no_such_metric"])
    assert secret == nothing


def test_no_policy_user_creates_a_relation_by_any_path(ts):
    """Every path to a new relation, as every user: refused (create_chunk made one as the
    hypertable owner, in any schema the owner may create in, for anyone with INSERT)."""
    paths = [
        "SELECT _timescaledb_functions.create_chunk('sensor_readings', jsonb_build_object("
        "'time', ARRAY[0, 604800000000]), 'public', 'squat')",
        "SELECT _timescaledb_internal.create_chunk('sensor_readings', jsonb_build_object("
        "'time', ARRAY[0, 604800000000]), 'public', 'squat')",
        "CREATE TABLE public.squat (x int)",
        "CREATE TABLE _timescaledb_internal.squat (x int)",
        "CREATE TABLE tsaccess_audit.squat (x int)",
        "SELECT 1 AS x INTO public.squat",
        "CREATE TEMP TABLE squat (x int)",
        "CREATE VIEW public.squat AS SELECT 1",
        "CREATE SEQUENCE public.squat",
        "CREATE SCHEMA squat",
        "CREATE INDEX squat ON sensor_readings (temperature)",
        "CREATE MATERIALIZED VIEW public.squat WITH (timescaledb.continuous) AS SELECT"
        " time_bucket('1 day', time) b, count(*) FROM sensor_readings GROUP BY 1 WITH NO DATA",
        "ALTER TABLE sensor_readings SET (timescaledb.compress)",
    ]
    with ts.db.admin() as conn:
        before = conn.execute("SELECT count(*) FROM pg_class").fetchone()[0]
    for user in (u.name for u in ts.policy.users):
        with ts.connect(user) as conn:
            for stmt in paths:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(stmt)
                conn.rollback()
    with ts.db.admin() as conn:
        assert conn.execute("SELECT count(*) FROM pg_class").fetchone()[0] == before
