"""Pre-flight about another role, from an administrator's connection (issue 26,
``tsaccess check --user U``): the snapshot taken with ``has_*_privilege(U, ...)`` equals the one
U's own session takes, for every relation, column and schema of the catalog, and so do the
verdicts."""

from __future__ import annotations

import pytest

from tests.helpers import apply_company
from tsaccess.preflight import Checker, take_snapshot
from tsaccess.preflight.snapshot import load_columns, take_snapshot_for

pytestmark = pytest.mark.timescaledb


def _view(snap) -> dict:
    return {
        "path": [s for s in snap.search_path if not s.startswith("pg_temp")],
        "usage": snap.usage,
        "rels": {
            key: (r.usage, r.table, r.any, r.kind, r.rls, r.sequences, r.columns)
            for key, r in snap.rels.items()
        },
    }


def test_a_role_seen_from_the_administrator_equals_its_own_session(db):
    company = apply_company(db)
    with db.admin(autocommit=True) as conn:  # a schema of its own on alice's search path
        conn.execute("CREATE SCHEMA alice AUTHORIZATION alice")
        conn.execute("CREATE TABLE alice.notes (id int, secret text)")
        conn.execute("ALTER TABLE alice.notes OWNER TO alice")
    for user in [u.name for u in company.policy.users]:
        with db.connect_as(user, company.passwords[user].reveal()) as own, db.admin() as admin:
            mine = take_snapshot(own)
            theirs = take_snapshot_for(admin, user)
            load_columns(own, mine.rels.values())  # every column, swept
            load_columns(admin, theirs.rels.values(), role=user)
            assert _view(theirs) == _view(mine), user
            assert theirs.user == user and theirs.role == user


def test_verdicts_about_a_role_equal_its_own(db):
    company = apply_company(db)
    statements = [
        "SELECT * FROM sensor_readings",
        "SELECT amount FROM financial_metrics",
        "SELECT time, metric_type FROM financial_metrics",
        "INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'x')",
        "UPDATE financial_metrics SET amount = 0",
        "DELETE FROM activity_audit",
        "SELECT * FROM activity_audit",
        "TRUNCATE sensor_readings",
    ]
    for user in [u.name for u in company.policy.users]:
        with db.connect_as(user, company.passwords[user].reveal()) as own, db.admin() as admin:
            mine, theirs = Checker(own), Checker(admin, as_role=user, login=user)
            for stmt in statements:
                a, b = mine.check(stmt), theirs.check(stmt)
                assert (b.status, b.missing) == (a.status, a.missing), (user, stmt)
