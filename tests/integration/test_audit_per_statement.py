"""The audit's per-statement path (issue 27): a statement of fewer than 1000 rows is counted and
recorded in one SQL statement of the trigger function, which pins no search_path. Still exact
(every statement, its kind, table, transaction, row count and context) and still not
hijackable by what a writer puts on its search_path or in pg_temp."""

from __future__ import annotations

import pytest

from tests.helpers import apply_company


@pytest.fixture
def company(db):
    return apply_company(db)


def _audit(db, table: str):
    with db.admin() as conn:
        return conn.execute(
            "SELECT id, operation, row_count, txid, actor, request_id, effective_role,"
            " client_asserted, description FROM activity_audit WHERE table_name = %s ORDER BY id",
            (table,),
        ).fetchall()


def _data(db):
    """Per-row data of financial_metrics: (audit_id, old metric_type, new metric_type)."""
    with db.admin() as conn:
        return conn.execute(
            "SELECT d.audit_id, (d.old_data).metric_type, (d.new_data).metric_type"
            " FROM tsaccess_audit.financial_metrics d ORDER BY 1, 2, 3"
        ).fetchall()


def test_a_context_change_inside_a_transaction_shows_in_the_next_statements_row(company):
    """The actor, request id and role are read by the statement that records them."""
    for user, table, insert in (
        ("bob", "sensor_readings", "INSERT INTO sensor_readings (time, sensor_id)"),
        ("david", "financial_metrics", "INSERT INTO financial_metrics (time, metric_type)"),
    ):
        role = "data_engineers" if user == "bob" else "finance_users"
        with company.connect(user) as conn:
            conn.execute(insert + " VALUES (now(), 'one')")
            conn.execute("SELECT set_config('tsaccess.actor', 'alice@web', true)")
            conn.execute("SELECT set_config('tsaccess.request_id', 'r-1', true)")
            conn.execute(insert + " VALUES (now(), 'two')")
            conn.execute("SELECT set_config('tsaccess.actor', 'carol@web', true)")
            conn.execute(f"SET ROLE {role}")
            conn.execute(insert + " VALUES (now(), 'three')")
            conn.commit()
        rows = _audit(company.db, table)
        assert [r[4:7] for r in rows] == [
            (None, None, user),
            ("alice@web", "r-1", user),
            ("carol@web", "r-1", role),
        ]
        assert rows[1][7] and rows[2][7]  # what the client says is marked as such
        assert len({r[3] for r in rows}) == 1  # one transaction
        assert [r[1:3] for r in rows] == [("INSERT", 1)] * 3
    ids = [r[0] for r in _audit(company.db, "financial_metrics")]
    assert _data(company.db) == [
        (ids[0], None, "one"),
        (ids[1], None, "two"),
        (ids[2], None, "three"),
    ]


def test_every_statement_is_recorded_with_its_kind_table_transaction_and_count(company):
    with company.connect("bob") as conn:
        first = conn.execute("SELECT txid_current()").fetchone()[0]
        for i in range(3):
            conn.execute(
                "INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), %s)", (f"s{i}",)
            )
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id)"
            " SELECT now(), 'bulk' || i FROM generate_series(1, 1500) i"
        )
        conn.execute("UPDATE sensor_readings SET humidity = 1 WHERE sensor_id IN ('s0', 's1')")
        conn.execute("DELETE FROM sensor_readings WHERE sensor_id = 'nobody'")
        conn.execute("SAVEPOINT sp")
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'undone')")
        conn.execute("ROLLBACK TO SAVEPOINT sp")
        conn.execute("DELETE FROM sensor_readings WHERE sensor_id LIKE 'bulk%'")
        conn.commit()
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'later')")
        second = conn.execute("SELECT txid_current()").fetchone()[0]
        conn.commit()
    with company.connect("david") as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount)"
            " SELECT now(), 'm' || i, i FROM generate_series(1, 1200) i"
        )
        conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'x')")
        conn.execute("UPDATE financial_metrics SET amount = 0 WHERE metric_type IN ('m1', 'x')")
        conn.execute("DELETE FROM financial_metrics WHERE metric_type = 'x'")
        conn.execute("DELETE FROM financial_metrics WHERE metric_type = 'nobody'")
        conn.commit()
    assert [(r[1], r[2], r[3], r[8]) for r in _audit(company.db, "sensor_readings")] == [
        ("INSERT", 1, first, "INSERT of 1 row(s)"),
        ("INSERT", 1, first, "INSERT of 1 row(s)"),
        ("INSERT", 1, first, "INSERT of 1 row(s)"),
        ("INSERT", 1500, first, "INSERT of 1500 row(s)"),
        ("UPDATE", 2, first, "UPDATE of 2 row(s)"),
        ("DELETE", 0, first, "DELETE of 0 row(s)"),
        ("DELETE", 1500, first, "DELETE of 1500 row(s)"),
        ("INSERT", 1, second, "INSERT of 1 row(s)"),
    ]
    rows = _audit(company.db, "financial_metrics")
    assert [r[1:3] for r in rows] == [
        ("INSERT", 1200),
        ("INSERT", 1),
        ("UPDATE", 2),
        ("DELETE", 1),
        ("DELETE", 0),
    ]
    per_statement = {}
    for audit_id, *_ in _data(company.db):
        per_statement[audit_id] = per_statement.get(audit_id, 0) + 1
    assert [per_statement.get(r[0], 0) for r in rows] == [1200, 1, 2, 1, 0]


