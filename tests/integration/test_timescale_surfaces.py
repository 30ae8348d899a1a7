"""TimescaleDB's own doors, attacked as an insider after ``apply`` of examples/timescale.toml:
row slices (hypertable, chunks by name, chunks created later, tricks with settings, views,
COPY), the continuous aggregate, compressed chunks in the audit trail, audited retention,
chunk ACL drift and the access matrix. Every check connects as the user with plain psycopg."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.helpers import apply_company, quiesce_jobs
from tsaccess.demo import company_policy
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import load_policy
from tsaccess.verify import verify

pytestmark = pytest.mark.usefixtures("timescaledb")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "timescale.toml"
DENIED = psycopg.errors.InsufficientPrivilege


@pytest.fixture
def ts(db):
    return apply_company(db, load_policy(EXAMPLE))


def _seed_finance(db, *, days=(0, 9, 18, 27)) -> None:
    """Rows of three departments over several chunks (inserted by the owner)."""
    with db.admin() as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount, department)"
            " SELECT now() - d * interval '1 day', 'revenue', 1, dep"
            " FROM unnest(%s::int[]) d, unnest(ARRAY['Sales', 'Ops', 'HR']) dep",
            (list(days),),
        )
        conn.commit()


def _chunks(db, table: str) -> list[str]:
    with db.admin() as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT format('%%I.%%I', chunk_schema, chunk_name)"
                " FROM timescaledb_information.chunks WHERE hypertable_name = %s"
                " AND hypertable_schema IN ('public', '_timescaledb_internal')"
                " ORDER BY range_start",
                (table,),
            )
        ]


def _departments(conn) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT department, count(*) FROM financial_metrics GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )


def _denied(conn, query: str, params=()) -> None:
    with pytest.raises(DENIED):
        conn.execute(query, params)
    conn.rollback()


def test_carol_reads_only_her_slice_by_every_path(ts):
    _seed_finance(ts.db)
    chunks = _chunks(ts.db, "financial_metrics")
    assert len(chunks) >= 3
    with ts.connect("carol") as conn:
        assert _departments(conn) == {"Sales": 4}
        for chunk in chunks:  # each chunk by name: no privilege at all
            _denied(conn, sql.SQL("SELECT * FROM {}").format(sql.SQL(chunk)))
        # the attribute comes from the login user, not from anything she can set
        conn.execute("SET application_name = 'Ops'")
        conn.execute("SELECT set_config('tsaccess.department', 'Ops', false)")
        conn.execute("SET tsaccess.attribute = 'Ops'")
        assert _departments(conn) == {"Sales": 4}
        for attack in (
            "SET ROLE finance_users",
            "SET SESSION AUTHORIZATION david",
        ):
            with pytest.raises(psycopg.Error):
                conn.execute(attack)
            conn.rollback()
        # the mapping is out of reach; only the function reads it, for session_user
        _denied(conn, "SELECT * FROM tsaccess_rls.user_attributes")
        _denied(conn, "UPDATE tsaccess_rls.user_attributes SET value = 'Ops'")
        _denied(conn, "INSERT INTO tsaccess_rls.user_attributes VALUES ('carol', 'x', 'y')")
        _denied(
            conn,
            "CREATE FUNCTION tsaccess_rls.attribute(text, int) RETURNS text"
            " LANGUAGE sql AS 'SELECT ''Ops'''",
        )
        assert conn.execute("SELECT tsaccess_rls.attribute('department')").fetchone() == ("Sales",)
        # no view of her own (no CREATE on the schema, no TEMP on the database)
        _denied(conn, "CREATE VIEW v AS SELECT * FROM financial_metrics")
        _denied(conn, "CREATE TEMP VIEW v AS SELECT * FROM financial_metrics")
        # COPY goes through row-level security too
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT department FROM financial_metrics) TO STDOUT") as cp:
                copied = [row for row in cp.rows()]
        assert {r[0] for r in copied} == {"Sales"} and len(copied) == 4
        conn.rollback()
    with ts.db.admin() as conn:  # statistics would show other departments' values
        conn.execute("ANALYZE financial_metrics")
        for chunk in chunks:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(chunk)))
        conn.commit()
    with ts.connect("carol") as conn:
        seen = conn.execute(
            "SELECT most_common_vals::text FROM pg_stats WHERE attname = 'department'"
        ).fetchall()
        assert not any("Ops" in (r[0] or "") for r in seen)
    with ts.connect("david") as conn:  # finance users read everything, chunks included
        assert _departments(conn) == {"HR": 4, "Ops": 4, "Sales": 4}
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(chunks[0])))


def test_a_chunk_created_after_apply_is_closed_from_the_moment_it_is_visible(ts):
    with ts.connect("david") as writer, ts.connect("carol") as carol:
        writer.execute(
            "INSERT INTO financial_metrics (time, metric_type, department)"
            " VALUES (now() + interval '60 days', 'plan', 'Ops'),"
            " (now() + interval '60 days', 'plan', 'Sales')"
        )
        new = writer.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM"
            " timescaledb_information.chunks WHERE hypertable_name = 'financial_metrics'"
            " AND hypertable_schema = 'public'"
        ).fetchall()
        assert len(new) == 1
        chunk = sql.SQL(new[0][0])
        # not committed yet: the chunk does not exist for anyone else
        with pytest.raises(psycopg.errors.UndefinedTable):
            carol.execute(sql.SQL("SELECT * FROM {}").format(chunk))
        carol.rollback()
        writer.commit()
        _denied(carol, sql.SQL("SELECT * FROM {}").format(chunk))
        assert _departments(carol) == {"Sales": 1}
        # COPY by an allowed writer works and its new chunk is closed as well
        with writer.cursor() as cur:
            with cur.copy(
                "COPY financial_metrics (time, metric_type, department) FROM STDIN"
            ) as cp:
                cp.write_row(("2031-01-01 00:00+00", "copy", "Ops"))
                cp.write_row(("2031-01-01 00:00+00", "copy", "Sales"))
        writer.commit()
        copied = writer.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'financial_metrics' AND hypertable_schema = 'public'"
            " AND range_start > '2030-12-01'"
        ).fetchone()
        assert copied is not None
        _denied(carol, sql.SQL("SELECT * FROM {}").format(sql.SQL(copied[0])))
        assert _departments(carol) == {"Sales": 2}
        # the writer keeps direct access to the chunks his role may read
        writer.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(copied[0])))
    # inside a savepoint of a transaction that began long before the chunk was made
    with ts.connect("david") as writer:
        writer.execute("SELECT 1")  # the transaction (and its timestamp) starts before the chunk
        writer.execute("SAVEPOINT s")
        writer.execute(
            "INSERT INTO financial_metrics (time, metric_type, department)"
            " VALUES ('2033-03-03', 'sp', 'Ops')"
        )
        writer.execute("RELEASE SAVEPOINT s")
        writer.commit()
    # a chunk created by the owner is closed too
    with ts.db.admin() as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, department)"
            " VALUES ('2035-01-01', 'x', 'Ops')"
        )
        conn.commit()
    with ts.connect("carol") as carol:
        for chunk in _chunks(ts.db, "financial_metrics"):
            _denied(carol, sql.SQL("SELECT * FROM {}").format(sql.SQL(chunk)))
    with ts.db.admin() as conn:
        assert not plan(conn, ts.policy)  # the trigger keeps chunks as the plan wants them


def test_frank_reads_the_hourly_aggregate_and_nothing_raw(ts):
    with ts.db.admin() as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature, humidity)"
            " SELECT now() - i * interval '20 minutes', 's' || (i % 3), 20 + i % 5, 50"
            " FROM generate_series(0, 400) i"
        )
        conn.commit()
        conn.autocommit = True
        conn.execute(
            "CALL refresh_continuous_aggregate('sensor_hourly', NULL, now() - interval '2 days')"
        )
        mat, direct, partial = conn.execute(
            "SELECT format('%I.%I', h.schema_name, h.table_name),"
            " format('%I.%I', ca.direct_view_schema, ca.direct_view_name),"
            " format('%I.%I', ca.partial_view_schema, ca.partial_view_name)"
            " FROM _timescaledb_catalog.continuous_agg ca"
            " JOIN _timescaledb_catalog.hypertable h ON h.id = ca.mat_hypertable_id"
            " WHERE ca.user_view_name = 'sensor_hourly'"
        ).fetchone()
        expected = conn.execute(
            "SELECT count(*) FROM (SELECT time_bucket('1 hour', time), sensor_id"
            " FROM sensor_readings GROUP BY 1, 2) b"
        ).fetchone()
    internal = [mat, direct, partial, *_chunks(ts.db, mat.split(".")[1].strip('"'))]
    raw = ["sensor_readings", "financial_metrics", *_chunks(ts.db, "sensor_readings")]
    with ts.connect("frank") as conn:
        # materialized buckets and the real-time ones (the last two days are not refreshed)
        assert conn.execute("SELECT count(*) FROM sensor_hourly").fetchone() == expected
        recent = conn.execute(
            "SELECT count(*) FROM sensor_hourly WHERE bucket > now() - interval '1 day'"
        ).fetchone()
        assert recent[0] > 0
        for name in (*raw, *internal):
            _denied(conn, sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.SQL(name)))


def test_dml_on_compressed_chunks_is_audited_with_exact_counts(ts):
    with ts.connect("bob") as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature)"
            " SELECT now() - interval '30 days' + i * interval '5 minutes', 's' || (i % 4), 20"
            " FROM generate_series(0, 3000) i"
        )
        conn.commit()
    with ts.db.admin() as conn:
        quiesce_jobs(conn)
        compressed = conn.execute(
            "SELECT count(compress_chunk(c)) FROM"
            " show_chunks('sensor_readings', older_than => interval '7 days') c"
        ).fetchone()[0]
        assert compressed >= 2
        conn.commit()
    with ts.connect("bob") as conn:
        conn.execute(
            "UPDATE sensor_readings SET temperature = 21"
            " WHERE sensor_id = 's1' AND time < now() - interval '10 days'"
        )
        updated = conn.execute("SELECT 1").fetchone() and None  # keep the same transaction
        conn.commit()
        n_upd = conn.execute(
            "SELECT count(*) FROM sensor_readings WHERE temperature = 21"
        ).fetchone()[0]
        deleted = conn.execute(
            "DELETE FROM sensor_readings WHERE sensor_id = 's2' AND time < now() - interval '10 days'"
        ).rowcount
        conn.commit()
        inserted = conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id)"
            " SELECT now() - interval '25 days', 'late' FROM generate_series(1, 7)"
        ).rowcount
        conn.commit()
    assert updated is None and n_upd > 100 and deleted > 100 and inserted == 7
    with ts.db.admin() as conn:
        rows = conn.execute(
            "SELECT operation, row_count FROM activity_audit WHERE username = 'bob'"
            " AND table_name = 'sensor_readings' ORDER BY id"
        ).fetchall()
        # the compressed chunks are still compressed (DML went into them)
        assert (
            conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks"
                " WHERE hypertable_name = 'sensor_readings' AND is_compressed"
            ).fetchone()[0]
            >= 1
        )
    assert rows == [("INSERT", 3001), ("UPDATE", n_upd), ("DELETE", deleted), ("INSERT", 7)]


def test_row_mode_on_a_compressed_hypertable_counts_every_deleted_row(db):
    base = load_policy(EXAMPLE)
    import dataclasses

    sensor = dataclasses.replace(base.table("sensor_readings"), audit="row")
    policy = dataclasses.replace(
        base, tables=tuple(sensor if t.name == "sensor_readings" else t for t in base.tables)
    )
    company = apply_company(db, policy)
    with company.connect("bob") as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id)"
            " SELECT now() - interval '20 days' + i * interval '1 hour', 's' || (i % 2)"
            " FROM generate_series(0, 99) i"
        )
        conn.commit()
    with db.admin() as conn:
        quiesce_jobs(conn)
        conn.execute(
            "SELECT compress_chunk(c) FROM"
            " show_chunks('sensor_readings', older_than => interval '7 days') c"
        )
        conn.commit()
    with company.connect("bob") as conn:
        deleted = conn.execute("DELETE FROM sensor_readings WHERE sensor_id = 's1'").rowcount
        conn.commit()
    with db.admin() as conn:
        total, rows = conn.execute(
            "SELECT sum(row_count), count(*) FROM activity_audit"
            " WHERE operation = 'DELETE' AND table_name = 'sensor_readings'"
        ).fetchone()
        old = conn.execute(
            "SELECT count(*) FROM activity_audit_rows WHERE operation = 'DELETE'"
            " AND old_data->>'sensor_id' = 's1'"
        ).fetchone()[0]
    assert deleted == 50 and total == 50 and rows == 50 and old == 50


def test_the_retention_job_records_every_chunk_it_drops(ts):
    with ts.db.admin() as conn:  # an unaudited TimescaleDB retention policy is replaced
        conn.execute("SELECT add_retention_policy('sensor_readings', INTERVAL '400 days')")
        conn.commit()
        assert "remove TimescaleDB's unaudited retention job" in plan(conn, ts.policy).summary()
        conn.rollback()
        apply(conn, ts.policy, passwords=ts.passwords)
        quiesce_jobs(conn)
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) SELECT t, 's'"
            " FROM unnest(ARRAY[now() - interval '500 days', now() - interval '500 days',"
            " now() - interval '420 days', now() - interval '1 day']) t"
        )
        conn.commit()
        old = conn.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name), range_start, range_end"
            " FROM timescaledb_information.chunks WHERE hypertable_name = 'sensor_readings'"
            " AND range_end <= now() - interval '365 days' ORDER BY range_start"
        ).fetchall()
        assert len(old) == 2
        conn.execute("SELECT compress_chunk(%s::regclass)", (old[0][0],))  # compressed too
        (job,) = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'tsaccess_retention'"
        ).fetchone()
        conn.commit()
        conn.autocommit = True
        conn.execute("CALL run_job(%s)", (job,))
        conn.autocommit = False
        left = _chunks(ts.db, "sensor_readings")
        rows = conn.execute(
            "SELECT table_name, description, row_count, actor FROM activity_audit"
            " WHERE operation = 'DROP CHUNK' ORDER BY id"
        ).fetchall()
    assert not {c for c, _, _ in old} & set(left) and len(left) == 1
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("sensor_readings", 2, f"tsaccess retention job {job}"),
        ("sensor_readings", 1, f"tsaccess retention job {job}"),
    ]
    for (chunk, start, _), (_, description, _, _) in zip(old, rows, strict=True):
        assert chunk in description and f"by retention job {job}" in description
        assert str(start.year) in description


def test_drops_outside_the_job_are_recorded_where_the_server_tells(ts):
    """DROP TABLE of a chunk fires sql_drop (recorded); drop_chunks fires nothing (measured,
    documented as not caught)."""
    with ts.db.admin() as conn:
        # the compression job must not compress the old chunk meanwhile: its compressed
        # chunk would be dropped (and recorded) with it (seen once in CI)
        quiesce_jobs(conn)
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) VALUES"
            " (now() - interval '100 days', 'a'), (now() - interval '200 days', 'b')"
        )
        conn.commit()
        first, _ = _chunks(ts.db, "sensor_readings")
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(first)))
        conn.commit()
        conn.execute(
            "SELECT drop_chunks('sensor_readings', older_than => now() - interval '50 days')"
        )
        conn.commit()
        rows = conn.execute(
            "SELECT table_name, description FROM activity_audit WHERE operation = 'DROP CHUNK'"
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "sensor_readings" and first in rows[0][1]
    assert "outside the retention job" in rows[0][1]


def test_plan_repairs_chunk_acls_that_drifted(ts):
    _seed_finance(ts.db, days=(0, 10))
    sensor_chunk = None
    with ts.db.admin() as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        conn.commit()
        sensor_chunk = _chunks(ts.db, "sensor_readings")[0]
        fin_chunk = _chunks(ts.db, "financial_metrics")[0]
        conn.execute(
            sql.SQL("GRANT SELECT ON {} TO department_managers").format(sql.SQL(fin_chunk))
        )
        conn.execute(sql.SQL("GRANT SELECT, DELETE ON {} TO eve").format(sql.SQL(sensor_chunk)))
        conn.execute(
            sql.SQL("REVOKE SELECT ON {} FROM data_analysts").format(sql.SQL(sensor_chunk))
        )
        conn.execute("ALTER ROLE carol BYPASSRLS")  # would lift her slice everywhere
        conn.execute("ALTER ROLE david NOBYPASSRLS")  # would break his COPY
        conn.commit()
        the_plan = plan(conn, ts.policy)
        conn.rollback()
    text = the_plan.summary()
    assert (
        f"revoke SELECT on chunk {fin_chunk} of financial_metrics from department_managers" in text
    )
    assert f"revoke DELETE, SELECT on chunk {sensor_chunk} of sensor_readings from eve" in text
    assert f"grant SELECT on chunk {sensor_chunk} of sensor_readings to data_analysts" in text
    assert "carol: NOBYPASSRLS" in text and "david: BYPASSRLS (COPY into sliced tables)" in text
    with ts.connect("carol") as conn:  # the drift is a real leak before the repair
        assert "Ops" in {
            r[0]
            for r in conn.execute(sql.SQL("SELECT department FROM {}").format(sql.SQL(fin_chunk)))
        }
    with ts.db.admin() as conn:
        apply(conn, ts.policy, passwords=ts.passwords)
        assert not plan(conn, ts.policy)
    with ts.connect("carol") as conn:
        _denied(conn, sql.SQL("SELECT * FROM {}").format(sql.SQL(fin_chunk)))
        assert _departments(conn) == {"Sales": 2}
    with ts.connect("eve") as conn:
        _denied(conn, sql.SQL("SELECT * FROM {}").format(sql.SQL(sensor_chunk)))
    with ts.connect("alice") as conn:
        conn.execute(sql.SQL("SELECT * FROM {}").format(sql.SQL(sensor_chunk)))


def test_compression_on_an_audited_table_goes_through_plan_and_apply(db):
    company = apply_company(db, company_policy())
    with company.connect("bob") as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id)"
            " SELECT now() - i * interval '1 day', 's' FROM generate_series(0, 30) i"
        )
        conn.commit()
    policy = load_policy(EXAMPLE).with_database(db.name)
    with db.admin() as conn:
        the_plan = plan(conn, policy)
        conn.rollback()
        summary = the_plan.summary(verbose=True)  # the audit trigger is an audit internal
        assert "drop outdated audit trigger" in summary and "compress sensor_readings" in summary
        assert summary.index("drop outdated audit trigger") < summary.index("compress sensor_")
        passwords = {**company.passwords, "frank": company.passwords["alice"]}
        apply(conn, policy, passwords=passwords)
        quiesce_jobs(conn)
        conn.execute(
            "SELECT compress_chunk(c) FROM"
            " show_chunks('sensor_readings', older_than => interval '7 days') c"
        )
        conn.commit()
    with company.connect("bob") as conn:
        n = conn.execute(
            "DELETE FROM sensor_readings WHERE time < now() - interval '20 days'"
        ).rowcount
        conn.commit()
    with db.admin() as conn:
        assert conn.execute(
            "SELECT row_count FROM activity_audit WHERE operation = 'DELETE'"
        ).fetchall() == [(n,)]
        assert n >= 10


def test_verify_probes_chunks_and_the_aggregate(ts):
    _seed_finance(ts.db, days=(0,))
    with ts.db.admin() as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        conn.commit()
        matrix = verify(conn, ts.policy, ts.passwords, **ts.user_params())
    assert matrix.ok, matrix.to_text()
    objects = {c.object for c in matrix.cells}
    assert any("(chunk of financial_metrics)" in o for o in objects)
    assert any("(chunk of sensor_readings)" in o for o in objects)
    assert "sensor_hourly (continuous aggregate)" in objects
    assert any("materialized hypertable of sensor_hourly" in o for o in objects)
    fin_chunk = next(o for o in objects if "(chunk of financial_metrics)" in o)
    assert matrix.cell("carol", "financial_metrics", "SELECT").actual is True
    assert matrix.cell("carol", fin_chunk, "SELECT").actual is False
    assert matrix.cell("frank", "sensor_hourly (continuous aggregate)", "SELECT").actual is True
    # a leak on a chunk is a disagreement
    with ts.db.admin() as conn:
        conn.execute(
            sql.SQL("GRANT SELECT ON {} TO department_managers").format(
                sql.SQL(fin_chunk.split(" ")[0])
            )
        )
        conn.commit()
        matrix = verify(conn, ts.policy, ts.passwords, **ts.user_params())
    assert [(c.user, c.privilege) for c in matrix.disagreements] == [("carol", "SELECT")]


def test_a_view_that_reads_a_sliced_table_as_its_owner_is_closed(ts):
    """An owner's view (not security_invoker) reads with the owner's rights, around row-level
    security: plan revokes it from the sliced roles and PUBLIC and says why; an invoker view
    keeps working and shows the slice."""
    _seed_finance(ts.db, days=(0,))
    with ts.db.admin() as conn:
        conn.execute("CREATE VIEW fm_all AS SELECT * FROM financial_metrics")
        conn.execute("CREATE VIEW fm_nested WITH (security_invoker = true) AS SELECT * FROM fm_all")
        conn.execute(
            "CREATE VIEW fm_mine WITH (security_invoker = true) AS"
            " SELECT department, amount FROM financial_metrics"
        )
        conn.execute("GRANT SELECT ON fm_all, fm_nested, fm_mine TO department_managers")
        conn.execute("GRANT SELECT ON fm_all TO PUBLIC")
        conn.commit()
    with ts.connect("carol") as conn:  # the door, before the plan closes it
        assert {r[0] for r in conn.execute("SELECT department FROM fm_all")} == {
            "Sales",
            "Ops",
            "HR",
        }
    with ts.db.admin() as conn:
        the_plan = plan(conn, ts.policy)
        conn.rollback()
        assert any("view fm_all reads financial_metrics" in w for w in the_plan.warnings)
        assert any("view fm_nested reads financial_metrics" in w for w in the_plan.warnings)
        assert not any("fm_mine" in w for w in the_plan.warnings)
        apply(conn, ts.policy, passwords=ts.passwords)
        assert not plan(conn, ts.policy)
    with ts.connect("carol") as conn:
        _denied(conn, "SELECT * FROM fm_all")
        _denied(conn, "SELECT * FROM fm_nested")
        assert {r[0] for r in conn.execute("SELECT department FROM fm_mine")} == {"Sales"}
    with ts.connect("alice") as conn:
        _denied(conn, "SELECT * FROM fm_all")


def test_changed_compression_and_retention_settings_are_planned(ts):
    import dataclasses

    from tsaccess.policy import Compression, Retention

    sensor = ts.policy.table("sensor_readings")
    changed = dataclasses.replace(
        sensor,
        compression=Compression("14 days", ("sensor_id", "location"), ("time DESC",)),
        retention=Retention("730 days"),
    )
    policy = dataclasses.replace(
        ts.policy,
        tables=tuple(changed if t.name == "sensor_readings" else t for t in ts.policy.tables),
    )
    with ts.db.admin() as conn:
        summary = plan(conn, policy).summary()
        conn.rollback()
        assert "change compression settings of sensor_readings" in summary
        assert "remove the compression job of sensor_readings" in summary
        assert "compress chunks of sensor_readings older than 14 days (job)" in summary
        assert "remove retention job" in summary and "older than 730 days" in summary
        apply(conn, policy, passwords=ts.passwords)
        assert not plan(conn, policy)
        settings = conn.execute(
            "SELECT attname FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'sensor_readings' AND segmentby_column_index IS NOT NULL"
            " ORDER BY segmentby_column_index"
        ).fetchall()
        config = conn.execute(
            "SELECT config->>'drop_after' FROM timescaledb_information.jobs"
            " WHERE proc_name = 'tsaccess_retention'"
        ).fetchall()
    assert settings == [("sensor_id",), ("location",)] and config == [("730 days",)]


def test_demo_with_the_timescale_policy_shows_each_door():
    import json
    import os
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "tsaccess", "demo", "--policy", str(EXAMPLE), "--json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["matrix"]["disagreements"] == 0
    checks = {c["name"]: c["ok"] for c in out["checks"]}
    for name in (
        "frank reads sensor_hourly (real-time buckets included)",
        "frank's raw query on sensor_readings is refused",
        "carol sees only Sales rows",
        "DML on compressed chunks is audited with exact counts",
        "the retention job's chunk drop is in the audit trail",
    ):
        assert checks.get(name) is True, name
    assert any(n.startswith("carol's direct read of chunk") and ok for n, ok in checks.items()), (
        checks
    )
    objects = {c["object"] for c in out["matrix"]["cells"]}
    assert "sensor_hourly (continuous aggregate)" in objects
    assert any("(chunk of financial_metrics)" in o for o in objects)


@pytest.mark.parametrize(
    "interval",
    [
        "1 hour",
        "12 hours",
        "90 minutes",
        "45 seconds",
        "1 day",
        "7 days",
        "2 weeks",
        "1 month",
        "3 months",
        "1 year",
        "2 years",
    ],
)
def test_job_intervals_compare_like_the_server_prints_them(db, interval):
    """Compression-job drift is found by comparing the policy's interval with the job's config,
    which holds the server's text of it."""
    from tsaccess.plan.phases.timescale import _interval_text

    with db.admin() as conn:
        (server,) = conn.execute("SELECT %s::interval::text", (interval,)).fetchone()
    assert _interval_text(interval) == server


