"""Per-row audit data never shows a value its reader could not read in the table itself.

eve (auditors) reads the audit trail but not financial_metrics: through activity_audit_rows she
sees that david changed rows, never the amounts. Whoever may read both sees the values. The
access matrix proves it by reading a probe row through the view as every user."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from tests.helpers import apply_company
from tsaccess.audit import reports as audit
from tsaccess.demo import company_policy
from tsaccess.verify import verify


def _david_inserts(company) -> None:
    with company.connect("david") as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount, department)"
            " VALUES (now(), 'revenue', 1234.56, 'sales')"
        )
        conn.commit()


def test_eve_cannot_read_amounts_through_the_rows_view(db):
    company = apply_company(db)
    _david_inserts(company)
    with company.connect("eve") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT amount FROM financial_metrics")
        conn.rollback()
        rows = conn.execute(
            "SELECT username, operation, new_data, new_data->>'amount' FROM activity_audit_rows"
        ).fetchall()
        assert rows == [("david", "INSERT", {}, None)]  # the event, not its values
        assert "1234.56" not in str(audit.changes(conn).as_dicts())
    with db.admin() as conn:  # the data is recorded: the admin sees it
        row = conn.execute("SELECT new_data->>'amount' FROM activity_audit_rows").fetchone()
        assert row == ("1234.56",)


def _readers_policy():
    """finance_users and department_managers may also read the audit trail."""
    p = company_policy()
    roles = []
    for r in p.roles:
        if r.name in ("finance_users", "department_managers"):
            r = dataclasses.replace(
                r, grants=(*r.grants, ("activity_audit", frozenset({"SELECT"})))
            )
        roles.append(r)
    return dataclasses.replace(p, roles=tuple(roles))


def test_readers_of_both_see_the_values_and_the_matrix_proves_who_sees_what(db):
    company = apply_company(db, _readers_policy())
    _david_inserts(company)
    for user in ("david", "carol"):
        with company.connect(user) as conn:
            new = conn.execute("SELECT new_data FROM activity_audit_rows").fetchone()[0]
            assert new["amount"] == 1234.56 and new["metric_type"] == "revenue", user
    with db.admin() as conn:
        matrix = verify(conn, company.policy, company.passwords, **company.user_params())
    assert matrix.ok, matrix.to_text()
    for user, sees in {
        "alice": False,
        "bob": False,
        "carol": True,
        "david": True,
        "eve": False,
    }.items():
        cell = matrix.cell(user, "activity_audit_rows:financial_metrics.amount", "SELECT")
        assert (cell.expected, cell.catalog, cell.actual) == (sees, sees, sees), cell


def test_column_privileges_decide_which_values_are_shown(db):
    company = apply_company(db)
    _david_inserts(company)
    with db.admin(autocommit=True) as conn:
        conn.execute("GRANT SELECT (metric_type, department) ON financial_metrics TO auditors")
    with company.connect("eve") as conn:
        new = conn.execute("SELECT new_data FROM activity_audit_rows").fetchone()[0]
    assert new == {"metric_type": "revenue", "department": "sales"}
    with db.admin() as conn:  # outside the policy: the matrix names exactly those two columns
        matrix = verify(conn, company.policy, company.passwords, **company.user_params())
    bad = {(c.user, c.object) for c in matrix.disagreements}
    assert bad == {
        ("eve", "financial_metrics"),  # SELECT 1 FROM financial_metrics works with columns
        ("eve", "activity_audit_rows:financial_metrics.metric_type"),
        ("eve", "activity_audit_rows:financial_metrics.department"),
    }


def test_an_unfiltered_view_is_caught_by_the_matrix(db):
    """Someone replaces the view with one that shows everything (keeping its name, owner and
    comment): the matrix reads through it as eve and reports every leaked column."""
    company = apply_company(db)
    with db.admin(autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE VIEW activity_audit_rows (audit_id, event_time, username,"
            " operation, table_name, effective_role, txid, client_addr, application_name,"
            " actor, request_id, old_data, new_data) AS SELECT a.id, a.event_time, a.username,"
            " a.operation, 'financial_metrics'::text, a.effective_role, a.txid, a.client_addr,"
            " a.application_name, a.actor, a.request_id, to_jsonb(d.old_data),"
            " to_jsonb(d.new_data) FROM tsaccess_audit.financial_metrics d"
            " JOIN activity_audit a ON a.id = d.audit_id AND a.event_time = d.event_time"
        )
    with db.admin() as conn:
        matrix = verify(conn, company.policy, company.passwords, **company.user_params())
    leaked = {c.object.rsplit(".", 1)[1] for c in matrix.disagreements if c.user == "eve"}
    assert leaked == set(company.policy.table("financial_metrics").audited_data_columns)
    assert all(c.actual is True and c.expected is False for c in matrix.disagreements)


def test_the_probe_leaves_no_trace(db):
    company = apply_company(db)
    with db.admin() as conn:
        verify(conn, company.policy, company.passwords, **company.user_params())
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM activity_audit").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM activity_audit_rows").fetchone() == (0,)
