"""New chunks, attacked by name as every user of examples/timescale.toml (issues 21 and 27).

Whatever made a chunk — INSERT, COPY, MERGE, a backfill of hundreds at once, compression (an
UPDATE cannot move a row into another chunk: TimescaleDB refuses it) —
no policy user can use it by name with more than the policy allows once it is visible: SELECT
for the readers of its hypertable that see every row, nothing for the sliced ones (carol), no
write for anyone. The chunk trigger has no time window and cannot be talked out of its work.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import tsaccess
from tests.helpers import Company, apply_company, quiesce_jobs
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import load_policy
from tsaccess.preflight import check, my_access
from tsaccess.verify import verify

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
        quiesce_jobs(conn)
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


def _fin_chunks(conn: psycopg.Connection[Any]) -> list[tuple[str, Any, Any]]:
    """(chunk, range start, range end) of financial_metrics, oldest first."""
    return conn.execute(
        "SELECT format('%I.%I', chunk_schema, chunk_name), range_start, range_end"
        " FROM timescaledb_information.chunks WHERE hypertable_schema = 'public'"
        " AND hypertable_name = 'financial_metrics' ORDER BY range_start"
    ).fetchall()


def _sliced_privileges(conn: psycopg.Connection[Any], rel: str) -> list[str]:
    """What department_managers (carol's role) holds on ``rel``: any table or column privilege."""
    return [
        p
        for (p,) in conn.execute(
            "SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',"
            " 'REFERENCES', 'TRIGGER']) p WHERE has_table_privilege('carol', %s, p)"
            " OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')"
            "     AND has_any_column_privilege('carol', %s, p))",
            (rel, rel),
        )
    ]


def test_chunks_made_without_a_write_give_carol_nothing_from_their_first_moment(ts):
    """A superuser's create_chunk, an owner's split_chunk and merge_chunks make chunks no
    trigger sees: each copies the hypertable's table-level ACL, and carol's SELECT is not in it
    (column privileges, never copied). Her very next statement after each, by name, is refused;
    through the hypertable she reads exactly the Sales rows throughout."""
    with ts.connect("david") as david:  # three departments over a month (closed by the trigger)
        david.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount, department)"
            " SELECT g, 'revenue', 1, d FROM generate_series('2059-12-20'::timestamptz,"
            " '2060-01-20', interval '6 hours') g, unnest(ARRAY['Sales', 'Ops', 'HR']) d"
        )
        david.commit()

    def sales(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT time, metric_type, amount, department FROM financial_metrics"
            " WHERE department = 'Sales' ORDER BY time"
        ).fetchall()

    def carols(carol: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
        rows = carol.execute(
            "SELECT time, metric_type, amount, department FROM financial_metrics ORDER BY time"
        ).fetchall()
        carol.commit()
        return rows

    def refused(carol: psycopg.Connection[Any], rel: str) -> None:
        for q in ("SELECT * FROM {}", "SELECT count(*) FROM {}", "SELECT department FROM {}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                carol.execute(sql.SQL(q).format(sql.SQL(rel)))
            carol.rollback()

    with ts.db.admin() as admin, ts.connect("carol") as carol:
        admin.autocommit = True
        expected = sales(admin)
        assert len(expected) > 100 and carols(carol) == expected
        # 1. create_chunk (a superuser's only), then rows of another department in it
        admin.execute(
            "SELECT _timescaledb_functions.create_chunk('financial_metrics',"
            " jsonb_build_object('time', ARRAY[_timescaledb_functions.to_unix_microseconds("
            "'2070-01-01'), _timescaledb_functions.to_unix_microseconds('2070-01-08')]))"
        )
        made = _fin_chunks(admin)[-1][0]
        refused(carol, made)  # carol's next statement: no one else's came between
        with ts.db.admin() as other:  # an INSERT into an existing chunk runs no fixer
            other.execute(
                "INSERT INTO financial_metrics (time, metric_type, department)"
                " VALUES ('2070-01-02', 'secret', 'Ops')"
            )
            other.commit()
        refused(carol, made)
        assert _sliced_privileges(admin, made) == []
        # 2. split_chunk: both halves hold every department's rows
        (mid,) = [c for c in _fin_chunks(admin) if c[1] <= datetime(2060, 1, 3, tzinfo=UTC) < c[2]]
        admin.execute(
            "CALL split_chunk(%s::regclass, %s::timestamptz)",
            (mid[0], mid[1] + (mid[2] - mid[1]) / 2),
        )
        halves = [c for c in _fin_chunks(admin) if mid[1] <= c[1] < mid[2]]
        assert len(halves) == 2
        new_half = next(c[0] for c in halves if c[0] != mid[0])
        refused(carol, new_half)
        refused(carol, mid[0])
        for half in halves:
            assert admin.execute(
                sql.SQL("SELECT count(DISTINCT department) FROM {}").format(sql.SQL(half[0]))
            ).fetchone() == (3,)
            assert _sliced_privileges(admin, half[0]) == []
        assert carols(carol) == expected
        # 3. merge_chunks: the two halves back into one
        admin.execute("CALL merge_chunks(%s::regclass, %s::regclass)", (halves[0][0], halves[1][0]))
        merged = [c[0] for c in _fin_chunks(admin) if mid[1] <= c[1] < mid[2]]
        assert len(merged) == 1
        refused(carol, merged[0])
        assert _sliced_privileges(admin, merged[0]) == []
        assert carols(carol) == expected
        for chunk, _, _ in _fin_chunks(admin):
            assert _sliced_privileges(admin, chunk) == [], chunk
    # what remains until the next fix or apply: the writers' copied privileges on the chunks
    # made without a write (plan and verify show them); carol (sliced) is never among them
    leaks = _leaks(ts)
    assert leaks and {u for u, _, _ in leaks} == {"david"}
    with ts.db.admin() as conn:
        assert "on chunk" in plan(conn, ts.policy).summary()
        conn.rollback()
        matrix = verify(conn, ts.policy, ts.passwords, **ts.user_params())
        assert {c.user for c in matrix.disagreements} == {"david"}, matrix.to_text()
        assert matrix.cell("carol", "financial_metrics", "SELECT").ok
        apply(conn, ts.policy, passwords=ts.passwords)
        assert not plan(conn, ts.policy)
        matrix = verify(conn, ts.policy, ts.passwords, **ts.user_params())
        assert matrix.ok, matrix.to_text()
    assert _leaks(ts) == []
    with ts.connect("carol") as carol:
        assert carols(carol) == expected


def test_a_database_applied_before_moves_the_sliced_grant_onto_the_columns(ts):
    """As tsaccess left it before: department_managers held SELECT on the table (its chunks
    closed one by one). The plan revokes it, grants SELECT on every column, and takes back in
    the same transaction the column privileges TimescaleDB copies to the existing chunks."""
    cols = "time, metric_type, amount, currency, department, is_confidential"
    with ts.db.admin() as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, department)"
            " SELECT now() - g * interval '8 days', 'm', 'Ops' FROM generate_series(0, 3) g"
        )
        conn.execute(f"REVOKE SELECT ({cols}) ON financial_metrics FROM department_managers")
        conn.execute("GRANT SELECT ON financial_metrics TO department_managers")
        chunks = [c for c, _, _ in _fin_chunks(conn)]
        for c in chunks:  # the old plan's work on chunks
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM department_managers").format(sql.SQL(c)))
        conn.commit()
        steps = [s.summary for s in plan(conn, ts.policy).steps]
        conn.rollback()
        assert "revoke SELECT on table financial_metrics from department_managers" in steps
        assert f"grant SELECT ({cols}) on table financial_metrics to department_managers" in steps
        revokes = [s for s in steps if s.startswith("revoke SELECT (") and " on chunk " in s]
        assert len(revokes) == len(chunks) >= 4
        apply(conn, ts.policy, passwords=ts.passwords)  # checks the plan after it is empty
        assert not plan(conn, ts.policy)
        for c in chunks:
            assert _sliced_privileges(conn, c) == []
    with ts.connect("carol") as carol:
        assert carol.execute("SELECT count(*) FROM financial_metrics").fetchone() == (0,)
        carol.execute("SELECT * FROM financial_metrics")
    assert _leaks(ts) == []


