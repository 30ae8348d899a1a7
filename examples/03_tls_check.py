"""TLS: every connection is encrypted and verified; a downgrade is refused before any packet."""

from __future__ import annotations

from _common import ensure_company_db, password

import tsaccess

ensure_company_db()
with tsaccess.connect(user="alice", password=password("alice")) as conn:
    print("alice:", tsaccess.tls_status(conn))  # e.g. TLSv1.3 TLS_AES_256_GCM_SHA384 (256 bits)

for weak in ("disable", "allow", "prefer"):
    try:
        tsaccess.connect(user="alice", password=password("alice"), sslmode=weak)
    except tsaccess.InsecureConnectionError as exc:
        print(f"sslmode={weak}: refused ({exc})"[:110])
    else:
        raise SystemExit(f"sslmode={weak} was accepted!")

# a Unix-domain socket never carries TLS: refused before libpq opens it
try:
    tsaccess.connect(host="/var/run/postgresql", user="alice", password=password("alice"))
except tsaccess.InsecureConnectionError as exc:
    print(f"host=/var/run/postgresql: refused ({exc})"[:110])
else:
    raise SystemExit("a Unix-domain socket was accepted!")
