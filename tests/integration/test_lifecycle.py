"""The policy lifecycle after day one (issue 13), on the hospital example.

Apply, then change the policy the way real policies change — remove a user, rename a role,
rename a table, add a column grant, change a default — and check after each that the plan shows
exactly that change (markers and counts), that apply leaves the database equal to the policy
(the access matrix agrees, a new plan is empty) and that removed users cannot log in.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tsaccess.client.params import without_login
from tsaccess.passwords import Secret, resolve_passwords
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import Policy, parse_policy
from tsaccess.verify import verify

ROOT = Path(__file__).resolve().parents[2]
HOSPITAL = (ROOT / "examples" / "hospital.toml").read_text()

pytestmark = pytest.mark.timescaledb


def _policy(text: str, db: Any) -> Policy:
    return parse_policy(tomllib.loads(text), source="hospital.toml").with_database(db.name)


class Ward:
    """The hospital database and its passwords, with the checks every step repeats."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.text = HOSPITAL
        self.policy = _policy(HOSPITAL, db)
        self.passwords: dict[str, Secret] = resolve_passwords(
            [u.name for u in self.policy.users], generate=True, environ={}
        )

    def change(self, *pairs: tuple[str, str]) -> None:
        for old, new in pairs:
            assert old in self.text, old
            self.text = self.text.replace(old, new)
        self.policy = _policy(self.text, self.db)

    def plan(self, **kw: Any):
        with self.db.admin() as conn:
            return plan(conn, self.policy, passwords=self.passwords, **kw)

    def apply(self, **kw: Any) -> None:
        with self.db.admin() as conn:
            apply(conn, self.policy, passwords=self.passwords, **kw)
        assert not self.plan(**kw), self.plan(**kw).summary(verbose=True)
        with self.db.admin() as conn:
            matrix = verify(conn, self.policy, self.passwords, **without_login(self.db.params()))
        assert matrix.ok, matrix.to_text()

    def login(self, user: str, dbname: str | None = None) -> psycopg.Connection[Any]:
        params = self.db.params(user=user, password=self.passwords[user].reveal())
        if dbname:
            params["dbname"] = dbname
        return psycopg.connect(**params)


RENAME_TABLE = (
    ("[tables.medications]", "[tables.prescriptions]"),
    ("grants = { medications = [", "grants = { prescriptions = ["),
    ('medications = ["SELECT", "INSERT"]', 'prescriptions = ["SELECT", "INSERT"]'),
)


def _body(summary: str) -> list[str]:
    """The plan's lines without its warnings."""
    return [line for line in summary.splitlines() if not line.startswith("warning:")]


def _plan_line(p) -> str:
    """The ``Plan:`` line, which counts the statements apply runs."""
    line = next(x for x in p.summary().splitlines() if x.startswith("Plan: "))
    assert sum(p.counts().values()) == len(p.steps), (line, len(p.steps))
    return line