def test_cli_apply_then_verify_exits_zero_with_chunks_and_the_aggregate(db, tmp_path):
    import json
    import os
    import subprocess
    import sys

    policy_file = tmp_path / "timescale.toml"
    policy_file.write_text(
        EXAMPLE.read_text().replace('name = "company_db"', f'name = "{db.name}"')
    )
    dsn = " ".join(f"{k}={v}" for k, v in db.params().items() if v is not None)
    pwfile = tmp_path / "passwords.pgpass"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tsaccess", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=300,
            check=False,
        )

    res = run(
        "apply",
        "-y",
        "--dsn",
        dsn,
        "--policy",
        str(policy_file),
        "--generate-passwords",
        str(pwfile),
    )
    assert res.returncode == 0, res.stderr
    _seed_finance(db, days=(0, 8))
    with db.admin() as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        conn.commit()
    res = run(
        "verify",
        "--dsn",
        dsn,
        "--policy",
        str(policy_file),
        "--passwords-file",
        str(pwfile),
        "--json",
    )
    assert res.returncode == 0, res.stdout[-3000:]
    matrix = json.loads(res.stdout)
    objects = {c["object"] for c in matrix["cells"]}
    assert matrix["ok"] is True
    assert "sensor_hourly (continuous aggregate)" in objects
    assert any("(chunk of financial_metrics)" in o for o in objects)
    assert any("(chunk of sensor_readings)" in o for o in objects)
    assert {c["user"] for c in matrix["cells"]} == {
        "alice",
        "bob",
        "carol",
        "david",
        "eve",
        "frank",
    }


