"""Monitoring as an auditor: the tutorial's queries through tsaccess.audit; then what
``tsaccess monitor`` (the Prometheus exporter) reads, as the policy's monitoring user."""

from __future__ import annotations

import datetime as dt

from _common import ensure_company_db, password

import tsaccess
from tsaccess import audit
from tsaccess.demo import company_policy
from tsaccess.monitor import Monitor

ensure_company_db()
with tsaccess.connect(user="bob", password=password("bob")) as conn:  # something to audit
    conn.execute(
        "INSERT INTO sensor_readings (time, sensor_id, temperature)"
        " VALUES (now(), 'TEMP_001', 22.5)"
    )
    conn.commit()
with tsaccess.connect(user="david", password=password("david")) as conn:  # audited per row
    conn.execute(
        "INSERT INTO financial_metrics (time, metric_type, amount) VALUES (now(), 'fees', 100)"
    )
    conn.execute("UPDATE financial_metrics SET amount = amount * 1.1 WHERE metric_type = 'fees'")
    conn.commit()

with tsaccess.connect(user="eve", password=password("eve")) as conn:
    print("Recent activity:\n" + audit.recent(conn, 5).to_text(), end="\n\n")
    changed = audit.changes(conn, "financial_metrics", since=dt.timedelta(hours=1), limit=5)
    # eve may not read financial_metrics: she sees who changed which rows, not their values
    # ({} below); readers of both the audit and the table see the values (docs/audit-data.md)
    print("Changed rows of financial_metrics (old -> new):")
    for c in changed:
        print(f"  {c.event_time:%H:%M:%S} {c.username} {c.operation} {c.old_data} -> {c.new_data}")
    print()
    print("Summary:\n" + audit.summary(conn, dt.timedelta(hours=1)).to_text(), end="\n\n")
    print("Activity per hour:\n" + audit.activity(conn).to_text(), end="\n\n")
    print("Sessions (with TLS):\n" + audit.active_sessions(conn).to_text(), end="\n\n")
    print("Roles:\n" + audit.roles(conn).to_text())

# The same signals for Prometheus (docs/howto/monitoring.md): one collection as "monitor", the
# policy's monitoring user (pg_monitor and the audit trail; no data table)

with Monitor(
    lambda: tsaccess.connect(user="monitor", password=password("monitor")), company_policy()
) as monitor:
    reading = monitor.collect()
print(
    f"\ntsaccess monitor: drift {reading.drift_steps} step(s), sessions {dict(reading.sessions or {})}"
)
if reading.audit is not None:
    print(f"DENIED per user: {dict(reading.audit.denied)}")
