"""Shared helpers for integration tests."""

from __future__ import annotations

import socket
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
