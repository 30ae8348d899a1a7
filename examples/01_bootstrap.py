"""Bootstrap: the tutorial's 01-schema.sql + 02-security.sql as a policy, planned then applied.

Run: python examples/01_bootstrap.py (starts a throwaway server when PGHOST is not set)
"""

from __future__ import annotations

from _common import USERS, ensure_company_db

import tsaccess
from tsaccess.demo import company_policy
from tsaccess.passwords import resolve_passwords
from tsaccess.plan.compose import plan

ensure_company_db()  # applies the policy once (idempotent: see the second plan below)
policy = company_policy()
passwords = resolve_passwords(USERS)  # from TSACCESS_PASSWORD_<USER>

# admin connection from PG* variables: TLS is enforced whatever they say
with tsaccess.connect() as admin:
    p = plan(admin, policy, passwords=passwords)
    print(p.summary())  # "Nothing to do": the database matches the policy
    assert not p, "the policy should already be applied"
    tables = admin.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    ).fetchall()
    print("tables:", ", ".join(t[0] for t in tables))
