"""The audit trail: it works for non-owner writers, names the login user and the table, and
resists tampering (each attack is tried)."""

from __future__ import annotations

import random
import threading

import psycopg
import pytest
from psycopg import sql

import tsaccess
from tests.helpers import apply_company
from tsaccess import audit, monitoring
from tsaccess.audit import ddl
from tsaccess.catalog import read_catalog
from tsaccess.native import use_native
from tsaccess.plan.compose import install_audit, plan
from tsaccess.policy import parse_policy


@pytest.fixture
def company(db):
    return apply_company(db)


def _rows(db, where: str = "true", params=()):
    with db.admin() as conn:
        return conn.execute(
            f"SELECT username, operation, table_name, row_count, effective_role, actor,"
            f" request_id, client_asserted, application_name"
            f" FROM activity_audit WHERE {where} ORDER BY id",
            params,
        ).fetchall()


def _changes(db, where: str = "true"):
    """The per-row view, as the audit owner sees it: (audit_id, table, operation, old, new)."""
    with db.admin() as conn:
        return conn.execute(
            "SELECT audit_id, table_name, operation, old_data, new_data FROM activity_audit_rows"
            f" WHERE {where} ORDER BY audit_id, new_data->>'metric_type', old_data->>'metric_type'"
        ).fetchall()


def test_writes_by_non_owners_succeed_and_name_login_user_and_table(company):
    with company.connect("bob", role="data_engineers") as conn:
        audit.set_actor(conn, "jupyter:bob", "req-42")
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) SELECT now(), 's' || i"
            " FROM generate_series(1, 10) i"
        )
        conn.execute("UPDATE sensor_readings SET temperature = 1 WHERE sensor_id IN ('s1', 's2')")
        conn.execute("DELETE FROM sensor_readings WHERE sensor_id = 's3'")
        conn.commit()
    with company.connect("david") as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount)"
            " VALUES (now(), 'revenue', 10), (now(), 'cost', 4)"
        )
        conn.commit()
    rows = _rows(company.db)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("bob", "INSERT", "sensor_readings", 10),
        ("bob", "UPDATE", "sensor_readings", 2),
        ("bob", "DELETE", "sensor_readings", 1),
        ("david", "INSERT", "financial_metrics", 2),
    ]
    bob = rows[0]
    assert bob[4] == "data_engineers"  # effective role captured before the definer switch
    assert (bob[5], bob[6]) == ("jupyter:bob", "req-42")
    assert bob[8] == "tsaccess:bob/data_engineers"
    assert bob[7]  # its actor, request id and application_name are the client's word
    # per-row mode: one row per changed row, with its data, tied to david's statement
    changed = _changes(company.db)
    assert [(c[1], c[2], c[3], c[4]["metric_type"]) for c in changed] == [
        ("financial_metrics", "INSERT", None, "cost"),
        ("financial_metrics", "INSERT", None, "revenue"),
    ]
    assert float(changed[1][4]["amount"]) == 10
    assert len({c[0] for c in changed}) == 1
    with company.connect("eve") as conn:
        # eve sees the changes but none of their values: she may not read financial_metrics
        seen = audit.changes(conn, "financial_metrics")
        assert [(c.operation, c.old_data, c.new_data) for c in seen] == [("INSERT", None, {})] * 2
        assert {(c.username, c.effective_role) for c in seen} == {("david", "david")}  # no SET ROLE


def test_per_row_update_pairs_old_and_new(company):
    with company.connect("david") as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount)"
            " SELECT now(), 'm' || i, i FROM generate_series(1, 50) i"
        )
        conn.execute("UPDATE financial_metrics SET amount = amount * 10")
        conn.execute("DELETE FROM financial_metrics WHERE amount > 400")
        conn.commit()
    assert [r[3] for r in _rows(company.db)] == [50, 50, 10]
    updates = _changes(company.db, "operation = 'UPDATE'")
    assert len(updates) == 50
    for _, _, _, old, new in updates:
        assert old["metric_type"] == new["metric_type"]
        assert float(new["amount"]) == float(old["amount"]) * 10
    deletes = _changes(company.db, "operation = 'DELETE'")
    assert sorted(int(float(d[3]["amount"])) for d in deletes) == list(range(410, 510, 10))
    assert all(d[4] is None for d in deletes)


