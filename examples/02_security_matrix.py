"""The tutorial's security_test.py, computed: every privilege tried as every user over TLS."""

from __future__ import annotations

import os

from _common import USERS, ensure_company_db

import tsaccess
from tsaccess.demo import company_policy
from tsaccess.passwords import resolve_passwords
from tsaccess.verify import verify

ensure_company_db()
policy = company_policy()
with tsaccess.connect() as admin:
    matrix = verify(
        admin,
        policy,
        resolve_passwords(USERS),
        host=os.environ["PGHOST"],
        port=os.environ["PGPORT"],
    )
print(matrix.to_text())
raise SystemExit(0 if matrix.ok else 3)
