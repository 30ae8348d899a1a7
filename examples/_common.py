"""Shared by the examples: reach the company database through libpq's PG* variables.

``examples/run_all.py`` starts one throwaway server, applies the company policy and exports
PGHOST, PGPORT, PGDATABASE, PGSSLROOTCERT, the admin login (PGUSER/PGPASSWORD) and each user's
TSACCESS_PASSWORD_<USER>. Run alone, a script does the same for itself first.
"""

from __future__ import annotations

import atexit
import os

from psycopg import sql

import tsaccess
from tsaccess.demo import company_policy
from tsaccess.ephemeral import EphemeralServer
from tsaccess.passwords import resolve_passwords
from tsaccess.plan.compose import apply

USERS = [u.name for u in company_policy().users]  # alice ... eve, and monitor


def ensure_company_db() -> None:
    """Make sure PG* variables point at a company_db with the policy applied."""
    if os.environ.get("PGHOST"):
        return
    server = EphemeralServer()
    info = server.start()
    atexit.register(server.stop)
    policy = company_policy()
    with tsaccess.connect(**info.params(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(policy.database)))
    passwords = resolve_passwords(USERS, generate=True)
    with tsaccess.connect(**info.params(dbname=policy.database)) as conn:
        apply(conn, policy, passwords=passwords)
    os.environ.update(
        PGHOST=info.host,
        PGPORT=str(info.port),
        PGDATABASE=policy.database,
        PGSSLROOTCERT=info.sslrootcert or "",
        PGUSER=info.user,
        PGPASSWORD=info.password,
    )
    for user, pw in passwords.items():
        os.environ[f"TSACCESS_PASSWORD_{user.upper()}"] = pw.reveal()


def password(user: str) -> str:
    return os.environ[f"TSACCESS_PASSWORD_{user.upper()}"]
