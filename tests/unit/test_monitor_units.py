"""``tsaccess monitor`` without a server: the rules file (checked by the real promtool), the
Grafana dashboard, the metric list against the docs, the jsonlog reader, the policy's monitoring
roles, the CLI's parsing and the unverified-session mark of tsaccess clients."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.fix_server import skip_or_fail
from tsaccess.cli.main import main
from tsaccess.cli.monitor import interval_seconds, listen_address
from tsaccess.client.session import APP_NAME_MAX, UNVERIFIED_MARK, app_name
from tsaccess.errors import PolicyError
from tsaccess.monitor import METRICS, Reading, dashboard_json, exposition, rules_yaml
from tsaccess.monitor.rules import ALERTS
from tsaccess.monitor.serverlog import ServerLog, failed_login_user
from tsaccess.monitor.trail import AuditCounts
from tsaccess.policy import parse_policy

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = "/usr/bin/promtool"


@pytest.fixture
def promtool() -> str:
    if not Path(PROMTOOL).exists():
        skip_or_fail(
            f"{PROMTOOL} is missing: apt-get install prometheus (.ci/run does)",
            "TSACCESS_REQUIRE_TIMESCALEDB",
        )
    return PROMTOOL


@pytest.mark.parametrize("duration", [None, "0s", "90s"])
def test_promtool_accepts_the_rules(promtool, tmp_path, duration):
    path = tmp_path / "rules.yml"
    path.write_text(rules_yaml(duration=duration))
    res = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in res.stdout


def test_the_cli_prints_the_rules_promtool_reads_from_stdin(promtool, capsys):
    assert main(["monitor", "rules", "--for", "0s", "--job", "db-security"]) == 0
    text = capsys.readouterr().out
    assert 'up{job="db-security"} == 0' in text
    assert set(re.findall(r"for: (\S+)", text)) == {"0s"}
    res = subprocess.run(
        [promtool, "check", "rules", "/dev/stdin"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_rules_cover_the_issue_and_use_only_known_metrics():
    names = {a.name for a in ALERTS}
    for wanted in (
        "TsaccessPolicyDrift",
        "TsaccessPrivilegedRoleOutsidePolicy",
        "TsaccessAuditNotGrowing",
        "TsaccessChunksDroppedUnrecorded",
        "TsaccessDeniedBurst",
        "TsaccessFailedLoginBurst",
        "TsaccessUnverifiedSessions",
        "TsaccessExporterDown",
    ):
        assert wanted in names
    known = {m.sample_name for m in METRICS} | {"up"}
    for a in ALERTS:
        for used in re.findall(r"\b(tsaccess_\w+|up)\{?", a.expr):
            assert used in known, (a.name, used)
        assert a.duration and a.severity in ("warning", "critical")
    with pytest.raises(ValueError, match="duration"):
        rules_yaml(duration="soon")
    with pytest.raises(ValueError, match="job"):
        rules_yaml(job='x"} or vector(1)')


def test_the_dashboard_example_is_current_and_shows_every_metric():
    committed = ROOT / "examples" / "grafana" / "tsaccess-dashboard.json"
    assert committed.read_text() == dashboard_json(), (
        "examples/grafana/tsaccess-dashboard.json is stale: run "
        "`tsaccess monitor dashboard > examples/grafana/tsaccess-dashboard.json`"
    )
    data = json.loads(committed.read_text())
    exprs = " ".join(t["expr"] for p in data["panels"] for t in p["targets"])
    for m in METRICS:
        assert m.sample_name in exprs, m.name
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for p in data["panels"]:  # inside Grafana's 24-column grid, no two panels overlapping
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
    cells = Counter(
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in data["panels"]
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    )
    assert max(cells.values()) == 1


def test_the_howto_describes_every_metric_and_alert():
    page = (ROOT / "docs" / "howto" / "monitoring.md").read_text()
    for m in METRICS:
        assert f"`{m.sample_name}" in page, m.name
    for a in ALERTS:
        assert a.name in page, a.name


def test_an_exposition_has_the_help_and_the_counters_totals():
    r = Reading(up=True, parts={"audit": True}, audit=AuditCounts())
    r.audit.denied["alice"] = 3
    text = exposition(r).decode()
    assert (
        "# TYPE tsaccess_denied_total counter" in text or "# TYPE tsaccess_denied counter" in text
    )
    assert 'tsaccess_denied_total{user="alice"} 3.0' in text
    assert "tsaccess_up 1.0" in text


def _line(**entry: object) -> str:
    return json.dumps(entry)


def test_failed_logins_are_the_fatal_authentication_errors():
    assert (
        failed_login_user(_line(error_severity="FATAL", state_code="28P01", user="alice"))
        == "alice"
    )
    assert failed_login_user(_line(error_severity="FATAL", state_code="28000", user="bob")) == "bob"
    assert failed_login_user(_line(error_severity="FATAL", state_code="28P01")) == ""
    assert failed_login_user(_line(error_severity="ERROR", state_code="28P01", user="a")) is None
    assert failed_login_user(_line(error_severity="FATAL", state_code="57P01", user="a")) is None
    assert failed_login_user("not json {") is None
    assert failed_login_user("[1, 2]") is None


def test_the_log_is_read_once_line_by_line_and_after_a_truncation(tmp_path):
    log = tmp_path / "postgresql-1.json"
    fail = _line(error_severity="FATAL", state_code="28P01", user="alice") + "\n"
    log.write_text(fail * 2 + fail[:20])  # the last line is still being written
    reader = ServerLog(str(tmp_path))
    assert reader.read(None, ["alice"]) == Counter({"alice": 2})  # type: ignore[arg-type]
    with log.open("a") as f:
        f.write(fail[20:])
        f.write(_line(error_severity="FATAL", state_code="28P01", user="mallory") + "\n")
    assert reader.read(None, ["alice"]) == Counter({"alice": 3, "_unknown": 1})  # type: ignore[arg-type]
    log.write_text(fail)  # rotated and truncated: read again from its start
    assert reader.read(None, ["alice"])["alice"] == 4  # type: ignore[arg-type]


BASE = {
    "database": {"name": "db"},
    "tables": {"t": {"columns": {"time": "timestamptz not null"}, "time_column": "time"}},
    "roles": {
        "readers": {"grants": {"t": ["SELECT"]}},
        "mon": {"monitoring": True, "grants": {"activity_audit": ["SELECT"]}},
    },
    "users": {"m": {"roles": ["mon"]}, "r": {"roles": ["readers"]}},
}


def _policy(**changes: object) -> object:
    data = json.loads(json.dumps(BASE))
    for path, val in changes.items():
        *keys, last = path.split("__")
        node = data
        for k in keys:
            node = node[k]
        node[last] = val
    return parse_policy(data)


def test_a_monitoring_role_reads_the_audit_trail_only():
    p = _policy()
    assert p.role("mon").monitoring and p.audited
    for change, needle in (
        ({"roles__mon__grants": {"activity_audit": ["SELECT"], "t": ["SELECT"]}}, "not 't'"),
        ({"roles__mon__grants": {}}, "exactly SELECT on the audit table"),
        ({"roles__mon__roles": ["readers"]}, "takes no roles"),
        ({"users__m__roles": ["mon", "readers"]}, "must not read data tables"),
        ({"roles__readers__roles": ["mon"]}, "cannot be a member of the monitoring role"),
        ({"roles__mon__monitoring": "yes"}, "true or false"),
    ):
        with pytest.raises(PolicyError, match=needle):
            _policy(**change)


def test_the_generated_policy_keeps_the_monitoring_flag():
    from tsaccess.policy.writing import dump_policy

    text = dump_policy(_policy())
    assert "monitoring = true" in text
    import tomllib

    assert parse_policy(tomllib.loads(text)).role("mon").monitoring


def test_cli_parsing_of_interval_and_listen():
    assert interval_seconds("15s") == 15 and interval_seconds("1m") == 60
    assert interval_seconds("250ms") == 0.25
    assert listen_address("127.0.0.1:9187") == ("127.0.0.1", 9187)
    assert listen_address("[::1]:0") == ("::1", 0)
    assert listen_address(":9187") == ("0.0.0.0", 9187)  # noqa: S104 - asked for
    for bad in ("15", "0s", "-1s", "soon"):
        with pytest.raises(Exception, match=r"e\.g\. 15s"):
            interval_seconds(bad)
    for bad in ("9187", "host:", "h:99999"):
        with pytest.raises(Exception, match="HOST:PORT"):
            listen_address(bad)


def test_serve_without_a_policy_is_a_usage_error(capsys):
    assert main(["monitor", "once"]) == 2
    assert "needs --policy" in capsys.readouterr().err


def test_an_unverified_client_says_so_in_its_application_name():
    assert app_name(None, "alice", "analysts") == "tsaccess:alice/analysts"
    marked = app_name(None, "alice", "analysts", unverified=True)
    assert marked == "tsaccess:alice/analysts" + UNVERIFIED_MARK
    long = app_name("x" * 80, "alice", None, unverified=True)
    assert long.endswith(UNVERIFIED_MARK) and len(long.encode()) <= APP_NAME_MAX


def test_without_the_extra_serve_names_it_and_the_demo_skips(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    assert main(["monitor", "--policy", str(ROOT / "examples" / "company.toml")]) == 1
    err = capsys.readouterr().err
    assert "prometheus-client" in err and "pip install 'tsaccess[monitor]'" in err
    from tsaccess.demo.journey import company_policy
    from tsaccess.demo.monitoring import monitoring_chapter

    lines: list[str] = []
    monitoring_chapter(7, lambda user: {}, company_policy(), lambda *a: None, lines.append)
    assert any("skipped" in x and "tsaccess[monitor]" in x for x in lines), lines
