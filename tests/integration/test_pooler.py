"""Role scoping behind PgBouncer in transaction mode (issue 15, point 4), for the sync and the
async client (the ``driver`` fixture) where the behaviour must be the same.

On a throwaway primary + 2 standbys + PgBouncer. One login user, member of two group roles; two
clients scoped to different roles share ONE server connection (``default_pool_size = 1``). Every
transaction checks ``current_user`` and the audit actor; one client also tries, as an insider
would, to leave its role and actor on the shared server connection.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

import tsaccess
from tsaccess import audit
from tsaccess.demo import company_policy
from tsaccess.ephemeral import ClusterInfo
from tsaccess.passwords import Secret, resolve_passwords
from tsaccess.plan.compose import apply, plan


@dataclass
class App:
    cluster: ClusterInfo
    user: str
    password: str
    roles: tuple[str, str]

    def bouncer(self, **kw: Any) -> dict[str, Any]:
        assert self.cluster.pgbouncer is not None
        return self.cluster.pgbouncer.params(user=self.user, password=self.password, **kw)


@pytest.fixture(scope="module")
def app(cluster: ClusterInfo) -> App:
    user, password = "pb_app", secrets.token_urlsafe(18)
    roles = ("pb_readers", "pb_writers")
    with tsaccess.connect(**cluster.primary.params(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)
            )
        )
        for role in roles:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(user))
            )
        conn.execute("CREATE TABLE pb_log (who text)")
        conn.execute("GRANT SELECT, INSERT ON pb_log TO pb_writers")
        conn.execute("GRANT SELECT ON pb_log TO pb_readers")
    return App(cluster, user, password, roles)


_PROBE = (
    "SELECT current_user::text, pg_catalog.current_setting('tsaccess.actor', true),"
    " pg_catalog.pg_backend_pid(), %s::int"
)


def test_without_scoping_a_session_role_leaks_to_the_next_client(app: App) -> None:
    """The problem this guards against: session-level SET ROLE through transaction pooling."""
    with (
        tsaccess.connect(**app.bouncer(), role=app.roles[1]) as leaky,
        tsaccess.connect(**app.bouncer()) as other,
    ):
        leaky.prepare_threshold = other.prepare_threshold = None
        leaky.execute("SELECT 1")
        leaky.commit()
        (user,) = other.execute("SELECT current_user::text").fetchone() or ("",)
        other.rollback()
        other.execute("RESET ROLE")  # leave the shared server connection clean
        other.commit()
    assert user == app.roles[1]  # the other client runs with pb_writers' privileges


def test_two_scoped_clients_interleave_1000_transactions_on_one_server_connection(
    app: App, driver
) -> None:
    a_role, b_role = app.roles
    a = driver.connect(**app.bouncer(), role=a_role, pooler="pgbouncer")
    b = driver.connect(**app.bouncer(), role=b_role, pooler="pgbouncer", preflight=True)
    try:
        driver.set_actor(a, "client-a", "req-a")
        clients = [(a, a_role, "client-a"), (b, b_role, "")]
        rng = random.Random(15)
        pids: set[int] = set()
        seen = {a_role: 0, b_role: 0}
        t0 = time.perf_counter()
        for i in range(1200):
            conn, role, actor = rng.choice(clients)
            with conn.transaction():
                row = conn.execute(_PROBE, (i,)).fetchone()
                if conn is a and i % 5 == 0:
                    # an insider tries to leave its role and actor on the server connection
                    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(b_role)))
                    conn.execute("SELECT pg_catalog.set_config('tsaccess.actor', 'stolen', false)")
                    conn.execute("SET SESSION tsaccess.request_id = 'stolen'")
            assert row is not None
            assert (row[0], row[1] or "", row[3]) == (role, actor, i), (i, row)
            pids.add(row[2])
            seen[role] += 1
        elapsed = time.perf_counter() - t0
        assert len(pids) == 1, f"{len(pids)} server connections: not one shared backend"
        assert min(seen.values()) > 500
        assert a.prepare_threshold is None and b.prepare_threshold is None
        print(f"1200 interleaved transactions through PgBouncer in {elapsed:.2f} s")
    finally:
        a.close()
        b.close()


def test_the_pool_side_every_statement_runs_under_the_role(app: App, driver) -> None:
    """Implicit transactions (no transaction block), commit and rollback: still the role."""
    with driver.connect(**app.bouncer(), role=app.roles[0], pooler="pgbouncer") as conn:
        for _ in range(3):
            assert conn.execute("SELECT current_user::text").fetchone() == (app.roles[0],)
            conn.commit()
            assert conn.execute("SELECT current_user::text").fetchone() == (app.roles[0],)
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # readers may not insert
            conn.execute("INSERT INTO pb_log VALUES ('readers')")
        conn.rollback()


def test_pipeline_mode_and_named_cursors_run_under_the_role(app: App, driver) -> None:
    with driver.connect(**app.bouncer(), role=app.roles[0], pooler="pgbouncer") as conn:
        with conn.pipeline(), conn.transaction():
            cur = conn.execute("SELECT current_user::text")
            cur2 = conn.execute("SELECT current_setting('role')")
        assert cur.fetchone() == (app.roles[0],)
        assert cur2.fetchone() == (app.roles[0],)
        with conn.transaction(), conn.cursor(name="scoped_cursor") as named:
            named.execute("SELECT current_user::text FROM generate_series(1, 3)")
            assert named.fetchall() == [(app.roles[0],)] * 3


def test_preflight_behind_pgbouncer_checks_the_transactions_role(app: App, driver) -> None:
    readers, writers = app.roles
    with (
        driver.connect(**app.bouncer(), role=readers, pooler="pgbouncer", preflight=True) as r,
        driver.connect(**app.bouncer(), role=writers, pooler="pgbouncer", preflight=True) as w,
    ):
        for _ in range(3):  # interleaved on the one server connection
            with w.transaction():
                w.execute("INSERT INTO pb_log VALUES ('writers')")
                raise psycopg.Rollback()  # leave pb_log empty
            with pytest.raises(tsaccess.PreflightDenied, match=r"INSERT on table public\.pb_log"):
                r.execute("INSERT INTO pb_log VALUES ('readers')")
            r.rollback()
            assert r.execute("SELECT count(*) FROM pb_log WHERE who = 'readers'").fetchone() == (0,)
            r.rollback()
        with r.transaction():  # confirmed in a savepoint of the scoped transaction
            with pytest.raises(tsaccess.PreflightDenied, match=r"INSERT on table public\.pb_log"):
                r.execute("INSERT INTO pb_log VALUES ('readers')")
            assert r.execute("SELECT current_user::text").fetchone() == (readers,)


def test_autocommit_is_refused_before_sending(app: App, driver) -> None:
    with pytest.raises(tsaccess.RoleScopeError, match="autocommit"):
        driver.connect(**app.bouncer(), role=app.roles[1], pooler="pgbouncer", autocommit=True)
    with driver.connect(**app.bouncer(), role=app.roles[1], pooler="pgbouncer") as conn:
        conn.autocommit = True
        with pytest.raises(tsaccess.RoleScopeError, match="SET LOCAL ROLE"):
            conn.execute("INSERT INTO pb_log VALUES ('autocommit')")
        conn.autocommit = False
        (n,) = conn.execute("SELECT count(*) FROM pb_log WHERE who = 'autocommit'").fetchone() or (
            -1,
        )
        conn.rollback()
    assert n == 0
    with pytest.raises(tsaccess.RoleScopeError, match="unknown pooler"):
        driver.connect(**app.bouncer(), pooler="pgpool")


def test_a_role_revoked_mid_session_fails_closed(app: App) -> None:
    role = f"pb_tmp_{secrets.token_hex(3)}"
    with tsaccess.connect(**app.cluster.primary.params(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT {} TO pb_app").format(sql.Identifier(role)))
        with tsaccess.connect(**app.bouncer(), role=role, pooler="pgbouncer") as conn:
            assert conn.execute("SELECT current_user::text").fetchone() == (role,)
            conn.commit()
            admin.execute(sql.SQL("REVOKE {} FROM pb_app").format(sql.Identifier(role)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT current_user::text")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_pooled_connections_forget_the_actor_and_keep_the_role(app: App, driver) -> None:
    with driver.create_pool(
        **app.bouncer(), role=app.roles[1], pooler="pgbouncer", min_size=1, max_size=1
    ) as pool:
        assert pool.pooler == "pgbouncer"
        with pool.connection() as conn:
            driver.set_actor(conn, "first-borrower")
            with conn.transaction():
                conn.execute("INSERT INTO pb_log VALUES (current_setting('tsaccess.actor'))")
        with pool.connection() as conn:
            row = conn.execute(
                "SELECT current_user::text, current_setting('tsaccess.actor', true)"
            ).fetchone()
        assert row is not None and (row[0], row[1] or "") == (app.roles[1], "")
        pool.check()  # the pool's own check passes behind the pooler


# --- the audit trail through PgBouncer ----------------------------------------------------


@dataclass
class Company:
    cluster: ClusterInfo
    passwords: dict[str, Secret]

    def bouncer(self, user: str) -> dict[str, Any]:
        assert self.cluster.pgbouncer is not None
        return self.cluster.pgbouncer.params(
            user=user, password=self.passwords[user].reveal(), dbname="pb_company"
        )


@pytest.fixture(scope="module")
def company(cluster: ClusterInfo) -> Company:
    with tsaccess.connect(**cluster.primary.params(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE pb_company")
    policy = company_policy().with_database("pb_company")
    passwords = resolve_passwords([u.name for u in policy.users], generate=True, environ={})
    with tsaccess.connect(**cluster.primary.params(dbname="pb_company")) as conn:
        apply(conn, policy, passwords=passwords)
    # PgBouncer 1.18 runs auth_query in the client's database; the policy revoked CONNECT
    # from everyone it does not list (docs/deployment.md)
    cluster.prepare_pgbouncer_database("pb_company")
    return Company(cluster, passwords)


def _audit_rows(cluster: ClusterInfo, request_ids: tuple[str, ...]) -> list[tuple[Any, ...]]:
    with tsaccess.connect(**cluster.primary.params(dbname="pb_company")) as conn:
        return conn.execute(
            "SELECT username, operation, effective_role, actor, request_id, application_name"
            " FROM activity_audit WHERE request_id = ANY(%s) OR actor IS NULL ORDER BY id",
            (list(request_ids),),
        ).fetchall()


def test_audit_rows_and_denied_events_through_pgbouncer_keep_role_and_actor(
    company: Company,
) -> None:
    bob_req, alice_req = secrets.token_hex(4), secrets.token_hex(4)
    with (
        tsaccess.connect(
            **company.bouncer("bob"), role="data_engineers", pooler="pgbouncer"
        ) as bob,
        tsaccess.connect(
            **company.bouncer("alice"), role="data_analysts", pooler="pgbouncer"
        ) as alice,
    ):
        audit.set_actor(bob, "ingest:bob", bob_req)
        with bob.transaction():
            bob.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 's1')")
        audit.set_actor(alice, "web:alice", alice_req)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alice.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'a')")
        # with one server connection per user, record after the rollback: a side connection
        # would wait for the server connection this session's failed transaction holds
        alice.rollback()
        assert audit.record_denied(alice, "INSERT INTO sensor_readings ...", "42501")
        with alice.transaction():  # inside the caller's open transaction
            audit.set_actor(alice, "web:alice-2", alice_req)
            assert alice.execute("SELECT current_setting('tsaccess.actor')").fetchone() == (
                "web:alice-2",
            )
        audit.set_actor(alice, None)
        assert audit.record_denied(alice, "TRUNCATE sensor_readings", "42501")
    rows = _audit_rows(company.cluster, (bob_req, alice_req))
    assert rows == [
        ("bob", "INSERT", "data_engineers", "ingest:bob", bob_req, "tsaccess:bob/data_engineers"),
        (
            "alice",
            "DENIED",
            "data_analysts",
            "web:alice",
            alice_req,
            "tsaccess:alice/data_analysts",
        ),
        ("alice", "DENIED", "data_analysts", None, None, "tsaccess:alice/data_analysts"),
    ]


def test_also_connect_keeps_pgbouncers_auth_user_through_apply(company: Company) -> None:
    """PgBouncer 1.18 looks logins up in the client's database: a policy that revokes CONNECT
    from roles it does not list would lock every user out of PgBouncer, unless it lists the
    auth user in ``also_connect``."""
    cluster = company.cluster
    assert cluster.pgbouncer_auth_user is not None and not cluster.pgbouncer_auth_dbname
    policy = company_policy().with_database("pb_company")
    with tsaccess.connect(**cluster.primary.params(dbname="pb_company")) as conn:
        revoke = [s.summary for s in plan(conn, policy).steps]
        conn.rollback()
        assert revoke == [
            f"revoke CONNECT on database pb_company from {cluster.pgbouncer_auth_user}"
        ]
        kept = dataclasses.replace(policy, also_connect=(cluster.pgbouncer_auth_user,))
        assert not plan(conn, kept)
        conn.rollback()
        assert apply(conn, kept, passwords=company.passwords).applied == 0
    with tsaccess.connect(**company.bouncer("carol"), pooler="pgbouncer") as carol:
        assert carol.execute("SELECT current_user::text").fetchone() == ("carol",)