def test_changed_aggregates_are_replanned_or_refused(ts):
    import dataclasses

    from tsaccess import PolicyError
    from tsaccess.policy import AggregateColumn

    hourly = ts.policy.aggregate("sensor_hourly")
    slower = dataclasses.replace(hourly, refresh_every="2 hours", refresh_start="7 days")
    policy = dataclasses.replace(ts.policy, aggregates=(slower,))
    with ts.db.admin() as conn:
        summary = plan(conn, policy).summary()
        conn.rollback()
        assert "remove the refresh job of sensor_hourly" in summary
        assert "refresh sensor_hourly every 2 hours (job)" in summary
        apply(conn, policy, passwords=ts.passwords)
        assert not plan(conn, policy)
        conn.rollback()
        renamed = dataclasses.replace(
            hourly, columns=(AggregateColumn("max_temperature", "max", "temperature"),)
        )
        with pytest.raises(PolicyError, match="does not rebuild an aggregate"):
            plan(conn, dataclasses.replace(ts.policy, aggregates=(renamed,)))


def test_a_non_superuser_owner_can_drop_a_chunk_and_it_is_recorded(ts):
    """The event trigger fires for every DROP TABLE of a chunk; it must neither block an owner
    who may not call the audit function nor let the drop go unrecorded."""
    password = ts.db.create_login("chunk_owner")
    with ts.db.admin() as conn:
        conn.execute("CREATE SCHEMA own AUTHORIZATION chunk_owner")
        conn.execute("GRANT USAGE ON SCHEMA public TO chunk_owner")  # TimescaleDB's functions
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO chunk_owner").format(
                sql.Identifier(ts.db.name)
            )
        )
        conn.commit()
    with ts.db.connect_as("chunk_owner", password) as conn:
        conn.execute("CREATE TABLE own.m (time timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable('own.m', by_range('time'))")
        conn.execute("INSERT INTO own.m VALUES (now(), 1), (now() - interval '30 days', 2)")
        chunk = conn.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
            " WHERE hypertable_schema = 'own' ORDER BY range_start LIMIT 1"
        ).fetchone()[0]
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(chunk)))
        conn.commit()
        _denied(conn, "SELECT public.tsaccess_audit_chunk_drop('m', 'x', NULL, NULL, 1, 1)")
    with ts.db.admin() as conn:
        rows = conn.execute(
            "SELECT username, table_name, description FROM activity_audit"
            " WHERE operation = 'DROP CHUNK'"
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "chunk_owner" and rows[0][1] == "m" and chunk in rows[0][2]


def test_a_slice_on_an_integer_column_compares_in_the_column_type(db):
    import copy

    from tsaccess import PolicyError
    from tsaccess.policy import parse_policy

    data = {
        "database": {"name": db.name},
        "tables": {
            "readings": {
                "time_column": "time",
                "hypertable": True,
                "audit": "off",
                "columns": {"time": "timestamptz not null", "site": "integer", "v": "int"},
            }
        },
        "roles": {
            "site_viewers": {"grants": {"readings": ["SELECT"]}, "slices": {"readings": "site"}}
        },
        "users": {"gina": {"roles": ["site_viewers"], "attributes": {"site": "2"}}},
    }
    company = apply_company(db, parse_policy(data))
    with db.admin() as conn:
        conn.execute("INSERT INTO readings SELECT now(), s, 1 FROM generate_series(1, 3) s")
        conn.commit()
    with company.connect("gina") as conn:
        assert conn.execute("SELECT site FROM readings").fetchall() == [(2,)]
    bad = copy.deepcopy(data)
    bad["users"]["gina"]["attributes"]["site"] = "two"
    with pytest.raises(PolicyError, match="give a whole number") as err:
        parse_policy(bad)
    assert err.value.path == "users.gina.attributes.site"


# --- review fixes: writes on chunks, write-only roles on sliced tables, sliced audit readers


def _example_data() -> dict:
    import tomllib

    return tomllib.loads(EXAMPLE.read_text())


def _audit_ops(db, user: str) -> list[tuple[str, str, int]]:
    with db.admin() as conn:
        return conn.execute(
            "SELECT operation, table_name, row_count FROM activity_audit WHERE username = %s"
            " ORDER BY id",
            (user,),
        ).fetchall()


def _internal_relations(db) -> list[str]:
    """Every chunk, compressed chunk and compressed hypertable of the policy's hypertables."""
    with db.admin() as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT format('%I.%I', c.schema_name, c.table_name)"
                " FROM _timescaledb_catalog.hypertable h"
                " JOIN _timescaledb_catalog.hypertable x"
                "  ON x.id = h.id OR x.id = h.compressed_hypertable_id"
                " JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = x.id"
                " WHERE h.schema_name = 'public'"
                "  AND h.table_name IN ('sensor_readings', 'financial_metrics')"
                " UNION ALL SELECT format('%I.%I', x.schema_name, x.table_name)"
                " FROM _timescaledb_catalog.hypertable h"
                " JOIN _timescaledb_catalog.hypertable x ON x.id = h.compressed_hypertable_id"
                " WHERE h.schema_name = 'public'"
            )
        ]


