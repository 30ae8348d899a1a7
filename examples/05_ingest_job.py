"""An ingest job: bob writes sensor readings through a role-scoped pool; every batch is audited
with the job's actor and request id."""

from __future__ import annotations

import datetime as dt
import random

from _common import ensure_company_db, password

import tsaccess
from tsaccess import audit

ensure_company_db()
pool = tsaccess.create_pool(
    user="bob",
    password=password("bob"),
    role="data_engineers",
    min_size=1,
    max_size=4,
    name="ingest",
)
now = dt.datetime.now(dt.UTC)
try:
    for batch in range(3):
        rows = [
            (
                now - dt.timedelta(minutes=5 * i),
                f"TEMP_{i % 4:03d}",
                round(random.uniform(18, 26), 2),
                random.randint(30, 60),
                "Building A",
                "Engineering",
            )
            for i in range(500)
        ]
        with pool.connection() as conn:
            audit.set_actor(conn, "ingest-job", f"batch-{batch}")
            with conn.cursor().copy(
                "COPY sensor_readings (time, sensor_id, temperature,"
                " humidity, location, department) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        print(f"batch {batch}: {len(rows)} rows")
finally:
    pool.close()

with tsaccess.connect(user="eve", password=password("eve")) as conn:
    mine = [e for e in audit.recent(conn, 10) if e.actor == "ingest-job"]
    print("audited batches:", [(e.request_id, e.row_count) for e in mine])
    assert len(mine) == 3