def test_per_row_column_lists_and_a_new_column_keep_history(db):
    """Excluded columns never reach the row data; auditing one more column later adds it to
    the row type without losing what was recorded before."""
    base: dict = {
        "database": {"name": db.name, "timescaledb": "off"},
        "tables": {
            "payroll": {
                "audit": "row",
                "audit_exclude": ["salary"],
                "columns": {"id": "integer", "name": "text", "salary": "numeric", "note": "text"},
            }
        },
        "roles": {"hr": {"grants": {"payroll": ["SELECT", "INSERT", "UPDATE"]}}},
        "users": {"hank": {"roles": ["hr"]}},
    }
    company = apply_company(db, parse_policy(base))
    with company.connect("hank") as conn:
        conn.execute("INSERT INTO payroll VALUES (1, 'ann', 5000, 'x')")
        conn.commit()
    first = _view_data(db)
    assert first == [{"id": 1, "name": "ann", "note": "x"}]  # no salary
    # audit only id and salary from now on: name and note stop being recorded
    base["tables"]["payroll"]["audit_exclude"] = []
    base["tables"]["payroll"]["audit_columns"] = ["id", "salary"]
    company = apply_company(db, parse_policy(base))
    with db.admin() as conn:
        assert not plan(conn, company.policy, passwords=company.passwords)  # converged
        attrs = conn.execute(
            "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute"
            " WHERE attrelid = 'tsaccess_audit.payroll_row'::regclass AND attnum > 0"
        ).fetchone()[0]
    assert attrs == ["id", "name", "note", "salary"]  # appended, nothing dropped
    with company.connect("hank") as conn:
        conn.execute("INSERT INTO payroll VALUES (2, 'bo', 6000, 'y')")
        conn.commit()
    assert _view_data(db) == [{"id": 1, "salary": None}, {"id": 2, "salary": 6000}]
    with db.admin() as conn:  # the earlier values are kept, only hidden by the view
        kept = conn.execute(
            "SELECT (new_data).name FROM tsaccess_audit.payroll ORDER BY audit_id"
        ).fetchall()
    assert kept == [("ann",), (None,)]


def _view_data(db):
    with db.admin() as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT new_data FROM activity_audit_rows ORDER BY audit_id"
            ).fetchall()
        ]


def test_truncate_is_recorded(company):
    with company.db.admin(autocommit=True) as conn:
        conn.execute("GRANT TRUNCATE ON sensor_readings TO data_engineers")
    with company.connect("bob") as conn:
        conn.execute("TRUNCATE sensor_readings")
        conn.commit()
    assert [(r[0], r[1], r[2]) for r in _rows(company.db)] == [
        ("bob", "TRUNCATE", "sensor_readings")
    ]


def test_only_auditors_read_the_trail(company):
    with company.connect("bob") as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')")
        conn.commit()
    with company.connect("eve") as conn:
        events = audit.recent(conn)
        assert [e.username for e in events] == ["bob"]
    for user in ("alice", "bob", "carol", "david"):
        with company.connect(user) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM activity_audit")


TAMPERING = [
    "INSERT INTO activity_audit (username, operation) VALUES ('bob', 'FORGED')",
    "UPDATE activity_audit SET username = 'nobody'",
    "DELETE FROM activity_audit",
    "TRUNCATE activity_audit",
    "ALTER TABLE sensor_readings DISABLE TRIGGER ALL",
    "ALTER TABLE sensor_readings DISABLE TRIGGER USER",
    "DROP TRIGGER {trigger} ON sensor_readings",
    "ALTER TABLE sensor_readings DISABLE TRIGGER {trigger}",
    "SET session_replication_role = replica",
    "ALTER TABLE activity_audit OWNER TO bob",
    "DROP FUNCTION public.tsaccess_audit_stmt() CASCADE",
    "CREATE OR REPLACE FUNCTION public.tsaccess_audit_stmt() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RETURN NULL; END $$",
    "SELECT public.tsaccess_audit_stmt()",
    "SET ROLE tsaccess_audit",
    # the per-row data: private schema, definer function, row type and view
    "INSERT INTO tsaccess_audit.financial_metrics (audit_id, event_time) VALUES (1, now())",
    "DELETE FROM tsaccess_audit.financial_metrics",
    "SELECT * FROM tsaccess_audit.financial_metrics",
    "SELECT tsaccess_audit.financial_metrics()",
    "CREATE OR REPLACE FUNCTION tsaccess_audit.financial_metrics() RETURNS trigger"
    " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
    "ALTER TYPE tsaccess_audit.financial_metrics_row DROP ATTRIBUTE amount",
    "CREATE TABLE tsaccess_audit.decoy (x int)",
    "CREATE OR REPLACE VIEW activity_audit_rows AS SELECT * FROM activity_audit_rows WHERE false",
    "DROP VIEW activity_audit_rows",
    "ALTER TABLE financial_metrics DISABLE TRIGGER ALL",
    "DROP TRIGGER {row_trigger} ON financial_metrics",
]


