"""The compiled trigger functions (``tsaccess_native``, issue 27): used where the server has
them, recording exactly the rows the PL/pgSQL functions record, and opening no door.

The equivalence test runs one workload (every statement kind, both audit modes, savepoints,
errors, a DO block that commits, context changes, autocommit, a per-row statement large enough
to be written at once) under each kind of function on the same database and compares the two
trails row for row, the changed rows included.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import psycopg
import pytest

from tests.fix_server import skip_or_fail
from tests.helpers import Company, apply_company
from tsaccess.native import VERSION
from tsaccess.plan.compose import apply, plan

pytestmark = pytest.mark.timescaledb

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _available(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'tsaccess_native'"
    ).fetchone()
    return row[0] if row else None


@pytest.fixture
def company(db) -> Company:
    with db.admin() as conn:
        version = _available(conn)
    if version != VERSION:
        skip_or_fail(
            f"the test server has no tsaccess_native {VERSION} (found: {version}); install it "
            "with `tsaccess native install` (nox does where it can)",
            "TSACCESS_REQUIRE_NATIVE",
        )
    return apply_company(db)


def _languages(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return dict(
        conn.execute(
            "SELECT p.proname, l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
            " WHERE p.proname IN ('tsaccess_audit_stmt', 'tsaccess_chunk_acl')"
        ).fetchall()
    )


def _switch(company: Company, native: str) -> Company:
    policy = dataclasses.replace(company.policy, native=native)
    with company.db.admin() as conn:
        apply(conn, policy, passwords=company.passwords)
        assert not plan(conn, policy, passwords=company.passwords).steps  # idempotent
    return dataclasses.replace(company, policy=policy)


def _clean(company: Company) -> int:
    """Empty the two tables (as the administrator); the id after which the workload's rows
    come."""
    with company.db.admin() as conn:
        conn.execute("DELETE FROM sensor_readings")
        conn.execute("DELETE FROM financial_metrics")
        conn.commit()
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM activity_audit").fetchone()[0])


def _workload(company: Company) -> None:
    ins_s = "INSERT INTO sensor_readings (time, sensor_id, humidity) VALUES (%s, %s, %s)"
    ins_f = "INSERT INTO financial_metrics (time, metric_type, amount) VALUES (%s, %s, %s)"
    with company.connect("bob") as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) VALUES (%s, 'a'), (%s, 'b'), (%s, 'c')",
            (T0, T0, T0),
        )
        with conn.cursor() as cur:
            cur.executemany(ins_s, [(T0 + dt.timedelta(seconds=i), f"m{i}", i) for i in range(5)])
        conn.execute("UPDATE sensor_readings SET humidity = 7 WHERE sensor_id IN ('a', 'b')")
        conn.execute("DELETE FROM sensor_readings WHERE sensor_id = 'c'")
        conn.execute("DELETE FROM sensor_readings WHERE sensor_id = 'none'")  # 0 rows: recorded
        with conn.cursor().copy("COPY sensor_readings (time, sensor_id) FROM STDIN") as copy:
            for i in range(10):
                copy.write_row((T0, f"copy{i}"))
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id)"
            " SELECT %s, 'bulk' || i FROM generate_series(1, 1500) i",
            (T0,),
        )
        # a data-modifying WITH whose DELETE changed nothing: not recorded
        conn.execute("WITH d AS (DELETE FROM sensor_readings WHERE false RETURNING 1) SELECT 1")
        conn.execute("SAVEPOINT s")
        conn.execute(ins_s, (T0, "rolled back", 1))
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute("SAVEPOINT t")
        conn.execute(ins_s, (T0, "released", 2))
        conn.execute("RELEASE SAVEPOINT t")
        conn.execute(
            "DO $$ BEGIN"
            " INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'kept');"
            " BEGIN INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'undone');"
            " RAISE EXCEPTION 'x'; EXCEPTION WHEN raise_exception THEN NULL; END; END $$"
        )
        conn.commit()
        conn.execute(ins_s, (T0, "failed transaction", 3))
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        conn.rollback()
        conn.execute("SET application_name = 'ingest-7'")
        conn.execute("SELECT set_config('tsaccess.actor', 'alice@web', false)")
        conn.execute("SELECT set_config('tsaccess.request_id', 'r-9', true)")
        conn.execute("SET ROLE data_engineers")
        conn.execute(ins_s, (T0, "context", 4))
        conn.commit()
    with company.connect("bob", autocommit=True) as conn:
        for i in range(3):
            conn.execute(ins_s, (T0, f"auto{i}", i))
    with company.connect("david") as conn:  # per-row audit
        conn.execute(ins_f, (T0, "revenue", 10))
        conn.execute(ins_f, (T0, "cost", 5))
        conn.execute("UPDATE financial_metrics SET amount = 11 WHERE metric_type = 'revenue'")
        conn.execute("DELETE FROM financial_metrics WHERE metric_type = 'cost'")
        conn.execute("SAVEPOINT s")
        conn.execute(ins_f, (T0, "rolled back", 0))
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute(  # 1,200 rows: written by the compiled function at once
            "INSERT INTO financial_metrics (time, metric_type, amount)"
            " SELECT %s, 'bulk' || i, i FROM generate_series(1, 1200) i",
            (T0,),
        )
        conn.execute("UPDATE financial_metrics SET amount = amount + 1 WHERE metric_type ~ '^bulk'")
        conn.commit()
    with company.db.admin(autocommit=True) as conn:  # a COMMIT inside a DO block
        conn.execute(
            "DO $$ BEGIN DELETE FROM financial_metrics WHERE amount > 1000; COMMIT; END $$"
        )
        conn.execute("TRUNCATE sensor_readings")


def _trail(company: Company, after: int) -> list[tuple[Any, ...]]:
    """The audit rows after id ``after`` in id order, and per row the changed rows (as text,
    sorted): what both kinds of function must record alike."""
    with company.db.admin() as conn:
        rows = conn.execute(
            "SELECT a.id, a.txid, a.username, a.operation, a.table_name, a.description,"
            " a.effective_role, a.application_name, a.actor, a.request_id, a.row_count,"
            " a.client_asserted, a.event_time,"
            " (SELECT array_agg(c ORDER BY c) FROM (SELECT coalesce(d.old_data::text, '-')"
            "  || '>' || coalesce(d.new_data::text, '-') AS c"
            "  FROM tsaccess_audit.financial_metrics d WHERE d.audit_id = a.id"
            "  AND d.event_time = a.event_time) changed)"
            " FROM activity_audit a WHERE a.id > %s ORDER BY a.id",
            (after,),
        ).fetchall()
    txids = {t: n for n, t in enumerate(dict.fromkeys(r[1] for r in rows))}
    return [(txids[r[1]], *r[2:12], r[13]) for r in rows]


def test_the_compiled_functions_record_what_the_plpgsql_ones_record(company):
    with company.db.admin() as conn:
        assert _languages(conn) == {"tsaccess_audit_stmt": "c", "tsaccess_chunk_acl": "c"}
    start = _clean(company)
    _workload(company)
    compiled = _trail(company, after=start)
    plain = _switch(company, "off")
    with company.db.admin() as conn:
        assert _languages(conn) == {
            "tsaccess_audit_stmt": "plpgsql",
            "tsaccess_chunk_acl": "plpgsql",
        }
    start = _clean(plain)
    _workload(plain)
    by_plpgsql = _trail(plain, after=start)
    assert compiled == by_plpgsql
    ops = [r[2:5] for r in compiled]
    assert ("INSERT", "sensor_readings", "INSERT of 1500 row(s)") in ops
    assert ("TRUNCATE", "sensor_readings", "TRUNCATE") in ops
    assert not any("rolled back" in str(r) or "undone" in str(r) for r in compiled)
    # revenue, cost, the update, the delete, 1,200 inserted and updated, 201 deleted at once
    assert sum(len(r[-1] or ()) for r in compiled) == 1 + 1 + 1 + 1 + 1200 + 1200 + 201
    _switch(plain, "prefer")  # and back: the plan after it is empty again
    with company.db.admin() as conn:
        assert _languages(conn) == {"tsaccess_audit_stmt": "c", "tsaccess_chunk_acl": "c"}


def test_no_policy_user_may_run_or_attach_a_compiled_or_flush_function(company):
    """Swept from the catalog: every tsaccess function of the policy's and the data schema is
    executable by a policy user only where it must be (the DENIED recorder, the chunk fixer and
    the gate's slow path); the trigger and flush functions by nobody. And the two attacks: a
    writer calling the flush function with forged rows, and attaching the audit trigger to a
    table of its own to write rows of its choosing."""
    callable_by_users = {
        "tsaccess_audit_denied",  # anyone may record a refusal (rate-limited)
        "tsaccess_audit_chain_status",  # auditors and the monitor read the chain's state
        "tsaccess_chunk_fix",  # writers: the gate runs as the writer
        "tsaccess_chunk_gate_slow",
    }
    users = [u.name for u in company.policy.users]
    with company.db.admin() as conn:
        functions = conn.execute(
            "SELECT p.oid::regprocedure::text, p.proname FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname IN ('public', 'tsaccess_audit') AND p.proname LIKE 'tsaccess%'"
        ).fetchall()
        names = {name for _, name in functions}
        assert {"tsaccess_audit_flush", "tsaccess_audit_stmt", "tsaccess_chunk_acl"} <= names
        assert any(n.startswith("tsaccess_flush_") for n in names)  # financial_metrics'
        allowed = {
            (user, sig)
            for sig, name in functions
            for user in users
            if conn.execute(
                "SELECT has_function_privilege(%s, %s::regprocedure, 'EXECUTE')", (user, sig)
            ).fetchone()[0]
        }
    assert {sig.split("(")[0].split(".")[-1] for _, sig in allowed} <= callable_by_users
    with company.connect("bob") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "SELECT public.tsaccess_audit_flush(ARRAY[1]::bigint[], ARRAY['INSERT'],"
                " ARRAY['sensor_readings'], ARRAY['forged'], ARRAY[1]::bigint[],"
                " ARRAY[10]::oid[], NULL, NULL, NULL, NULL)"
            )
        conn.rollback()
    with company.db.admin() as conn:  # a database looser than tsaccess makes it
        conn.execute(f"GRANT TEMP ON DATABASE {company.db.name} TO bob")
        conn.commit()
    with company.connect("bob") as conn:
        conn.execute("CREATE TEMP TABLE mine (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "CREATE TRIGGER forge AFTER INSERT ON mine REFERENCING NEW TABLE AS n"
                " FOR EACH STATEMENT EXECUTE FUNCTION"
                " public.tsaccess_audit_stmt('financial_metrics', 'counted',"
                " 'public.activity_audit')"
            )


def test_a_commit_whose_audit_rows_cannot_be_written_fails_and_changes_nothing(company):
    with company.db.admin() as conn:
        conn.execute("DROP FUNCTION public.tsaccess_audit_flush")
        conn.commit()
    with company.connect("bob") as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'lost?')")
        with pytest.raises(psycopg.Error, match="tsaccess_audit_flush") as err:
            conn.commit()
        assert "tsaccess apply" in (err.value.diag.message_hint or "")
    with company.db.admin() as conn:
        assert not conn.execute(
            "SELECT FROM sensor_readings WHERE sensor_id = 'lost?'"
        ).fetchall()  # the write was rolled back with its audit rows
        steps = plan(conn, company.policy, passwords=company.passwords).steps
        assert any("tsaccess_audit_flush" in s.summary for s in steps)
        conn.rollback()
        apply(conn, company.policy, passwords=company.passwords)
    with company.connect("bob") as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'kept')")
        conn.commit()
    with company.db.admin() as conn:
        assert conn.execute(
            "SELECT count(*) FROM activity_audit WHERE username = 'bob' AND operation = 'INSERT'"
        ).fetchone() == (1,)


def test_ten_thousand_statements_and_savepoints_keep_every_record_in_order(company):
    """Past 10,000 records a top-level transaction writes them early (bounded memory); inside
    a savepoint it keeps them: a rollback to it drops them all, a release keeps them."""
    rows = [(T0 + dt.timedelta(seconds=i), f"s{i}") for i in range(10_500)]
    insert = "INSERT INTO sensor_readings (time, sensor_id) VALUES (%s, %s)"
    with company.connect("bob") as conn:
        with conn.cursor() as cur:
            cur.executemany(insert, rows[:10_200])
        conn.execute("SAVEPOINT s")
        with conn.cursor() as cur:
            cur.executemany(insert, rows[:10_500])
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute("SAVEPOINT t")
        with conn.cursor() as cur:
            cur.executemany(insert, rows[:300])
        conn.execute("RELEASE SAVEPOINT t")
        conn.commit()
    with company.db.admin() as conn:
        got = conn.execute(
            "SELECT id, row_count FROM activity_audit WHERE username = 'bob' ORDER BY id"
        ).fetchall()
        kept = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()[0]
    assert kept == len(got) == 10_500
    assert all(n == 1 for _, n in got)
    assert [i for i, _ in got] == sorted({i for i, _ in got})


def test_a_writers_search_path_and_temporary_objects_do_not_reach_the_flush(company):
    """The records are written in the writer's session, at its commit: what it puts in
    pg_temp or on its search_path must not catch them (in a database looser than tsaccess
    makes it: bob may create temporary tables)."""
    with company.db.admin() as conn:
        conn.execute(f"GRANT TEMP ON DATABASE {company.db.name} TO bob")
        conn.commit()
    with company.connect("bob") as conn:
        conn.execute(  # the audit table's columns: an INSERT meant for it would fit
            "CREATE TEMP TABLE activity_audit (id bigint, event_time timestamptz, username text,"
            " operation text, table_name text, description text, effective_role text,"
            " txid bigint, client_addr inet, application_name text, actor text,"
            " request_id text, row_count bigint, client_asserted boolean)"
        )
        conn.execute("SET search_path = pg_temp, public")
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM pg_temp.activity_audit").fetchone() == (0,)
    with company.db.admin() as conn:
        assert conn.execute(
            "SELECT count(*) FROM public.activity_audit WHERE username = 'bob'"
        ).fetchone() == (1,)


def test_a_table_audited_per_row_can_still_be_dropped_or_audited_otherwise(company):
    """Each per-row flush function takes its table's row type: apply drops the ones no table
    uses any more, so the table is not held by them (audited per statement, then dropped)."""
    tables = tuple(
        dataclasses.replace(t, audit="statement") if t.name == "financial_metrics" else t
        for t in company.policy.tables
    )
    per_statement = dataclasses.replace(company.policy, tables=tables)
    with company.db.admin() as conn:
        apply(conn, per_statement, passwords=company.passwords)
        assert not conn.execute(
            "SELECT FROM pg_proc WHERE proname LIKE 'tsaccess_flush_%'"
        ).fetchall()
        conn.commit()
    with company.connect("david") as conn:
        conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'x')")
        conn.commit()
    with company.db.admin() as conn:
        apply(conn, company.policy, passwords=company.passwords)  # per row again
        without = dataclasses.replace(
            company.policy,
            tables=tuple(t for t in company.policy.tables if t.name != "financial_metrics"),
            roles=tuple(
                dataclasses.replace(
                    r,
                    grants=tuple(g for g in r.grants if g[0] != "financial_metrics"),
                    column_grants=tuple(g for g in r.column_grants if g[0] != "financial_metrics"),
                    slices=tuple(x for x in r.slices if x.table != "financial_metrics"),
                )
                for r in company.policy.roles
            ),
        )
        apply(conn, without, passwords=company.passwords, drop_removed_tables=True)
        assert conn.execute("SELECT to_regclass('public.financial_metrics')").fetchone() == (None,)


def test_altering_a_per_row_table_after_its_audited_writes_fails_the_commit(company):
    """The changed rows are kept with the row type of their statement: when the table's
    columns change before the commit, they are refused (never read with the new layout)."""
    with company.connect("david") as conn:
        conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'x')")
        conn.commit()
    with company.db.admin() as conn:
        conn.execute("UPDATE financial_metrics SET amount = 1.5")
        conn.execute("ALTER TABLE financial_metrics ALTER COLUMN amount TYPE numeric(14,2)")
        with pytest.raises(psycopg.Error, match="columns of a table audited per row changed"):
            conn.commit()
    with company.db.admin() as conn:
        assert conn.execute("SELECT amount FROM financial_metrics").fetchall() == [(None,)]


def test_every_function_the_trigger_calls_must_be_the_audit_owners(company):
    """Hardening: trigger arguments naming a function of another role (here the superuser's)
    are refused, for the changed rows' flush and for the bulk per-row function alike."""
    with company.db.admin() as conn:
        conn.execute(
            "CREATE FUNCTION public.not_theirs(bigint[], text[], financial_metrics[],"
            " financial_metrics[]) RETURNS void LANGUAGE sql AS 'SELECT'"
        )
        conn.execute(
            "CREATE FUNCTION public.not_theirs_bulk() RETURNS trigger LANGUAGE plpgsql"
            " AS 'BEGIN RETURN NULL; END'"
        )
        conn.execute(
            "CREATE TRIGGER forged AFTER INSERT ON financial_metrics REFERENCING NEW TABLE AS"
            " tsaccess_new FOR EACH STATEMENT EXECUTE FUNCTION public.tsaccess_audit_stmt("
            "'financial_metrics', 'rows', 'public.activity_audit', 'public.not_theirs',"
            " 'public.not_theirs_bulk')"
        )
        conn.commit()
    with company.connect("david") as conn:
        conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'x')")
        with pytest.raises(psycopg.Error, match="not owned by the audit trigger function's owner"):
            conn.commit()
    with company.connect("david") as conn, pytest.raises(psycopg.Error, match="not a trigger"):
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type)"
            " SELECT now(), 'bulk' || i FROM generate_series(1, 1000) i"
        )