def _no_writes(conn, rel: str) -> None:
    """No write privilege on ``rel``; on a chunk, each write tried and denied (TimescaleDB
    refuses DML on the internal compressed hypertable before any privilege check)."""
    privs = conn.execute(
        "SELECT array_agg(p) FILTER (WHERE has_table_privilege(%s, p))"
        " FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p",
        (rel,),
    ).fetchone()[0]
    assert privs is None, (rel, privs)
    if "_compressed_hypertable_" in rel:
        return
    ident = sql.SQL(rel)
    _denied(conn, sql.SQL("DELETE FROM {}").format(ident))
    _denied(conn, sql.SQL("TRUNCATE {}").format(ident))
    if "compress_hyper_" not in rel:
        _denied(conn, sql.SQL("UPDATE {} SET time = time").format(ident))


def test_writes_on_chunks_by_name_are_denied_and_every_write_goes_through_the_audit(ts):
    """bob and david may write the hypertables: not their chunks (no audit trigger there), and
    every write through the hypertable keeps working (existing and new chunks, across chunks,
    COPY, MERGE, compressed chunks) and is audited."""
    _seed_finance(ts.db)
    with ts.db.admin() as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature)"
            " SELECT now() - d * interval '1 day', 's' || (d % 3), 20 FROM generate_series(0, 30) d"
        )
        conn.commit()
        quiesce_jobs(conn)
        assert (
            conn.execute(
                "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM"
                " show_chunks('sensor_readings', older_than => interval '8 days') c"
            ).fetchone()[0]
            >= 2
        )
        conn.commit()
        assert not plan(conn, ts.policy)  # compressed chunks made by the owner: as planned
    internal = _internal_relations(ts.db)
    assert any("compress" in r for r in internal)
    for user, table in (("bob", "sensor_readings"), ("david", "financial_metrics")):
        with ts.connect(user) as conn:
            for rel in internal:
                _no_writes(conn, rel)
            chunk = sql.SQL(_chunks(ts.db, table)[-1])
            col = "sensor_id" if table == "sensor_readings" else "metric_type"
            _denied(
                conn,
                sql.SQL("INSERT INTO {} (time, {}) VALUES (now(), 'forged')").format(
                    chunk, sql.Identifier(col)
                ),
            )
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(chunk))  # reads stay
    before = {u: len(_audit_ops(ts.db, u)) for u in ("bob", "david")}
    with ts.connect("bob") as conn:
        ops = [
            "INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'a')",  # existing chunk
            "INSERT INTO sensor_readings (time, sensor_id) VALUES ('2040-01-01', 'a')",  # new
            "INSERT INTO sensor_readings (time, sensor_id)"  # into a compressed chunk
            " VALUES (now() - interval '20 days', 'a')",
            "UPDATE sensor_readings SET temperature = 1 WHERE sensor_id = 's1'",  # across
            "DELETE FROM sensor_readings WHERE sensor_id = 's2'",  # compressed ones too
        ]
        counts = [conn.execute(q).rowcount for q in ops]
        conn.commit()
        with conn.cursor() as cur:
            with cur.copy("COPY sensor_readings (time, sensor_id) FROM STDIN") as cp:
                cp.write_row(("2041-01-01 00:00+00", "c"))
                cp.write_row(("2026-01-01 00:00+00", "c"))
        conn.commit()
        new_chunk = conn.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'sensor_readings' AND range_start > '2040-12-01'"
        ).fetchone()[0]
        _denied(conn, sql.SQL("DELETE FROM {}").format(sql.SQL(new_chunk)))
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(new_chunk)))
    assert counts[:3] == [1, 1, 1] and counts[3] > 5 and counts[4] > 5
    assert [(op, n) for op, _, n in _audit_ops(ts.db, "bob")[before["bob"] :]] == [
        ("INSERT", 1),
        ("INSERT", 1),
        ("INSERT", 1),
        ("UPDATE", counts[3]),
        ("DELETE", counts[4]),
        ("INSERT", 2),
    ]
    with ts.connect("david") as conn:
        merged = conn.execute(
            "MERGE INTO financial_metrics t USING (VALUES ('Ops'), ('Nobody')) s(dep)"
            " ON t.department = s.dep"
            " WHEN MATCHED THEN UPDATE SET amount = 5"
            " WHEN NOT MATCHED THEN INSERT (time, metric_type, amount, department)"
            " VALUES ('2042-01-01', 'merge', 3, s.dep)"
        ).rowcount
        conn.commit()
        moved = conn.execute(
            "UPDATE financial_metrics SET amount = 2 WHERE department = 'Ops'"
        ).rowcount
        conn.commit()
        fin_new = conn.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'financial_metrics' AND range_start > '2041-12-01'"
        ).fetchone()[0]
        _denied(conn, sql.SQL("UPDATE {} SET amount = 0").format(sql.SQL(fin_new)))
    assert merged == 5 and moved == 4
    david = [(op, n) for op, _, n in _audit_ops(ts.db, "david")[before["david"] :]]
    assert sorted(david) == [("INSERT", 1), ("UPDATE", 4), ("UPDATE", 4)]
    with ts.db.admin() as conn:
        assert not plan(conn, ts.policy)  # new chunks are as the plan wants them
        matrix = verify(conn, ts.policy, ts.passwords, **ts.user_params())
    assert matrix.ok, matrix.to_text()
    chunk_obj = next(c.object for c in matrix.cells if "(chunk of sensor_readings)" in c.object)
    for priv in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
        assert matrix.cell("bob", chunk_obj, priv).expected is False
        assert matrix.cell("bob", chunk_obj, priv).actual is False
    assert matrix.cell("bob", chunk_obj, "SELECT").actual is True


