"""What the audit trail knows and what the client says (issue 21, point 5), attacked by bob.

Every value a session can set — ``tsaccess.actor``, ``tsaccess.request_id``,
``application_name`` — is the client's word: a row that carries one says so
(``client_asserted = true``), however it was set. DENIED rows are all the client's word, and
anyone with a group role may write them: they are bounded per login user and second.
"""

from __future__ import annotations

import math
import time

import psycopg
import pytest

from tests.helpers import apply_company
from tsaccess import audit
from tsaccess.audit.templates import DENIED_PER_SECOND


@pytest.fixture
def company(db):
    return apply_company(db)


def _last(db, operation: str = "INSERT"):
    with db.admin() as conn:
        return conn.execute(
            "SELECT username, actor, request_id, application_name, client_asserted"
            " FROM activity_audit WHERE operation = %s ORDER BY id DESC LIMIT 1",
            (operation,),
        ).fetchone()


def test_a_user_set_actor_is_recorded_as_client_asserted(company):
    with company.connect("bob") as conn:
        conn.execute("SELECT set_config('tsaccess.actor', 'ceo@example.org', false)")
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        conn.commit()
    assert _last(company.db)[:2] == ("bob", "ceo@example.org")
    assert _last(company.db)[4] is True
    with company.connect("bob") as conn:  # through the library's own call: the same word
        audit.set_actor(conn, "web:bob", "req-1")
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        conn.commit()
    assert _last(company.db)[1:3] == ("web:bob", "req-1") and _last(company.db)[4] is True


def test_only_a_row_without_any_client_value_is_not_client_asserted(company):
    """A plain libpq session with no application_name and no actor: nothing client-chosen."""
    params = company.db.params(user="bob", password=company.passwords["bob"].reveal())
    params["application_name"] = ""
    with psycopg.connect(**params) as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        conn.commit()
    assert _last(company.db) == ("bob", None, None, None, False)
    params["application_name"] = "looks-official"
    with psycopg.connect(**params) as conn:
        conn.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's')")
        conn.commit()
    assert _last(company.db)[3:] == ("looks-official", True)


def test_forged_denied_rows_are_bounded_per_user_and_second(company):
    """20,000 calls of the DENIED function in one statement: at most DENIED_PER_SECOND rows per
    second it spans, and one saying the rest were not recorded (before: all 20,000)."""
    with company.connect("bob") as conn:
        t0 = time.perf_counter()
        conn.execute(
            "SELECT count(public.tsaccess_audit_denied('forged ' || g, 'x'))"
            " FROM generate_series(1, 20000) g"
        )
        conn.commit()
        seconds = time.perf_counter() - t0
    with company.db.admin() as conn:
        rows = conn.execute(
            "SELECT description, client_asserted FROM activity_audit"
            " WHERE operation = 'DENIED' AND username = 'bob' ORDER BY id"
        ).fetchall()
    spanned = math.ceil(seconds) + 1
    assert DENIED_PER_SECOND < len(rows) <= (DENIED_PER_SECOND + 1) * spanned, (len(rows), seconds)
    assert all(asserted for _, asserted in rows)
    assert any("the others are not recorded" in d for d, _ in rows)
    assert rows[0][0] == "x: forged 1"
    # another user's own refusals are not swallowed by bob's flood
    with company.connect("alice") as conn:
        assert audit.record_denied(conn, "DELETE FROM sensor_readings", "42501 by alice")
    with company.db.admin() as conn:
        assert conn.execute(
            "SELECT count(*) FROM activity_audit WHERE username = 'alice' AND operation = 'DENIED'"
        ).fetchone() == (1,)
