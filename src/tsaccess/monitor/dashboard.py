"""A Grafana dashboard for ``tsaccess monitor`` (``tsaccess monitor dashboard``; the same JSON
is ``examples/grafana/tsaccess-dashboard.json``): a row of stats, then a graph per signal.

Import it in Grafana (Dashboards, New, Import) and pick the Prometheus data source that scrapes
the exporter.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["PANELS", "dashboard", "dashboard_json"]

_DS = {"type": "prometheus", "uid": "${datasource}"}

# (title, kind, [(expr, legend)], unit)
PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...], str], ...] = (
    ("Database reached", "stat", (("min(tsaccess_up)", "up"),), "none"),
    ("Policy drift (steps)", "stat", (("sum(tsaccess_policy_drift_steps)", "steps"),), "none"),
    (
        "Privileged roles outside the policy",
        "stat",
        (("sum(tsaccess_privileged_roles)", "roles"),),
        "none",
    ),
    ("Audit chain ok", "stat", (("min(tsaccess_audit_chain_ok)", "chain"),), "none"),
    ("Unsealed audit rows: age", "stat", (("max(tsaccess_audit_unsealed_seconds)", "age"),), "s"),
    (
        "Failed logins (1h)",
        "stat",
        (("sum(increase(tsaccess_failed_logins_total[1h]))", "failed"),),
        "none",
    ),
    (
        "Policy drift by phase and action",
        "timeseries",
        (
            ("sum by (phase, action) (tsaccess_policy_drift_steps)", "{{phase}} {{action}}"),
            ("tsaccess_policy_drift_unchecked", "not checked: {{part}}"),
        ),
        "none",
    ),
    (
        "Privileged roles",
        "timeseries",
        (
            ("tsaccess_privileged_roles", "{{attribute}}"),
            ("tsaccess_privileged_role", "{{role}} ({{attribute}})"),
        ),
        "none",
    ),
    (
        "Sessions by TLS and verification",
        "timeseries",
        (
            (
                "sum by (user, tls, verified) (tsaccess_sessions)",
                "{{user}} tls={{tls}} {{verified}}",
            ),
        ),
        "none",
    ),
    (
        "Writes and audit rows per second",
        "timeseries",
        (
            ("sum by (table) (rate(tsaccess_table_writes_total[5m]))", "writes {{table}}"),
            (
                "sum by (table, operation) (rate(tsaccess_audit_rows_total[5m]))",
                "audit {{table}} {{operation}}",
            ),
        ),
        "ops",
    ),
    (
        "Refused statements (DENIED) per user",
        "timeseries",
        (
            ("sum by (user) (increase(tsaccess_denied_total[5m]))", "{{user}}"),
            (
                "sum by (user) (increase(tsaccess_denied_unrecorded_seconds_total[5m]))",
                "{{user}}: seconds over the rate bound",
            ),
        ),
        "none",
    ),
    (
        "Chunks dropped",
        "timeseries",
        (
            ("tsaccess_hypertable_chunks_dropped_by_retention_total", "{{table}} by retention"),
            (
                "tsaccess_hypertable_chunks_dropped_outside_retention_total",
                "{{table}} outside retention (recorded={{recorded}})",
            ),
        ),
        "none",
    ),
    (
        "Audit chain",
        "timeseries",
        (
            ("tsaccess_audit_chain_blocks", "blocks"),
            ("time() - tsaccess_audit_last_seal_timestamp_seconds", "seconds since the last seal"),
            ("tsaccess_audit_unsealed_seconds", "oldest unsealed row (s)"),
        ),
        "none",
    ),
    (
        "Failed logins per user",
        "timeseries",
        (("sum by (user) (increase(tsaccess_failed_logins_total[5m]))", "{{user}}"),),
        "none",
    ),
    (
        "Exporter",
        "timeseries",
        (
            ("tsaccess_collect_duration_seconds", "collection (s)"),
            ("time() - tsaccess_collect_timestamp_seconds", "age of the reading (s)"),
            ("tsaccess_collect_ok", "{{part}} ok"),
        ),
        "s",
    ),
)


def _panel(i: int, title: str, kind: str, targets: Any, unit: str, y: int, x: int) -> Any:
    width, height = (4, 4) if kind == "stat" else (12, 8)
    return {
        "id": i + 1,
        "type": kind,
        "title": title,
        "datasource": _DS,
        "gridPos": {"h": height, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + j), "datasource": _DS, "expr": e, "legendFormat": legend}
            for j, (e, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    """The dashboard as a dict (Grafana's JSON model)."""
    stats = [p for p in PANELS if p[1] == "stat"]
    graphs = [p for p in PANELS if p[1] != "stat"]
    top = 4 * -(-len(stats) // 6)  # rows of six stats, 4 high
    panels = [_panel(i, *p, y=4 * (i // 6), x=4 * (i % 6)) for i, p in enumerate(stats)] + [
        _panel(len(stats) + j, *p, y=top + 8 * (j // 2), x=12 * (j % 2))
        for j, p in enumerate(graphs)
    ]
    return {
        "title": "tsaccess security",
        "uid": "tsaccess-security",
        "tags": ["tsaccess", "security", "postgresql"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": panels,
    }


def dashboard_json() -> str:
    """The dashboard as JSON text (what the example file holds)."""
    return json.dumps(dashboard(), indent=2) + "\n"