def test_plan_takes_back_write_privileges_on_chunks(ts):
    """A database applied before this fix (chunks writable like their hypertable) or a GRANT
    by hand: plan revokes the writes, apply repairs them, the next plan is empty."""
    _seed_finance(ts.db, days=(0, 10))
    with ts.db.admin() as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        conn.commit()
        internal = _internal_relations(ts.db)
        for rel in internal:
            conn.execute(
                sql.SQL(
                    "GRANT INSERT, UPDATE, DELETE ON {} TO data_engineers, finance_users"
                ).format(sql.SQL(rel))
            )
        conn.commit()
        text = plan(conn, ts.policy).summary()
        conn.rollback()
    for rel in internal:
        assert f"on chunk {rel} of " in text
    assert "revoke DELETE, INSERT, UPDATE on chunk" in text
    with ts.connect("bob") as conn:  # the drift is real before the repair
        conn.execute(
            sql.SQL("DELETE FROM {}").format(sql.SQL(_chunks(ts.db, "sensor_readings")[0]))
        )
        conn.rollback()
    with ts.db.admin() as conn:
        apply(conn, ts.policy, passwords=ts.passwords)
        assert not plan(conn, ts.policy)
    with ts.connect("bob") as conn:
        for rel in internal:
            _no_writes(conn, rel)