@pytest.mark.parametrize("attack", TAMPERING)
@pytest.mark.parametrize("user", ["bob", "david", "eve"])
def test_users_cannot_edit_or_bypass_the_audit(company, user, attack):
    """bob writes sensor_readings (per statement), david financial_metrics (per row), eve reads
    the trail: none of them can change it, forge it, read around it or switch it off."""
    with company.connect("bob") as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')")
        conn.commit()
    with company.connect("david") as conn:
        conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'm')")
        conn.commit()
    before = _rows(company.db), _changes(company.db)
    with company.db.admin() as conn:
        trigger, row_trigger = (
            conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass"
                " AND tgname LIKE 'tsaccess_audit_ins%%'",
                (t,),
            ).fetchone()[0]
            for t in ("sensor_readings", "financial_metrics")
        )
    with company.connect(user) as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(attack.format(trigger=trigger, row_trigger=row_trigger))
        assert err.value.sqlstate in ("42501", "0A000", "42809"), err.value
    assert (_rows(company.db), _changes(company.db)) == before
    if user != "eve":  # the triggers still fire
        with company.connect(user) as conn:
            if user == "bob":
                conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'y')")
            else:
                conn.execute(
                    "INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'n')"
                )
            conn.commit()
        assert len(_rows(company.db)) == len(before[0]) + 1
        assert len(_changes(company.db)) == len(before[1]) + (user == "david")


def test_denied_function_is_the_only_door_and_marks_events_client_asserted(company):
    with company.connect("alice") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')")
        conn.rollback()
        assert audit.record_denied(
            conn,
            "INSERT INTO sensor_readings ...",
            "42501 permission denied",
            table_name="sensor_readings",
        )
    rows = _rows(company.db)
    assert [(r[0], r[1], r[2], r[7]) for r in rows] == [
        ("alice", "DENIED", "sensor_readings", True)
    ]
    # a user without any group role cannot call it
    pw = company.db.create_login("outsider")
    with company.db.admin(autocommit=True) as conn:
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO outsider").format(
                sql.Identifier(company.db.name)
            )
        )
        conn.execute("GRANT USAGE ON SCHEMA public TO outsider")
    with company.db.connect_as("outsider", pw) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT public.tsaccess_audit_denied('x', 'y')")


def test_denied_event_survives_the_callers_failed_transaction(company):
    with company.connect("alice") as conn:
        conn.execute("SELECT 1 FROM sensor_readings LIMIT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM sensor_readings")
        # the transaction is aborted: the event goes through a side connection
        assert audit.record_denied(conn, "DELETE FROM sensor_readings", "42501")
        conn.rollback()
    assert [r[1] for r in _rows(company.db)] == ["DENIED"]