def test_a_column_added_to_a_sliced_hypertable_is_granted_on_the_table_only(ts):
    """A column the policy adds gets carol's SELECT on the hypertable; TimescaleDB copies that
    GRANT to the existing chunks, and the same apply takes it back there."""
    import dataclasses

    from tsaccess.policy import Column

    with ts.db.admin() as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, department)"
            " SELECT now() - g * interval '8 days', 'm', 'Ops' FROM generate_series(0, 2) g"
        )
        conn.commit()
        policy = dataclasses.replace(
            ts.policy,
            tables=tuple(
                dataclasses.replace(t, columns=(*t.columns, Column("note", "text")))
                if t.name == "financial_metrics"
                else t
                for t in ts.policy.tables
            ),
        )
        steps = [s.summary for s in plan(conn, policy).steps]
        conn.rollback()
        assert "grant SELECT (note) on table financial_metrics to department_managers" in steps
        assert sum(s.startswith("revoke SELECT (note) on chunk ") for s in steps) >= 3
        apply(conn, policy, passwords=ts.passwords)  # checks the plan after it is empty
        assert not plan(conn, policy)
        for chunk, _, _ in _fin_chunks(conn):
            assert _sliced_privileges(conn, chunk) == []
    with ts.connect("carol") as carol:
        assert carol.execute("SELECT note FROM financial_metrics").fetchall() == []


def test_preflight_and_my_access_read_carols_column_grants_as_the_table(ts):
    """carol's SELECT on financial_metrics is a privilege on every column: pre-flight allows her
    SELECT * and count(*) (row-level security still applies), refuses a chunk by name, and
    my_access shows "all columns" with her row filter."""
    with ts.db.admin() as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, department)"
            " VALUES (now(), 'm', 'Sales'), (now(), 'm', 'Ops')"
        )
        conn.commit()
        chunk = _fin_chunks(conn)[-1][0]
    with ts.connect("carol", preflight=True, autocommit=True) as conn:
        for q in ("SELECT * FROM financial_metrics", "SELECT count(*) FROM financial_metrics"):
            assert check(conn, q).status == "allowed", q
        assert [r[4] for r in conn.execute("SELECT * FROM financial_metrics")] == ["Sales"]
        assert check(conn, f"SELECT * FROM {chunk}").status == "denied"
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute(f"SELECT count(*) FROM {chunk}")
        row = next(r for r in my_access(conn) if r.table == "financial_metrics")
        assert row.select == "all columns" and "tsaccess_rls.attribute" in row.row_filter
        assert (row.insert, row.update, row.delete) == ("", "", False)


def test_retention_with_a_frozen_chunk_drops_and_audits_the_others_and_reports_it(ts):
    """A frozen chunk (drop_chunks skips it silently) no longer wedges the job: the others are
    dropped and recorded, the frozen one is recorded as kept, and the job succeeds."""
    with ts.db.admin() as conn:
        quiesce_jobs(conn)  # a concurrent compression or retention run deadlocks with it
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