def test_after_set_session_authorization_the_role_recorded_is_the_new_login(company):
    """As current_setting('role') shows it (and the PL/pgSQL function records it): SET SESSION
    AUTHORIZATION ends an earlier SET ROLE."""
    with company.db.admin() as conn:
        conn.execute("SET ROLE data_engineers")
        conn.execute("SET SESSION AUTHORIZATION bob")
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')")
        conn.commit()
        conn.execute("RESET SESSION AUTHORIZATION")
        row = conn.execute(
            "SELECT username, effective_role FROM activity_audit"
            " WHERE table_name = 'sensor_readings' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row == ("bob", "bob")


def test_a_savepoint_around_every_statement_keeps_memory_bounded_and_the_trail_exact(company):
    """Past 10,000 records held at the top level, each statement's record is written in its
    own savepoint as it runs (and rolled back with it); the trail stays exact."""
    insert = "INSERT INTO sensor_readings (time, sensor_id) VALUES (%s, %s)"
    with company.connect("bob") as conn:
        with conn.transaction():
            for i in range(10_100):
                with conn.transaction():  # a savepoint per statement, released
                    conn.execute(insert, (T0, f"s{i}"))
            with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
                conn.execute(insert, (T0, "rolled back"))
                conn.execute("SELECT 1 / 0")
    with company.db.admin() as conn:
        got = conn.execute(
            "SELECT count(*), count(DISTINCT id), sum(row_count) FROM activity_audit"
            " WHERE username = 'bob'"
        ).fetchone()
        kept = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
    assert got == (10_100, 10_100, 10_100)
    assert kept == (10_100,)