def test_search_path_hijack_of_the_definer_function_fails(company):
    """bob controls a schema placed first on his and david's search_path, with look-alike
    functions and tables; the definer functions qualify every name (the trigger functions)
    or pin their own search_path, so none of them runs and both audit modes record the
    truth."""
    with company.db.admin(autocommit=True) as conn:
        conn.execute("CREATE SCHEMA evil AUTHORIZATION bob")
    with company.connect("bob") as conn:
        conn.execute("""
            CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql
              AS $$ SELECT '{"hijacked": true}'::jsonb $$;
            CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql
              AS $$ SELECT '1999-01-01'::timestamptz $$;
            CREATE FUNCTION evil.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE sql
              AS $$ SELECT $1[1] $$;
            CREATE TABLE evil.activity_audit (username text, operation text, table_name text,
              description text, effective_role text, txid bigint, client_addr inet,
              application_name text, actor text, request_id text, row_count bigint);
            CREATE TABLE evil.financial_metrics (audit_id bigint, event_time timestamptz,
              old_data text, new_data text);
            CREATE FUNCTION evil.inet_client_addr() RETURNS inet LANGUAGE sql
              AS $$ SELECT '6.6.6.6'::inet $$;
            GRANT USAGE ON SCHEMA evil TO PUBLIC;
            GRANT ALL ON ALL TABLES IN SCHEMA evil TO PUBLIC;
        """)
        conn.execute("SET search_path = evil, public, pg_catalog")
        conn.execute(
            "INSERT INTO public.sensor_readings (time, sensor_id) VALUES (pg_catalog.now(), 'x')"
        )
        conn.commit()
    with company.connect("david") as conn:
        conn.execute("SET search_path = evil, public, pg_catalog")
        conn.execute(
            "INSERT INTO public.financial_metrics (time, metric_type, amount)"
            " SELECT pg_catalog.now(), 'm' || i, i FROM pg_catalog.generate_series(1, 3) i"
        )
        conn.execute("UPDATE public.financial_metrics SET amount = amount + 1")
        conn.commit()
        for t in ("activity_audit", "financial_metrics"):
            assert conn.execute(f"SELECT count(*) FROM evil.{t}").fetchone() == (0,)
    rows = _rows(company.db)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("bob", "INSERT", "sensor_readings", 1),
        ("david", "INSERT", "financial_metrics", 3),
        ("david", "UPDATE", "financial_metrics", 3),
    ]
    changed = _changes(company.db, "operation = 'UPDATE'")
    assert sorted(float(c[4]["amount"]) - float(c[3]["amount"]) for c in changed) == [1, 1, 1]
    assert "hijacked" not in str(rows) + str(_changes(company.db))
    with company.db.admin() as conn:
        assert conn.execute(
            "SELECT count(*) FROM activity_audit WHERE event_time < '2000-01-01'"
            " OR client_addr = '6.6.6.6'"
        ).fetchone() == (0,)


def test_no_loss_no_phantoms_under_concurrency(company):
    """8 writers x 500 mixed statements, some rolled back: audit rows == committed statements.

    Six write sensor_readings (audited per statement), two financial_metrics (per row): there
    every statement's changed rows must be exactly its row count, with the data written."""
    expected: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rnd = random.Random(n)
        user, table, key, val = (
            ("bob", "sensor_readings", "sensor_id", "humidity")
            if n < 6
            else ("david", "financial_metrics", "metric_type", "amount")
        )
        t, k, v = sql.Identifier(table), sql.Identifier(key), sql.Identifier(val)
        try:
            with company.connect(user) as conn:
                for i in range(500):
                    op = rnd.choice(["INSERT", "INSERT", "UPDATE", "DELETE"])
                    if op == "INSERT":
                        q = sql.SQL(
                            "INSERT INTO {} (time, {}, {}) SELECT now(), %s, 0"
                            " FROM generate_series(1, %s)"
                        ).format(t, k, v)
                        cur = conn.execute(q, (f"w{n}", rnd.randint(1, 5)))
                    elif op == "UPDATE":
                        q = sql.SQL("UPDATE {} SET {} = %s WHERE {} = %s").format(t, v, k)
                        cur = conn.execute(q, (i, f"w{n}"))
                    else:
                        q = sql.SQL("DELETE FROM {} WHERE {} = %s AND {} = %s").format(t, k, v)
                        cur = conn.execute(q, (f"w{n}", rnd.randint(0, 499)))
                    if rnd.random() < 0.2:
                        conn.rollback()
                    else:
                        conn.commit()
                        with lock:
                            expected.append((user, op, cur.rowcount))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = sorted((r[0], r[1], r[3]) for r in _rows(company.db))
    assert got == sorted(expected)
    assert len(got) > 8 * 500 * 0.7
    with company.db.admin() as conn:
        mismatched = conn.execute(
            "SELECT a.id, a.row_count, count(r.audit_id) FROM activity_audit a"
            " LEFT JOIN activity_audit_rows r ON r.audit_id = a.id"
            " WHERE a.table_name = 'financial_metrics'"
            " GROUP BY a.id, a.row_count HAVING a.row_count <> count(r.audit_id)"
        ).fetchall()
        assert mismatched == []
        bad_data = conn.execute(
            "SELECT count(*) FROM activity_audit_rows WHERE NOT ("
            " (operation = 'INSERT' AND old_data IS NULL AND new_data->>'metric_type' ~ '^w[67]$')"
            " OR (operation = 'UPDATE' AND old_data->>'metric_type' = new_data->>'metric_type')"
            " OR (operation = 'DELETE' AND new_data IS NULL AND old_data IS NOT NULL))"
        ).fetchone()
        assert bad_data == (0,)
        total = conn.execute("SELECT count(*) FROM activity_audit_rows").fetchone()[0]
    assert total == sum(n for u, _, n in expected if u == "david") > 0


