"""Pre-flight sees what it used to miss: whole-row references, Unicode-escaped names, chunks,
role changes inside a multi-statement string, statements too long to analyse."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

import tsaccess
from tests.helpers import apply_company
from tsaccess.preflight import check

FALSE_ALLOWS_BEFORE = [
    "SELECT f FROM financial_metrics f",
    "SELECT financial_metrics FROM financial_metrics",
    "SELECT (financial_metrics).metric_type FROM financial_metrics",
    "SELECT row_to_json(f) FROM financial_metrics f",
    "SELECT to_jsonb(f.*) FROM financial_metrics f",
    'SELECT U&"\\0061mount" FROM financial_metrics',
    "SELECT 1 FROM financial_metrics NATURAL JOIN sensor_readings",
    "EXPLAIN SELECT amount FROM financial_metrics",
    "SELECT x FROM sensor_readings s, LATERAL (SELECT f.amount AS x FROM financial_metrics f) l",
]


@pytest.fixture
def company(db):
    c = apply_company(db)
    with db.admin(autocommit=True) as conn:  # alice may read two columns of the figures
        conn.execute("GRANT SELECT (time, metric_type) ON financial_metrics TO alice")
    return c


@pytest.mark.parametrize("stmt", FALSE_ALLOWS_BEFORE)
def test_statements_the_server_refuses_are_refused_before_sending(company, stmt):
    with company.connect("alice", preflight=True) as conn:
        with pytest.raises(tsaccess.PreflightDenied, match="financial_metrics"):
            conn.execute(stmt)
        conn.rollback()
    with company.connect("alice") as plain:  # the oracle agrees
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            plain.execute(stmt)


def test_granted_columns_still_pass(company):
    with company.connect("alice", preflight=True) as conn:
        conn.execute("SELECT time, metric_type FROM financial_metrics").fetchall()
        conn.execute('SELECT U&"metric\\005ftype" FROM financial_metrics').fetchall()


def test_a_role_change_earlier_in_the_string_is_followed(company):
    """A user in two roles, scoped to the one without the figures, switches with set_config or
    SET ROLE: the next statements are checked as the new role (its privileges taken with
    has_*_privilege(role, ...), the refusal confirmed under that role)."""
    with company.db.admin(autocommit=True) as conn:
        conn.execute("GRANT data_analysts, finance_users TO alice")
    with company.connect("alice", role="data_analysts", preflight=True, autocommit=True) as conn:
        stmt = "SELECT set_config('role', 'finance_users', false); SELECT amount FROM financial_metrics"
        assert check(conn, stmt).status == "allowed"
        back = (
            "SET ROLE finance_users; SET ROLE data_analysts; SELECT amount FROM financial_metrics"
        )
        with pytest.raises(tsaccess.PreflightDenied, match="financial_metrics"):
            conn.execute(back)
        with pytest.raises(tsaccess.PreflightDenied, match="MEMBERSHIP on role auditors"):
            conn.execute("SET ROLE auditors; SELECT 1")
        conn.execute(stmt)  # not refused: the server runs the second statement as finance_users
        conn.execute("SELECT amount FROM financial_metrics")  # the snapshot followed the role
        conn.execute("RESET ROLE")
        conn.execute("SET ROLE data_analysts")
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("SELECT amount FROM financial_metrics")


@pytest.mark.timescaledb
def test_chunks_are_decided_from_their_grants(company):
    with company.db.admin(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount) VALUES (now(), 'x', 1)"
        )
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        chunks = dict(
            conn.execute(
                "SELECT hypertable_name, format('%I.%I', chunk_schema, chunk_name)"
                " FROM timescaledb_information.chunks WHERE hypertable_schema = 'public'"
            ).fetchall()
        )
    with company.connect("alice", preflight=True, autocommit=True) as conn:
        fm = chunks["financial_metrics"]
        # measured: column grants on the hypertable are not copied to its chunks (table grants
        # are), so even the granted metric_type is refused on the chunk; pre-flight reads the
        # chunk's own grants and agrees with the server
        for stmt in ["SELECT amount FROM {}", "SELECT c FROM {} c", "SELECT metric_type FROM {}"]:
            q = sql.SQL(stmt).format(sql.SQL(fm))
            with pytest.raises(tsaccess.PreflightDenied, match="_hyper_"):
                conn.execute(q)
            with company.connect("alice", autocommit=True) as plain:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    plain.execute(q)
        conn.execute(sql.SQL("SELECT * FROM {}").format(sql.SQL(chunks["sensor_readings"])))
        with pytest.raises(tsaccess.PreflightDenied, match="DELETE"):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.SQL(chunks["sensor_readings"])))


def test_a_huge_statement_is_deferred_without_being_parsed(company):
    in_list = ", ".join(str(i) for i in range(150_000))  # ~1 MB
    stmt = f"SELECT amount FROM financial_metrics WHERE amount IN ({in_list})"
    with company.connect("alice", preflight=True) as conn:
        verdict = check(conn, stmt)
        assert verdict.status == "deferred" and "too long" in verdict.reason
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the server decides
            conn.execute(stmt)
    medium = "SELECT amount FROM financial_metrics WHERE amount IN (" + in_list[:40_000] + "0)"
    with company.connect("alice", preflight=True) as conn:  # collapsed, then analysed
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute(medium)


def test_new_shapes_on_fully_readable_tables_skip_the_parse(company):
    """The fast path: exact, because it only ever allows what no analysis could refuse."""
    with company.connect("carol", preflight=True) as conn:  # SELECT on both tables
        checker = conn.preflight
        v = checker.check(
            "SELECT f.department, avg(s.temperature) FROM financial_metrics f"
            " JOIN sensor_readings s USING (department) GROUP BY 1"
        )
        assert v.status == "allowed" and not checker._analyses  # decided without sqlglot
        for stmt in [  # each needs more than SELECT, or names a table only the parse sees
            "SELECT amount FROM financial_metrics FOR UPDATE",
            "WITH d AS (DELETE FROM sensor_readings RETURNING *) SELECT * FROM d",
            "SELECT department FROM tsaccess_audit.financial_metrics",  # private per-row data
            "SELECT 1 FROM sensor_readings, U&\"activity!005faudit\" UESCAPE '!'",
        ]:
            assert checker.check(stmt).status == "denied", stmt
    with company.connect("alice", preflight=True) as conn:  # column grants: analysed
        with pytest.raises(tsaccess.PreflightDenied):
            conn.execute("SELECT amount, sensor_id FROM financial_metrics, sensor_readings")
        assert conn.preflight._analyses