def test_hospital_lifecycle(db):
    ward = Ward(db)
    first = ward.plan()
    text = first.summary()
    assert "table vitals\n  + create table vitals" in text
    assert "  + grant SELECT (time, ward, heart_rate, spo2) on table vitals to researchers" in text
    assert "  ~ audit trail: " in text and "tsaccess_audit_stmt" not in text  # folded
    assert "tsaccess_audit_stmt" in first.summary(verbose=True)
    counts = first.counts()
    assert counts["add"] > 20 and counts["revoke"] >= 1
    assert text.splitlines()[-1].startswith("Plan: ") or "\nPlan: " in text
    ward.apply()

    with db.admin(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO clinical.medications (patient_id, drug, dose_mg) VALUES (7, 'x', 5)"
        )
        conn.execute("INSERT INTO clinical.vitals VALUES (now(), 7, 'A', 80, 97.5)")
    # research sees vital signs unqualified (search_path), and no patient identifiers
    with ward.login("rita") as conn:
        assert conn.execute("SELECT heart_rate FROM vitals").fetchall() == [(80,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT patient_id FROM vitals")
    # nurses may annotate vitals but not rewrite them; physicians are nurses too (nested)
    with ward.login("nina") as conn:
        conn.execute("UPDATE vitals SET note = 'checked'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE vitals SET heart_rate = 1")
    with ward.login("maria") as conn:
        assert conn.execute("SELECT count(*) FROM vitals").fetchone() == (1,)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)
    # default privileges: a table the administrator adds later is readable by physicians only
    with db.admin(autocommit=True) as conn:
        conn.execute("CREATE TABLE clinical.lab_results (x int)")
    with ward.login("maria") as conn:
        assert conn.execute("SELECT count(*) FROM lab_results").fetchone() == (0,)
    with ward.login("nina") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM lab_results")
    assert not ward.plan()  # a table the policy does not name is not tsaccess's

    # an insider cannot take the managed marker off (to escape pruning) or forge it
    with ward.login("paul") as conn:
        for stmt in (
            "COMMENT ON ROLE paul IS NULL",
            "COMMENT ON ROLE nina IS 'mine'",
            "COMMENT ON TABLE vitals IS NULL",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
            conn.rollback()

    # 1. remove a user: NOLOGIN, memberships revoked, open sessions ended; paul can log in
    # nowhere
    session = ward.login("paul")
    session.autocommit = True
    ward.change(('[users.paul]\nroles = ["nurses"]\n', ""))
    p = ward.plan()
    assert _body(p.summary()) == [
        "user paul",
        "  - revoke membership of paul in nurses",
        "  - disable login of removed user paul (NOLOGIN)",
        "  - end the open sessions of removed user paul (if any)",
        "",
        "Plan: 0 to add, 0 to change, 3 to revoke.",
    ]
    ward.apply()
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")  # the session paul had open was ended
    session.close()
    for dbname in (db.name, "postgres"):
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            ward.login("paul", dbname)

    # 2. rename a role: the old one loses every privilege and member, and is dropped on request
    ward.change(
        ("[roles.researchers]", "[roles.analysts]"),
        ('roles = ["researchers"]', 'roles = ["analysts"]'),
    )
    p = ward.plan(drop_removed=True)
    body = _body(p.summary())
    assert "role analysts" in body and "  + create group role analysts" in body
    assert "  + grant SELECT (time, ward, heart_rate, spo2) on table vitals to analysts" in body
    assert "  - revoke SELECT(patient_id) on table vitals from researchers" not in body
    assert "  - revoke SELECT(heart_rate) on table vitals from researchers" in body
    assert "  - revoke membership of rita in researchers" in body
    assert "  + grant role analysts to rita" in body
    assert "  - drop removed role researchers" in body
    assert "to revoke" in _plan_line(p)
    ward.apply(drop_removed=True)
    with db.admin() as conn:
        assert not conn.execute("SELECT FROM pg_roles WHERE rolname = 'researchers'").fetchall()

    # 3. rename a table: the new one is created; the old one is reported with its rows and
    # loses its grants, its data stays
    ward.change(*RENAME_TABLE)
    p = ward.plan()
    body = _body(p.summary())
    assert "table prescriptions" in body and "  + create table prescriptions" in body
    assert body[body.index("table medications") : body.index("")] == [
        "table medications",
        "  - revoke INSERT, SELECT on table medications from nurses",
        "  - revoke DELETE, UPDATE on table medications from physicians",
    ], body
    assert _plan_line(p).endswith("3 to revoke."), body
    # the new hypertable gets the chunk trigger (its chunks: no writes, see docs/timescaledb.md)
    assert any("new chunks of prescriptions: no writes" in line for line in body), body
    assert any(
        w.startswith("table medications is no longer in the policy: 1 row(s) kept")
        for w in p.warnings
    )
    assert "nurses INSERT" in next(w for w in p.warnings if "medications" in w)
    ward.apply()
    with db.admin() as conn:
        assert conn.execute("SELECT count(*) FROM clinical.medications").fetchone() == (1,)
    with ward.login("maria") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM medications")

    # 4. add a column grant
    ward.change(
        (
            'grants = { vitals = ["SELECT (time, ward, heart_rate, spo2)"] }',
            'grants = { vitals = ["SELECT (time, ward, heart_rate, spo2)"], '
            'prescriptions = ["SELECT (time, drug)"] }',
        )
    )
    assert _body(ward.plan().summary()) == [
        "table prescriptions",
        "  + grant SELECT (time, drug) on table prescriptions to analysts",
        "",
        "Plan: 1 to add, 0 to change, 0 to revoke.",
    ]
    ward.apply()

    # 5. change a default
    ward.change(("note = \"text default ''\"", "note = \"text default 'n/a'\""))
    assert _body(ward.plan().summary()) == [
        "table vitals",
        "  ~ column vitals.note: default ''::text -> 'n/a'",
        "",
        "Plan: 0 to add, 1 to change, 0 to revoke.",
    ]
    ward.apply()
    with db.admin(autocommit=True) as conn:
        conn.execute("INSERT INTO clinical.vitals (time, patient_id, ward) VALUES (now(), 8, 'B')")
        assert conn.execute("SELECT note FROM clinical.vitals WHERE patient_id = 8").fetchone() == (
            "n/a",
        )


def test_drift_outside_the_policy_is_planned_back(db):
    ward = Ward(db)
    ward.apply()
    with db.admin(autocommit=True) as conn:
        conn.execute("ALTER ROLE maria SET default_transaction_read_only = on")
        conn.execute(
            "ALTER ROLE rita IN DATABASE {} SET work_mem = '1GB'".replace("{}", f'"{db.name}"')
        )
        conn.execute("ALTER ROLE rita CONNECTION LIMIT 50")
        conn.execute("GRANT physicians TO rita")
        conn.execute("ALTER TABLE clinical.vitals ALTER COLUMN ward DROP NOT NULL")
        conn.execute("ALTER TABLE clinical.medications ALTER COLUMN given_by SET DEFAULT 'x'")
        conn.execute("GRANT SELECT ON clinical.vitals TO PUBLIC")
        conn.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA clinical GRANT INSERT ON TABLES TO nurses")
    p = ward.plan()
    body = _body(p.summary())
    for line in (
        "  ~ user maria: reset settings not in the policy (default_transaction_read_only=on)",
        "  ~ user rita: reset work_mem (was 1GB)",
        "  ~ reset attributes of login user rita",
        "  - revoke membership of rita in physicians",
        "  ~ column vitals.ward: set not null",
        "  ~ column medications.given_by: default 'x'::text -> 'ward'",
        "  - revoke SELECT on table vitals from PUBLIC",
        "  - revoke INSERT on future tables in schema clinical from nurses",
    ):
        assert line in body, (line, body)
    assert _plan_line(p) == "Plan: 0 to add, 5 to change, 3 to revoke.", body
    ward.apply()


def test_roles_tsaccess_never_managed_are_left_alone(db):
    ward = Ward(db)
    helper_pw = db.create_login("dba_helper")
    with db.admin(autocommit=True) as conn:
        conn.execute("CREATE ROLE reporting NOLOGIN")
        conn.execute("GRANT reporting TO dba_helper")
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO dba_helper").format(sql.Identifier(db.name))
        )
        conn.execute("CREATE TABLE public.scratch (x int)")
        conn.execute("GRANT SELECT ON public.scratch TO reporting")
    ward.apply()
    ward.change(('[users.paul]\nroles = ["nurses"]\n', ""))
    ward.apply(drop_removed=True)
    with db.admin() as conn:
        roles = dict(
            conn.execute(
                "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('dba_helper', 'reporting', 'paul')"
            ).fetchall()
        )
        assert roles == {"dba_helper": True, "reporting": False}
        assert conn.execute(
            "SELECT pg_has_role('dba_helper', 'reporting', 'MEMBER'),"
            " has_table_privilege('reporting', 'public.scratch', 'SELECT')"
        ).fetchone() == (True, True)
    with psycopg.connect(
        **db.params(user="dba_helper", password=helper_pw, dbname="postgres")
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_removed_user_owning_objects_is_disabled_not_dropped(db):
    ward = Ward(db)
    ward.apply()
    with db.admin(autocommit=True) as conn:
        conn.execute("CREATE TABLE public.pauls_notes (x int)")
        conn.execute("ALTER TABLE public.pauls_notes OWNER TO paul")
        conn.execute("CREATE TABLE public.shared (x int)")
        conn.execute("GRANT SELECT ON public.shared TO paul")
    ward.change(('[users.paul]\nroles = ["nurses"]\n', ""))
    p = ward.plan(drop_removed=True)
    assert any("owns 1 object(s): table pauls_notes" in w for w in p.warnings), p.warnings
    assert "  - revoke all on table shared from removed role paul" in p.summary()
    assert "drop removed user paul" not in p.summary()
    ward.apply(drop_removed=True)
    with db.admin() as conn:
        assert conn.execute(
            "SELECT rolcanlogin, has_table_privilege('paul', 'public.shared', 'SELECT')"
            " FROM pg_roles WHERE rolname = 'paul'"
        ).fetchone() == (False, False)
        assert conn.execute("SELECT to_regclass('public.pauls_notes') IS NOT NULL").fetchone() == (
            True,
        )


def test_a_user_another_database_still_manages_keeps_its_login(db, pg_server):
    ward = Ward(db)
    ward.apply()
    other = f"{db.name}_b"
    with db.admin(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
    try:
        text = '[database]\nname = "x"\n[roles.readers]\n[users.paul]\nroles = ["readers"]\n'
        pol = parse_policy(tomllib.loads(text)).with_database(other)
        with psycopg.connect(**pg_server.params(dbname=other)) as conn:
            # paul leaves the nurses the first database's policy manages: cluster-wide, asked for
            apply(conn, pol, passwords=ward.passwords, allow_cluster_changes=True)
        ward.change(('[users.paul]\nroles = ["nurses"]\n', ""))
        body = _body(ward.plan().summary())
        assert f"  - user paul: no longer managed for {db.name} (still for {other})" in body
        assert "  - disable login of removed user paul (NOLOGIN)" not in body
        ward.apply()
        with ward.login("paul", other) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            ward.login("paul")  # no CONNECT here any more
    finally:
        with db.admin(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(other)))


def test_dropping_a_removed_table_needs_the_flag(db):
    ward = Ward(db)
    ward.apply()
    ward.change(*RENAME_TABLE)
    p = ward.plan(drop_removed_tables=True)
    assert "  - drop table medications (0 row(s); no longer in the policy)" in p.summary()
    ward.apply(drop_removed_tables=True)
    with db.admin() as conn:
        assert conn.execute("SELECT to_regclass('clinical.medications')").fetchone() == (None,)