def _gina_policy(db):
    from tsaccess.policy import parse_policy

    data = _example_data()
    data["roles"]["fin_loaders"] = {
        "description": "Load financial figures (write only)",
        "grants": {"financial_metrics": ["INSERT"]},
    }
    data["users"]["gina"] = {
        "roles": ["department_managers", "fin_loaders"],
        "attributes": {"department": "Sales"},
    }
    return parse_policy(data)


def test_a_write_only_role_does_not_widen_a_slice(db):
    """gina reads financial_metrics through the sliced department_managers (Sales) and may
    INSERT through fin_loaders (unsliced): her reads stay in her slice."""
    co = apply_company(db, _gina_policy(db))
    _seed_finance(db)
    with db.admin() as conn:
        cmds = dict(
            conn.execute(
                "SELECT roles::text, cmd FROM pg_policies WHERE tablename = 'financial_metrics'"
            ).fetchall()
        )
    assert cmds == {
        "{department_managers}": "SELECT",
        "{fin_loaders}": "INSERT",
        "{finance_users}": "ALL",
    }
    with co.connect("gina") as conn:
        assert _departments(conn) == {"Sales": 4}
        # her INSERT is not sliced (fin_loaders is not), and reads nothing back
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, department)"
            " VALUES (now(), 'load', 'Ops')"
        )
        conn.commit()
        assert _departments(conn) == {"Sales": 4}
        _denied(conn, "UPDATE financial_metrics SET amount = 0")
    with co.connect("carol") as conn:
        assert _departments(conn) == {"Sales": 4}
    with co.connect("david") as conn:
        assert _departments(conn) == {"HR": 4, "Ops": 5, "Sales": 4}
    with db.admin() as conn:
        assert not plan(conn, co.policy)


