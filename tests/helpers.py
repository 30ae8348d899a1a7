"""Shared helpers for integration tests."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from tsaccess.client.params import without_login
from tsaccess.demo import company_policy
from tsaccess.passwords import Secret, resolve_passwords
from tsaccess.plan.compose import apply
from tsaccess.policy import Policy


@dataclass
class Company:
    policy: Policy
    passwords: dict[str, Secret]
    db: Any

    def connect(self, user: str, **kw: Any):
        return self.db.connect_as(user, self.passwords[user].reveal(), **kw)

    def params(self, user: str) -> dict[str, Any]:
        """Connection parameters of ``user`` (for ``driver.connect(**company.params(u))``)."""
        return self.db.params(user=user, password=self.passwords[user].reveal())

    def user_params(self) -> dict[str, Any]:
        return without_login(self.db.params())


def apply_company(db, policy: Policy | None = None) -> Company:
    policy = (policy or company_policy()).with_database(db.name)
    passwords = resolve_passwords([u.name for u in policy.users], generate=True, environ={})
    with db.admin() as conn:
        apply(conn, policy, passwords=passwords)
    return Company(policy, passwords, db)


def untouched(s: socket.socket) -> bool:
    """No connection is waiting (libpq's connect() returns once it is queued: no timing)."""
    try:
        conn, _ = s.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def quiesce_jobs(conn: Any) -> None:
    """Unschedule this database's TimescaleDB jobs and wait until none runs.

    A test that compresses, drops or retains chunks itself must not race the scheduler: it runs
    a new compression policy at once, and a chunk it compresses meanwhile makes the test's own
    ``compress_chunk`` fail ("already compressed") or deadlock. Commits ``conn``'s transaction.
    """
    conn.execute(
        "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
        " WHERE job_id >= 1000"
    )
    if not conn.autocommit:
        conn.commit()
    for _ in range(600):
        (busy,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type NOT IN ('client backend',"
            " 'autovacuum worker') AND backend_type NOT ILIKE '%scheduler%'"
        ).fetchone()
        if not conn.autocommit:
            conn.commit()
        if busy == 0:
            return
        time.sleep(0.1)
    raise AssertionError("a TimescaleDB job of this database still runs after 60 s")
