"""The metrics ``tsaccess monitor`` exports: names, kinds, labels and help, in one place.

The exporter, the alerting rules, the Grafana dashboard and the docs' table all read this list
(a unit test checks that ``docs/howto/monitoring.md`` describes every metric and the dashboard
shows each one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["METRICS", "MetricSpec", "spec"]

Kind = Literal["gauge", "counter"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric family. A counter's name here has no ``_total``: the exposition adds it."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str

    @property
    def sample_name(self) -> str:
        """The name of its samples (``tsaccess_denied_total`` for the counter ``..._denied``)."""
        return self.name + "_total" if self.kind == "counter" else self.name


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("tsaccess_up", "gauge", (), "1: the last collection reached the database"),
    MetricSpec(
        "tsaccess_collect_ok",
        "gauge",
        ("part",),
        "1: this part of the last collection succeeded (drift, roles, sessions, audit, chunks, "
        "chain, server_log)",
    ),
    MetricSpec(
        "tsaccess_collect_duration_seconds",
        "gauge",
        (),
        "How long the last collection took",
    ),
    MetricSpec(
        "tsaccess_collect_timestamp_seconds",
        "gauge",
        (),
        "When the last collection ended (Unix time)",
    ),
    MetricSpec(
        "tsaccess_policy_drift_steps",
        "gauge",
        ("phase", "action"),
        "Steps `tsaccess plan` would run now, by phase and action (0 everywhere: the database "
        "is what the policy says)",
    ),
    MetricSpec(
        "tsaccess_policy_drift_unchecked",
        "gauge",
        ("part",),
        "1: this part of the policy is not readable by the monitoring role and not counted in "
        "the drift (passwords, slice attributes)",
    ),
    MetricSpec(
        "tsaccess_privileged_roles",
        "gauge",
        ("attribute",),
        "Roles with SUPERUSER, BYPASSRLS, CREATEROLE or REPLICATION that the policy does not "
        "name and that are not expected (--expect-privileged, the bootstrap superuser)",
    ),
    MetricSpec(
        "tsaccess_privileged_role",
        "gauge",
        ("role", "attribute"),
        "1 for each role counted in tsaccess_privileged_roles, with its attribute",
    ),
    MetricSpec(
        "tsaccess_sessions",
        "gauge",
        ("user", "tls", "verified"),
        "Client sessions on the database now; tls: true, false (TCP without TLS) or local "
        "(Unix socket); verified: client_cert (the server verified a client certificate), "
        "false (a tsaccess client reports it did not verify the server), unknown",
    ),
    MetricSpec(
        "tsaccess_audit_rows",
        "counter",
        ("table", "operation"),
        "Rows in the audit trail, by audited table and operation (DENIED rows: table empty)",
    ),
    MetricSpec(
        "tsaccess_denied",
        "counter",
        ("user",),
        "DENIED events recorded in the audit trail, by login user",
    ),
    MetricSpec(
        "tsaccess_denied_unrecorded_seconds",
        "counter",
        ("user",),
        "Seconds in which a user had more DENIED events than the audit records (the rate bound):"
        " each such second has one 'not recorded' row",
    ),
    MetricSpec(
        "tsaccess_table_writes",
        "counter",
        ("table",),
        "Rows inserted, updated and deleted in an audited table and its chunks, from the "
        "server's statistics (compare with tsaccess_audit_rows)",
    ),
    MetricSpec(
        "tsaccess_hypertable_chunks_dropped_by_retention",
        "counter",
        ("table",),
        "Chunks the audited retention job dropped (DROP CHUNK rows of the audit trail)",
    ),
    MetricSpec(
        "tsaccess_hypertable_chunks_dropped_outside_retention",
        "counter",
        ("table", "recorded"),
        "Chunks dropped outside the audited retention job: recorded=true (DROP TABLE, recorded "
        "by the event trigger), recorded=false (vanished from the catalog with no audit row: "
        "drop_chunks, seen by this exporter)",
    ),
    MetricSpec(
        "tsaccess_audit_chain_ok",
        "gauge",
        (),
        "1: the audit chain's blocks follow each other and the sealed audit rows checked are "
        "all there (see docs/howto/monitoring.md for what a scrape checks)",
    ),
    MetricSpec(
        "tsaccess_audit_chain_blocks",
        "gauge",
        (),
        "Sealed blocks of the audit chain",
    ),
    MetricSpec(
        "tsaccess_audit_last_seal_timestamp_seconds",
        "gauge",
        (),
        "When the newest block was sealed (Unix time; absent before the first seal)",
    ),
    MetricSpec(
        "tsaccess_audit_unsealed_seconds",
        "gauge",
        (),
        "Age of the oldest committed audit row no seal covers yet (0: everything is sealed)",
    ),
    MetricSpec(
        "tsaccess_failed_logins",
        "counter",
        ("user",),
        "Failed logins in the server's jsonlog (password or pg_hba.conf refusals), by user name "
        "(names of no role: _unknown)",
    ),
)

_BY_NAME = {m.name: m for m in METRICS}


def spec(name: str) -> MetricSpec:
    """The metric named ``name`` (without ``_total``)."""
    return _BY_NAME[name]