def test_plan_replaces_the_old_for_all_policies(db):
    """A database applied before the fix has FOR ALL ... USING (true) for fin_loaders:
    plan drops it and creates the per-command policy; then gina is back in her slice."""
    from tsaccess.plan.phases.slices import _digest

    co = apply_company(db, _gina_policy(db))
    _seed_finance(db)
    old = "tsaccess_" + _digest("fin_loaders", "true")
    with db.admin() as conn:
        for (name,) in conn.execute(
            "SELECT policyname FROM pg_policies WHERE tablename = 'financial_metrics'"
            " AND 'fin_loaders' = ANY (roles)"
        ).fetchall():
            conn.execute(
                sql.SQL("DROP POLICY {} ON financial_metrics").format(sql.Identifier(name))
            )
        conn.execute(
            sql.SQL(
                "CREATE POLICY {} ON financial_metrics FOR ALL TO fin_loaders"
                " USING (true) WITH CHECK (true)"
            ).format(sql.Identifier(old))
        )
        conn.commit()
    with co.connect("gina") as conn:  # the old shape widens her slice
        assert _departments(conn) == {"HR": 4, "Ops": 4, "Sales": 4}
    with db.admin() as conn:
        text = plan(conn, co.policy).summary()
        conn.rollback()
        assert f"drop outdated row policy {old} on financial_metrics" in text
        apply(conn, co.policy, passwords=co.passwords)
        assert not plan(conn, co.policy)
    with co.connect("gina") as conn:
        assert _departments(conn) == {"Sales": 4}


