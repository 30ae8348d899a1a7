"""Security monitoring for Prometheus: ``tsaccess monitor`` (see ``docs/howto/monitoring.md``).

* :mod:`~tsaccess.monitor.collect`: :class:`Monitor` reads, read-only and as the policy's
  monitoring role, the drift from the policy, privileged roles, sessions and their TLS, the
  audit trail's counters, vanished chunks, the audit chain and failed logins, into a
  :class:`Reading`;
* :mod:`~tsaccess.monitor.exporter`: :class:`Exporter` serves the latest reading at
  ``/metrics`` (needs ``prometheus-client``: ``pip install 'tsaccess[monitor]'``);
* :mod:`~tsaccess.monitor.rules` and :mod:`~tsaccess.monitor.dashboard`: the alerting rules and
  the Grafana dashboard for those metrics (:mod:`~tsaccess.monitor.metrics` lists them).

Nothing here needs ``prometheus-client`` until an exporter or an exposition is made.
"""

from tsaccess.monitor.collect import Monitor, MonitorOptions, Reading
from tsaccess.monitor.dashboard import dashboard_json
from tsaccess.monitor.exporter import Exporter, exposition, require_prometheus_client
from tsaccess.monitor.metrics import METRICS, MetricSpec
from tsaccess.monitor.rules import rules_yaml

__all__ = [
    "METRICS",
    "Exporter",
    "MetricSpec",
    "Monitor",
    "MonitorOptions",
    "Reading",
    "dashboard_json",
    "exposition",
    "require_prometheus_client",
    "rules_yaml",
]