def test_query_helpers(company):
    with company.connect("bob") as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x'), (now(), 'y')"
        )
        conn.commit()
    with company.connect("eve") as conn:
        s = audit.summary(conn)
        assert [(r.username, r.operation, r.table_name, r.events, r.rows) for r in s] == [
            ("bob", "INSERT", "sensor_readings", 1, 2)
        ]
        a = audit.activity(conn)
        assert sum(b.events for b in a) == 1
        h = audit.history(conn, "sensor_readings", user="bob")
        assert len(h) == 1
        sessions = monitoring.active_sessions(conn)
        mine = [x for x in sessions if x.username == "eve"]
        assert mine
        assert mine[0].ssl
        assert "<table" in s._repr_html_()
        assert "bob" in s.to_text()
        roles = {r.rolname: r for r in monitoring.roles(conn)}
        assert roles["bob"].member_of == ["data_engineers"]
        assert not roles["data_engineers"].rolcanlogin


_PLAIN_LEDGER = "CREATE TABLE ledger (id int, amount numeric, secret text)"


def _hand_made(db, ledger: str = _PLAIN_LEDGER) -> str:
    """A database built without tsaccess: tables, group roles, a writer (wendy)."""
    pw = db.create_login("wendy")
    with db.admin(autocommit=True) as conn:
        conn.execute(ledger)
        conn.execute(
            sql.SQL("""
            CREATE TABLE readings (time timestamptz NOT NULL, sensor text, value float8);
            CREATE ROLE writers NOLOGIN;
            CREATE ROLE auditors NOLOGIN;
            GRANT INSERT, UPDATE ON readings TO writers;
            GRANT INSERT, UPDATE, DELETE, SELECT ON ledger TO writers;
            GRANT writers TO wendy;
            GRANT CONNECT ON DATABASE {} TO writers;
            """).format(sql.Identifier(db.name))
        )
    return pw


_INSTALL_POLICY = {
    "tables": {
        "readings": {"columns": {"time": "timestamptz not null", "sensor": "text"}},
        "ledger": {
            "audit": "row",
            "audit_exclude": ["secret"],
            "columns": {"id": "integer", "amount": "numeric", "secret": "text"},
        },
    },
    "roles": {"writers": {"grants": {}}, "auditors": {"grants": {"activity_audit": ["SELECT"]}}},
}


def test_install_audits_an_existing_database_and_only_touches_the_audit(db):
    pw = _hand_made(db)
    policy = parse_policy({"database": {"name": db.name, "timescaledb": "off"}, **_INSTALL_POLICY})
    with db.admin() as conn:
        preview = plan(conn, policy, phases=("audit",))
        assert preview and all(s.phase == "audit" for s in preview.steps)
        conn.rollback()
        result = install_audit(conn, policy)
        assert result.applied == len(preview)
        assert not plan(conn, policy, phases=("audit",))  # idempotent
        # nothing outside the audit changed: wendy keeps her grants, no revokes happened
        assert conn.execute(
            "SELECT has_table_privilege('wendy', 'readings', 'INSERT'),"
            " has_table_privilege('wendy', 'readings', 'SELECT')"
        ).fetchone() == (True, False)
    with db.connect_as("wendy", pw) as conn:
        conn.execute("INSERT INTO readings VALUES (now(), 'a', 1), (now(), 'b', 2)")
        conn.execute("INSERT INTO ledger VALUES (1, 9.5, 'do not log')")
        conn.execute("UPDATE ledger SET amount = 10")
        conn.commit()
    assert [(r[0], r[1], r[2], r[3]) for r in _rows(db)] == [
        ("wendy", "INSERT", "readings", 2),
        ("wendy", "INSERT", "ledger", 1),
        ("wendy", "UPDATE", "ledger", 1),
    ]
    with db.admin() as conn:
        data = conn.execute(
            "SELECT operation, old_data, new_data FROM activity_audit_rows ORDER BY audit_id"
        ).fetchall()
    assert data == [
        ("INSERT", None, {"id": 1, "amount": 9.5}),
        ("UPDATE", {"id": 1, "amount": 9.5}, {"id": 1, "amount": 10}),
    ]


