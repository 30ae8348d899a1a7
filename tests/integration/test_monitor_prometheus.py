"""A real Prometheus (the Debian package: /usr/bin/prometheus) scrapes ``tsaccess monitor`` with
the generated alerting rules; a grant made by hand outside the policy must raise the drift alert
through Prometheus's own HTTP API.

Nothing is installed here: CI's ``.ci/run`` installs Prometheus. Without it the test is skipped,
or fails when ``TSACCESS_REQUIRE_TIMESCALEDB=1`` (CI).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fix_server import skip_or_fail
from tsaccess.ephemeral.base import free_port
from tsaccess.monitor import Exporter, rules_yaml

pytestmark = pytest.mark.timescaledb

PROMETHEUS = "/usr/bin/prometheus"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - http://127.0.0.1 only
        return json.loads(r.read().decode())


def _until(probe: Callable[[], Any], what: str, timeout: float = 45) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as exc:  # not listening yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def prometheus_bin() -> str:
    if not Path(PROMETHEUS).exists():
        skip_or_fail(
            f"{PROMETHEUS} is missing: apt-get install prometheus (.ci/run does)",
            "TSACCESS_REQUIRE_TIMESCALEDB",
        )
    return PROMETHEUS


@pytest.fixture
def exporter(monitored) -> Iterator[str]:
    """The exporter of the monitoring user, collecting every 0.5 s; yields host:port."""
    monitor = monitored.monitor()
    exp = Exporter(monitor, 0.5)
    host, port = exp.listen("127.0.0.1", 0)
    worker = threading.Thread(target=exp.run, daemon=True)
    worker.start()
    try:
        yield f"{host}:{port}"
    finally:
        exp.stop()
        worker.join(timeout=30)
        monitor.close()


@pytest.fixture
def prometheus(prometheus_bin: str, exporter: str, tmp_path: Path) -> Iterator[str]:
    """Prometheus on loopback scraping the exporter every second, the rules' for: 2s."""
    (tmp_path / "rules.yml").write_text(rules_yaml(job="tsaccess", duration="2s"))
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files:\n  - rules.yml\n"
        "scrape_configs:\n  - job_name: tsaccess\n"
        f"    static_configs:\n      - targets: ['{exporter}']\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: proc.poll() is None and _get(f"{base}/api/v1/status/buildinfo"), "ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if proc.returncode not in (0, -15):
            print((tmp_path / "prometheus.log").read_text()[-3000:])
        shutil.rmtree(tmp_path / "data", ignore_errors=True)


def _alerts(base: str, name: str) -> list[dict[str, Any]]:
    data = _get(f"{base}/api/v1/alerts")["data"]["alerts"]
    return [a for a in data if a["labels"]["alertname"] == name]


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"query": expr})
    result: list[dict[str, Any]] = _get(f"{base}/api/v1/query?{q}")["data"]["result"]
    return result


def test_prometheus_fires_the_drift_alert(monitored, prometheus):
    # Prometheus scraped the exporter, which reached the database: no drift, no alert
    up = _until(lambda: _query(prometheus, "tsaccess_up == 1"), "tsaccess_up in Prometheus")
    assert up[0]["metric"]["job"] == "tsaccess"
    assert _query(prometheus, "sum(tsaccess_policy_drift_steps)")[0]["value"][1] == "0"
    assert not _alerts(prometheus, "TsaccessPolicyDrift")
    with monitored.admin(autocommit=True) as admin:
        admin.execute("GRANT SELECT ON financial_metrics TO alice")  # outside the policy
    try:
        pending = _until(lambda: _alerts(prometheus, "TsaccessPolicyDrift"), "the drift alert")
        assert pending[0]["state"] in ("pending", "firing")
        assert pending[0]["labels"]["severity"] == "critical"
        firing = _until(
            lambda: [
                a for a in _alerts(prometheus, "TsaccessPolicyDrift") if a["state"] == "firing"
            ],
            "the drift alert firing",
        )
        assert float(firing[0]["value"]) >= 1
    finally:
        with monitored.admin(autocommit=True) as admin:
            admin.execute("REVOKE SELECT ON financial_metrics FROM alice")