HOSTILE_OPERATORS = [
    ("=", "pg_catalog.text", "pg_catalog.text", "boolean", "false"),
    ("=", "bigint", "integer", "boolean", "false"),
    ("<>", "pg_catalog.text", "pg_catalog.text", "boolean", "true"),
    ("<", "bigint", "integer", "boolean", "false"),
    (">", "bigint", "integer", "boolean", "true"),
    ("<=", "bigint", "bigint", "boolean", "false"),
    ("||", "pg_catalog.text", "pg_catalog.text", "pg_catalog.text", "'hijacked'"),
    ("||", "pg_catalog.text", "bigint", "pg_catalog.text", "'hijacked'"),
    ("~", "pg_catalog.text", "pg_catalog.text", "boolean", "false"),
    ("!~", "pg_catalog.text", "pg_catalog.text", "boolean", "false"),
    ("~*", "pg_catalog.text", "pg_catalog.text", "boolean", "true"),
    ("!~*", "pg_catalog.text", "pg_catalog.text", "boolean", "false"),
]
HOSTILE_FUNCTIONS = [
    ("count", "", "bigint"),
    ("current_setting", "pg_catalog.text", "pg_catalog.text"),
    ("current_setting", "pg_catalog.text, boolean", "pg_catalog.text"),
    ("txid_current", "", "bigint"),
    ("inet_client_addr", "", "inet"),
    ("current_query", "", "pg_catalog.text"),
    ("json_array_element", "pg_catalog.json, integer", "pg_catalog.json"),
    ("json_extract_path_text", "pg_catalog.json, VARIADIC pg_catalog.text[]", "pg_catalog.text"),
    ("unnest", "anyarray", "SETOF anyelement"),
    ("now", "", "timestamptz"),
]


def test_writer_search_path_and_pg_temp_never_reach_the_functions(company):
    """bob and david put a schema of their own first on their search_path, with operators,
    functions and types named like those the trigger functions use, and types of the same
    names in pg_temp (searched first for types). Everything of theirs logs when used: nothing
    may run, and every statement is recorded as it was."""
    with company.db.admin(autocommit=True) as conn:
        conn.execute("CREATE SCHEMA evil; GRANT ALL ON SCHEMA evil TO PUBLIC")
        conn.execute("CREATE TABLE evil.log (what text); GRANT INSERT ON evil.log TO PUBLIC")
        # a deployment may let writers have temporary tables (the policy revokes it by default)
        conn.execute(f'GRANT TEMPORARY ON DATABASE "{company.db.name}" TO bob, david')
    with company.connect("bob") as conn:
        for i, (op, left, right, result, value) in enumerate(HOSTILE_OPERATORS):
            conn.execute(
                f"CREATE FUNCTION evil.op{i}(a {left}, b {right}) RETURNS {result}"
                f" LANGUAGE sql AS $$ INSERT INTO evil.log VALUES ('operator {op}');"
                f" SELECT {value} $$"
            )
            conn.execute(
                f"CREATE OPERATOR evil.{op} (LEFTARG = {left}, RIGHTARG = {right},"
                f" FUNCTION = evil.op{i})"
            )
        for fn, args, result in HOSTILE_FUNCTIONS:
            value = "NULL" if "SETOF" not in result else "$1[1]"
            conn.execute(
                f"CREATE FUNCTION evil.{fn}({args}) RETURNS {result} LANGUAGE plpgsql AS"
                f" $$ BEGIN INSERT INTO evil.log VALUES ('function {fn}');"
                f" {'RETURN NEXT ' + value if 'SETOF' in result else 'RETURN ' + value}; END $$"
            )
        for name in ("text", "int8", "json", "refcursor", "timestamptz"):
            conn.execute(f"CREATE DOMAIN evil.{name} AS integer")
        conn.execute("GRANT ALL ON ALL FUNCTIONS IN SCHEMA evil TO PUBLIC")
        conn.commit()
    statements = {
        "bob": [
            "INSERT INTO public.sensor_readings (time, sensor_id) VALUES (pg_catalog.now(), 'a')",
            "INSERT INTO public.sensor_readings (time, sensor_id) SELECT pg_catalog.now(), 'b'"
            " FROM pg_catalog.generate_series(1, 1100)",
            "UPDATE public.sensor_readings SET humidity = 2",
            "DELETE FROM public.sensor_readings WHERE sensor_id OPERATOR(pg_catalog.=) 'a'",
        ],
        "david": [
            "INSERT INTO public.financial_metrics (time, metric_type) VALUES"
            " (pg_catalog.now(), 'a')",
            "INSERT INTO public.financial_metrics (time, metric_type) SELECT pg_catalog.now(),"
            " 'b' FROM pg_catalog.generate_series(1, 1100)",
            "UPDATE public.financial_metrics SET amount = 2",
            "DELETE FROM public.financial_metrics WHERE metric_type OPERATOR(pg_catalog.=) 'a'",
        ],
    }
    for user, todo in statements.items():
        with company.connect(user) as conn:  # a new session: functions compiled under it
            for name in ("text", "int8", "json", "refcursor", "timestamptz", "record"):
                conn.execute(f"CREATE TYPE pg_temp.{name} AS (x integer)")
            conn.execute("SET search_path = evil, pg_catalog")
            for statement in todo:
                conn.execute(statement)
            conn.commit()
    with company.db.admin() as conn:
        assert conn.execute("SELECT what FROM evil.log").fetchall() == []
    expected = [("INSERT", 1), ("INSERT", 1100), ("UPDATE", 1101), ("DELETE", 1)]
    assert [r[1:3] for r in _audit(company.db, "sensor_readings")] == expected
    assert [r[1:3] for r in _audit(company.db, "financial_metrics")] == expected
    assert "hijacked" not in str(_audit(company.db, "sensor_readings"))
    assert len(_data(company.db)) == 1 + 1100 + 1101 + 1