def test_install_refuses_missing_objects_before_changing_anything(db):
    _hand_made(db)
    broken = {**_INSTALL_POLICY, "tables": {**_INSTALL_POLICY["tables"]}}
    broken["tables"]["nowhere"] = {"columns": {"x": "text"}}
    policy = parse_policy({"database": {"name": db.name, "timescaledb": "off"}, **broken})
    with db.admin() as conn, pytest.raises(tsaccess.PolicyError) as err:
        install_audit(conn, policy)
    assert err.value.path == "tables.nowhere"
    assert "does not exist; create it first" in str(err.value)
    no_role = {**_INSTALL_POLICY, "roles": {"ghosts": {"grants": {"activity_audit": ["SELECT"]}}}}
    policy = parse_policy({"database": {"name": db.name, "timescaledb": "off"}, **no_role})
    with db.admin() as conn, pytest.raises(tsaccess.PolicyError, match="role 'ghosts' does not"):
        install_audit(conn, policy)
    with db.admin() as conn:  # nothing was created
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'activity_audit%'"
        ).fetchone() == (0,)


def test_install_on_a_partitioned_table_records_the_parent(db):
    """Plain PostgreSQL partitions: the statement triggers go on the partitioned parent and
    see the rows routed to every partition; the audit names the parent."""
    pw = _hand_made(
        db,
        "CREATE TABLE ledger (id int, amount numeric, secret text) PARTITION BY RANGE (id);"
        " CREATE TABLE ledger_low PARTITION OF ledger FOR VALUES FROM (0) TO (100);"
        " CREATE TABLE ledger_high PARTITION OF ledger FOR VALUES FROM (100) TO (200)",
    )
    policy = parse_policy({"database": {"name": db.name, "timescaledb": "off"}, **_INSTALL_POLICY})
    with db.admin() as conn:
        install_audit(conn, policy)
    with db.connect_as("wendy", pw) as conn:
        conn.execute("INSERT INTO ledger VALUES (1, 1, 'x'), (150, 2, 'y')")
        conn.execute("UPDATE ledger SET id = id + 100 WHERE id = 1")  # moves partition
        conn.execute("DELETE FROM ledger WHERE id >= 100")
        conn.commit()
    assert [(r[1], r[2], r[3]) for r in _rows(db)] == [
        ("INSERT", "ledger", 2),
        ("UPDATE", "ledger", 1),
        ("DELETE", "ledger", 2),
    ]
    with db.admin() as conn:
        data = conn.execute(
            "SELECT operation, old_data->>'id', new_data->>'id' FROM activity_audit_rows"
            " ORDER BY audit_id, 2, 3"
        ).fetchall()
    assert data == [
        ("INSERT", None, "1"),
        ("INSERT", None, "150"),
        ("UPDATE", "1", "101"),
        ("DELETE", "101", None),
        ("DELETE", "150", None),
    ]


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 54321])
def test_row_counts_are_exact_at_every_size(company, size):
    """Per-statement counts come from counting (up to 1000 rows) or from the planner's size of
    the transition table (above): both must equal what the server reports to the client."""
    reported: list[tuple[str, int]] = []
    with company.connect("bob") as conn:
        cur = conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) SELECT now(), 's' || i"
            " FROM generate_series(1, %s) i",
            (size,),
        )
        reported.append(("INSERT", cur.rowcount))
        with conn.cursor().copy("COPY sensor_readings (time, sensor_id) FROM STDIN") as cp:
            for i in range(size):
                cp.write_row(("2026-01-01", f"c{i}"))
        reported.append(("INSERT", size))
        cur = conn.execute("UPDATE sensor_readings SET humidity = 1 WHERE sensor_id LIKE 's%'")
        reported.append(("UPDATE", cur.rowcount))
        cur = conn.execute("DELETE FROM sensor_readings WHERE sensor_id LIKE 'c%'")
        reported.append(("DELETE", cur.rowcount))
        conn.commit()
    assert [(r[1], r[3]) for r in _rows(company.db)] == reported
    assert [n for _, n in reported] == [size] * 4


