"""The audit trail: it works for non-owner writers, names the login user and the table, and
resists tampering (each attack is tried)."""

from __future__ import annotations

import random
import threading

import psycopg
import pytest
from psycopg import sql

from tests.helpers import apply_company
from tsaccess import audit


@pytest.fixture
def company(db):
    return apply_company(db)


def _rows(db, where: str = "true", params=()):
    with db.admin() as conn:
        return conn.execute(
            f"SELECT username, operation, table_name, row_count, effective_role, actor,"
            f" request_id, old_data, new_data, client_asserted, application_name"
            f" FROM activity_audit WHERE {where} ORDER BY id",
            params,
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
        ("david", "INSERT", "financial_metrics", 1),  # per-row mode: one row per data row
        ("david", "INSERT", "financial_metrics", 1),
    ]
    bob = rows[0]
    assert bob[4] == "data_engineers"  # effective role captured before the definer switch
    assert (bob[5], bob[6]) == ("jupyter:bob", "req-42")
    assert bob[10] == "tsaccess:bob/data_engineers"
    assert not bob[9]
    new = sorted(r[8]["metric_type"] for r in rows[3:])
    assert new == ["cost", "revenue"]


def test_per_row_update_pairs_old_and_new(company):
    with company.connect("david") as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount)"
            " SELECT now(), 'm' || i, i FROM generate_series(1, 50) i"
        )
        conn.execute("UPDATE financial_metrics SET amount = amount * 10")
        conn.commit()
    rows = _rows(company.db, "operation = 'UPDATE'")
    assert len(rows) == 50
    for r in rows:
        assert r[7]["metric_type"] == r[8]["metric_type"]
        assert float(r[8]["amount"]) == float(r[7]["amount"]) * 10


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
]


@pytest.mark.parametrize("attack", TAMPERING)
@pytest.mark.parametrize("user", ["bob", "eve"])
def test_users_cannot_edit_or_bypass_the_audit(company, user, attack):
    with company.connect("bob") as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')")
        conn.commit()
    before = _rows(company.db)
    with company.db.admin() as conn:
        trigger = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'sensor_readings'::regclass"
            " AND tgname LIKE 'tsaccess_audit_ins%'"
        ).fetchone()[0]
    with company.connect(user) as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(attack.replace("{trigger}", trigger))
        assert err.value.sqlstate in ("42501", "0A000", "42809"), err.value
    assert _rows(company.db) == before
    if user == "bob":  # the trigger still fires
        with company.connect("bob") as conn:
            conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'y')")
            conn.commit()
        assert len(_rows(company.db)) == len(before) + 1


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
    assert [(r[0], r[1], r[2], r[9]) for r in rows] == [
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
    """bob controls a schema placed first on his search_path with look-alike functions and
    operators; the definer function pins its own search_path, so none of them runs."""
    with company.db.admin(autocommit=True) as conn:
        conn.execute("CREATE SCHEMA evil AUTHORIZATION bob")
    with company.connect("bob") as conn:
        conn.execute("""
            CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql
              AS $$ SELECT '{"hijacked": true}'::jsonb $$;
            CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql
              AS $$ SELECT '1999-01-01'::timestamptz $$;
            CREATE FUNCTION evil.count_hijack(bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT 0::bigint $$;
            CREATE TABLE evil.activity_audit (username text, operation text, table_name text,
              description text, effective_role text, txid bigint, client_addr inet,
              application_name text, actor text, request_id text, row_count bigint,
              old_data jsonb, new_data jsonb);
            CREATE FUNCTION evil.inet_client_addr() RETURNS inet LANGUAGE sql AS $$ SELECT '6.6.6.6'::inet $$;
        """)
        conn.execute("SET search_path = evil, public, pg_catalog")
        conn.execute(
            "INSERT INTO public.sensor_readings (time, sensor_id) VALUES (pg_catalog.now(), 'x')"
        )
        conn.commit()
        assert conn.execute("SELECT count(*) FROM evil.activity_audit").fetchone() == (0,)
    with company.connect("david") as conn:
        conn.execute("SET search_path = public")
        conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'm')")
        conn.commit()
    rows = _rows(company.db)
    assert [(r[0], r[2]) for r in rows] == [
        ("bob", "sensor_readings"),
        ("david", "financial_metrics"),
    ]
    assert "hijacked" not in str(rows)
    with company.db.admin() as conn:
        assert conn.execute(
            "SELECT count(*) FROM activity_audit WHERE event_time < '2000-01-01'"
            " OR client_addr = '6.6.6.6'"
        ).fetchone() == (0,)


def test_no_loss_no_phantoms_under_concurrency(company):
    """8 writers x 500 mixed statements, some rolled back: audit rows == committed statements."""
    expected: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rnd = random.Random(n)
        try:
            with company.connect("bob") as conn:
                for i in range(500):
                    op = rnd.choice(["INSERT", "INSERT", "UPDATE", "DELETE"])
                    if op == "INSERT":
                        k = rnd.randint(1, 5)
                        cur = conn.execute(
                            "INSERT INTO sensor_readings (time, sensor_id) SELECT now(), %s"
                            " FROM generate_series(1, %s)",
                            (f"w{n}", k),
                        )
                    elif op == "UPDATE":
                        cur = conn.execute(
                            "UPDATE sensor_readings SET humidity = %s WHERE sensor_id = %s",
                            (i, f"w{n}"),
                        )
                    else:
                        cur = conn.execute(
                            "DELETE FROM sensor_readings WHERE sensor_id = %s AND humidity = %s",
                            (f"w{n}", rnd.randint(0, 499)),
                        )
                    if rnd.random() < 0.2:
                        conn.rollback()
                    else:
                        conn.commit()
                        with lock:
                            expected.append(("bob", op, cur.rowcount))
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
        sessions = audit.active_sessions(conn)
        mine = [x for x in sessions if x.username == "eve"]
        assert mine
        assert mine[0].ssl
        assert "<table" in s._repr_html_()
        assert "bob" in s.to_text()
        roles = {r.rolname: r for r in audit.roles(conn)}
        assert roles["bob"].member_of == ["data_engineers"]
        assert not roles["data_engineers"].rolcanlogin
