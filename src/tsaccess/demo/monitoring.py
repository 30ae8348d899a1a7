"""The demo's monitoring chapter: one scrape of ``tsaccess monitor`` as the policy's monitoring
user (skipped, saying why, without the ``monitor`` extra)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tsaccess.client.connection import connect
from tsaccess.monitor import Monitor, exposition, require_prometheus_client
from tsaccess.policy import Policy

__all__ = ["monitoring_chapter"]


class _Checks(Protocol):
    def __call__(self, name: str, ok: bool, detail: str = "") -> None: ...


# the lines worth reading in a demo (the whole scrape is longer)
_SHOWN = (
    "tsaccess_up",
    "tsaccess_policy_drift_steps",
    "tsaccess_privileged_roles",
    "tsaccess_sessions",
    "tsaccess_denied_total",
    "tsaccess_audit_rows_total",
    "tsaccess_table_writes_total",
    "tsaccess_hypertable_chunks_dropped",
    "tsaccess_audit_chain_ok",
    "tsaccess_audit_unsealed_seconds",
)


def monitoring_chapter(
    number: int,
    params: Callable[[str], dict[str, Any]],
    policy: Policy,
    check: _Checks,
    out: Callable[[str], None],
) -> None:
    """Collect once as the first user holding a monitoring role and show the scrape."""
    monitors = {r.name for r in policy.roles if r.monitoring}
    user = next((u.name for u in policy.users if set(u.roles) & monitors), None)
    if user is None:
        return
    out(
        f"\n== {number}. Monitoring: one scrape of tsaccess monitor, as {user} (pg_monitor and "
        "the audit trail; no data table)"
    )
    try:
        require_prometheus_client()
    except ImportError as exc:
        out(f"   skipped: {exc}")
        return
    with Monitor(lambda: connect(**params(user)), policy) as monitor:
        reading = monitor.collect()
    lines = exposition(reading).decode().splitlines()
    samples = [x for x in lines if not x.startswith("#")]
    out(
        f"   /metrics: {len(samples)} samples in {reading.seconds * 1000:.0f} ms; drift "
        f"{reading.drift_steps} step(s); the non-zero ones among them:"
    )
    for line in samples:
        if line.startswith(_SHOWN) and not line.endswith(" 0.0"):
            out(f"   {line}")
    check("monitor: the exporter reached the database", reading.up, reading.error)
    check(
        "monitor: no drift (the database is what the policy says)",
        reading.drift_steps == 0,
        f"{reading.drift_steps} step(s)",
    )
    denied = reading.audit.denied.get("alice", 0) if reading.audit else 0
    check("monitor: alice's refused statements are counted", denied >= 1, f"{denied}")