def test_a_sliced_reader_of_the_per_row_audit_is_refused(db):
    """The per-row audit view shows the changed rows of every slice to anyone who may read the
    audit and the table's columns: the policy refuses a sliced role (or user) that reads it."""
    from tsaccess import PolicyError
    from tsaccess.policy import parse_policy

    data = _example_data()
    data["roles"]["department_managers"]["grants"]["activity_audit"] = ["SELECT"]
    with pytest.raises(PolicyError, match="read the audit through a role without slices") as err:
        parse_policy(data)
    assert "'department_managers'" in str(err.value) and "'financial_metrics'" in str(err.value)
    assert err.value.path == "roles.department_managers.grants.activity_audit"
    data = _example_data()
    data["users"]["carol"]["roles"] = ["department_managers", "auditors"]
    with pytest.raises(PolicyError, match="user 'carol' sees a slice of 'financial_metrics'"):
        parse_policy(data)
    # an auditor who may read the whole table anyway is no leak; statement-mode tables neither
    data["users"]["carol"]["roles"] = ["department_managers", "auditors", "finance_users"]
    parse_policy(data)
    data = _example_data()
    data["tables"]["financial_metrics"]["audit"] = "statement"
    data["roles"]["department_managers"]["grants"]["activity_audit"] = ["SELECT"]
    parse_policy(data)
    # the shipped example is accepted and applies (the sliced carol does not read the audit)
    co = apply_company(db, parse_policy(_example_data()))
    _seed_finance(db)
    with co.connect("david") as conn:
        conn.execute("UPDATE financial_metrics SET amount = 7 WHERE department IN ('Ops', 'HR')")
        conn.commit()
    with co.connect("carol") as conn:
        _denied(conn, "SELECT * FROM activity_audit_rows")
    with co.connect("eve") as conn:  # the auditor reads the trail, not the figures
        rows = conn.execute("SELECT new_data FROM activity_audit_rows").fetchall()
        assert rows and all(not r[0] for r in rows)
