"""The Prometheus alerting rules for ``tsaccess monitor`` (``tsaccess monitor rules``).

Each rule names what it saw and the fix in its annotations; the defaults (thresholds, windows,
``for:``) are the ones ``docs/howto/monitoring.md`` explains. ``promtool check rules`` accepts
the file (tested with the real promtool).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["ALERTS", "Alert", "rules_yaml"]

_DURATION = re.compile(r"^(0|[0-9]+(ms|s|m|h|d|w|y))+$")


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    """The rule's ``for:``."""
    severity: str
    summary: str
    description: str


_WRITES = 'operation=~"INSERT|UPDATE|DELETE|TRUNCATE"'

ALERTS: tuple[Alert, ...] = (
    Alert(
        "TsaccessExporterDown",
        'up{job="$JOB"} == 0',
        "5m",
        "critical",
        "tsaccess monitor on {{ $labels.instance }} does not answer",
        "Prometheus cannot scrape the tsaccess exporter: no security signal of this database "
        "is watched. Check the service (systemctl status tsaccess-monitor).",
    ),
    Alert(
        "TsaccessDatabaseUnreachable",
        "tsaccess_up == 0",
        "5m",
        "critical",
        "tsaccess monitor cannot reach its database",
        "The exporter runs but its last collection did not reach the database (network, TLS, "
        "the monitoring user's password or pg_hba.conf). Its log says why.",
    ),
    Alert(
        "TsaccessCollectFailing",
        "tsaccess_collect_ok == 0",
        "15m",
        "warning",
        "tsaccess monitor cannot read {{ $labels.part }}",
        "One part of the collection fails (the exporter's log names the error): its metrics "
        "are missing. Has the monitoring role lost a privilege? Run tsaccess plan.",
    ),
    Alert(
        "TsaccessPolicyDrift",
        "sum without (phase, action) (tsaccess_policy_drift_steps) > 0",
        "10m",
        "critical",
        "The database differs from its tsaccess policy ({{ $value }} step(s))",
        "Someone changed roles, grants or audit objects outside the policy (a GRANT by hand, a "
        "dropped trigger). See what with tsaccess plan; undo it with tsaccess apply, or change "
        "the policy.",
    ),
    Alert(
        "TsaccessPrivilegedRoleOutsidePolicy",
        "tsaccess_privileged_roles > 0",
        "1m",
        "critical",
        "{{ $value }} role(s) with {{ $labels.attribute }} outside the policy",
        "A role has {{ $labels.attribute }} and is not an expected administrator: "
        'tsaccess_privileged_role{attribute="{{ $labels.attribute }}"} names it. Remove the '
        "attribute (ALTER ROLE ... NO{{ $labels.attribute }}) or add it to --expect-privileged.",
    ),
    Alert(
        "TsaccessAuditNotGrowing",
        f"sum by (instance, table) (increase(tsaccess_table_writes_total[15m])) > 0"
        f" unless on (instance, table)"
        f" sum by (instance, table) (increase(tsaccess_audit_rows_total{{{_WRITES}}}[15m])) > 0",
        "5m",
        "critical",
        "Writes to {{ $labels.table }} but no audit rows",
        "The server counted writes to {{ $labels.table }} in the last 15 minutes and the audit "
        "trail recorded none: an audit trigger is disabled or dropped, or the writes bypass it. "
        "Run tsaccess plan and tsaccess verify.",
    ),
    Alert(
        "TsaccessChunksDroppedUnrecorded",
        'increase(tsaccess_hypertable_chunks_dropped_outside_retention_total{recorded="false"}'
        "[1h]) > 0",
        "0s",
        "critical",
        "Chunks of {{ $labels.table }} vanished without an audit row",
        "Chunks of {{ $labels.table }} disappeared from the catalog and no DROP CHUNK row "
        "records them: drop_chunks called by an owner (rows deleted without any trace). Find "
        "who in the server log; restore from backup if the data was not meant to go.",
    ),
    Alert(
        "TsaccessChunksDroppedOutsideRetention",
        'increase(tsaccess_hypertable_chunks_dropped_outside_retention_total{recorded="true"}'
        "[1h]) > 0",
        "0s",
        "warning",
        "Chunks of {{ $labels.table }} dropped outside the retention job",
        "A chunk of {{ $labels.table }} was dropped with DROP TABLE (recorded in the audit "
        "trail as DROP CHUNK ... outside the retention job): check that it was meant.",
    ),
    Alert(
        "TsaccessDeniedBurst",
        "sum by (instance, user) (increase(tsaccess_denied_total[5m])) > 20",
        "2m",
        "warning",
        "{{ $labels.user }} is refused again and again",
        "More than 20 refused statements of {{ $labels.user }} in 5 minutes (DENIED rows of the "
        "audit trail): probing for data, or an application whose access is wrong. "
        "tsaccess audit recent --policy ... shows them.",
    ),
    Alert(
        "TsaccessDeniedUnrecorded",
        "sum by (instance, user) (increase(tsaccess_denied_unrecorded_seconds_total[10m])) > 0",
        "0s",
        "warning",
        "DENIED events of {{ $labels.user }} beyond what the audit records",
        "{{ $labels.user }} had more refused statements in a second than the audit trail "
        "records (its rate bound): some were not recorded one by one.",
    ),
    Alert(
        "TsaccessFailedLoginBurst",
        "sum by (instance, user) (increase(tsaccess_failed_logins_total[5m])) > 10",
        "0s",
        "warning",
        "Failed logins for {{ $labels.user }}",
        "More than 10 failed logins for {{ $labels.user }} in 5 minutes (the server's log): "
        "password guessing, or a client with an old password. _unknown: names of no role.",
    ),
    Alert(
        "TsaccessUnverifiedSessions",
        'sum by (instance, user) (tsaccess_sessions{verified="false"}) > 0'
        ' or sum by (instance, user) (tsaccess_sessions{tls="false"}) > 0',
        "10m",
        "warning",
        "Sessions of {{ $labels.user }} without a verified server or without TLS",
        "A client of {{ $labels.user }} connects without TLS, or a tsaccess client reports it "
        "did not verify the server's certificate (sslmode=require without sslrootcert): anyone "
        "in between could pose as the server. Give the client the CA (sslrootcert).",
    ),
    Alert(
        "TsaccessAuditChainBroken",
        "tsaccess_audit_chain_ok == 0",
        "0s",
        "critical",
        "The audit chain no longer matches the audit trail",
        "Sealed audit rows are missing or the chain's blocks do not follow each other: the "
        "trail was changed after it was sealed. Run tsaccess audit prove with your checkpoints.",
    ),
    Alert(
        "TsaccessAuditUnsealed",
        "tsaccess_audit_unsealed_seconds > 3600",
        "15m",
        "warning",
        "Audit rows unsealed for more than an hour",
        "Committed audit rows wait for a seal for over an hour: tsaccess audit seal does not "
        "run (cron, or the seal job), or a transaction left open holds it back.",
    ),
)


def _scalar(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def rules_yaml(*, job: str = "tsaccess", duration: str | None = None) -> str:
    """The rules file.

    Args:
        job: the Prometheus job that scrapes the exporter (for the exporter-down rule).
        duration: every rule's ``for:`` instead of its default (e.g. ``0s`` in a test).

    Raises:
        ValueError: ``duration`` is not a Prometheus duration, or ``job`` has a quote.
    """
    if duration is not None and not _DURATION.match(duration):
        raise ValueError(f"{duration!r} is not a Prometheus duration; use e.g. 30s, 5m or 1h")
    if not re.fullmatch(r"[A-Za-z0-9_.:/-]+", job):
        raise ValueError(f"job {job!r}: use letters, digits and _ . : / -")
    lines = ["groups:", "  - name: tsaccess", "    rules:"]
    for a in ALERTS:
        lines += [
            f"      - alert: {a.name}",
            "        expr: |-",
            f"          {a.expr.replace('$JOB', job)}",
            f"        for: {duration or a.duration}",
            "        labels:",
            f"          severity: {a.severity}",
            "        annotations:",
            f"          summary: {_scalar(a.summary)}",
            f"          description: {_scalar(a.description)}",
        ]
    return "\n".join(lines) + "\n"