@pytest.mark.parametrize("zip_rows", ["1000000", "0", "nonsense"])
def test_large_per_row_updates_pair_old_and_new_in_bounded_memory(company, zip_rows):
    """Above tsaccess.audit_zip_rows changed rows an UPDATE is paired by walking both
    transition tables in step (an array is limited to 1 GB): same pairs, same count."""
    with company.connect("david") as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount)"
            " SELECT now(), 'm' || i, i FROM generate_series(1, 2500) i"
        )
        conn.execute("SELECT set_config('tsaccess.audit_zip_rows', %s, false)", (zip_rows,))
        cur = conn.execute("UPDATE financial_metrics SET amount = amount + 0.5")
        conn.commit()
    assert cur.rowcount == 2500
    assert [r[3] for r in _rows(company.db, "operation = 'UPDATE'")] == [2500]
    with company.db.admin() as conn:
        bad = conn.execute(
            "SELECT count(*) FILTER (WHERE old_data->>'metric_type' = new_data->>'metric_type'"
            "   AND (new_data->>'amount')::numeric = (old_data->>'amount')::numeric + 0.5),"
            " count(*) FROM activity_audit_rows WHERE operation = 'UPDATE'"
        ).fetchone()
    assert bad == (2500, 2500)


def test_the_fallback_triggers_for_compressed_hypertables_work(company):
    """Where TimescaleDB refuses transition tables (DELETE once compression is enabled) tsaccess
    installs triggers without them. Those exact triggers, put on the plain tables here: per
    statement a row trigger counts the deleted rows and the statement trigger records the exact
    count, per row one audit row per deleted row."""
    policy = company.policy
    with company.db.admin() as conn:
        native = use_native(policy, read_catalog(conn, policy.schema))
        for step in ddl._pending_steps(policy, None):
            conn.execute(step.statement)
        for name in ("sensor_readings", "financial_metrics"):
            table = policy.table(name)
            normal = next(
                s for s in ddl._trigger_specs(policy, table, False, native) if "_del_" in s.name
            )
            fallbacks = [
                s
                for s in ddl._trigger_specs(policy, table, True, native)
                if "_del_" in s.name or "_cnt_" in s.name
            ]
            assert len(fallbacks) == (2 if table.audit == "statement" else 1)
            conn.execute(
                sql.SQL("DROP TRIGGER {} ON {}").format(
                    sql.Identifier(normal.name), sql.Identifier(name)
                )
            )
            for fallback in fallbacks:
                assert "REFERENCING" not in fallback.statement.as_string(conn)
                conn.execute(fallback.statement)
        conn.commit()
    with company.connect("bob") as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'a'), (now(), 'b')"
        )
        conn.execute("DELETE FROM sensor_readings")
        conn.commit()
    with company.connect("david") as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'x'), (now(), 'y')"
        )
        conn.execute("DELETE FROM financial_metrics")
        conn.commit()
    assert [(r[0], r[1], r[2], r[3]) for r in _rows(company.db)] == [
        ("bob", "INSERT", "sensor_readings", 2),
        ("bob", "DELETE", "sensor_readings", 2),  # counted by the row trigger
        ("david", "INSERT", "financial_metrics", 2),
        ("david", "DELETE", "financial_metrics", 1),  # one audit row per deleted row
        ("david", "DELETE", "financial_metrics", 1),
    ]
    deleted = _changes(company.db, "operation = 'DELETE'")
    assert sorted(d[3]["metric_type"] for d in deleted) == ["x", "y"]
    assert len({d[0] for d in deleted}) == 2 and all(d[4] is None for d in deleted)
