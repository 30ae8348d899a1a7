"""The CI switches that turn TimescaleDB/Docker skips into failures."""

from __future__ import annotations

import pytest

from tests.fix_server import skip_or_fail


@pytest.mark.parametrize("var", ["TSACCESS_REQUIRE_TIMESCALEDB", "TSACCESS_REQUIRE_DOCKER"])
def test_required_means_failure_not_skip(monkeypatch, var):
    monkeypatch.setenv(var, "1")
    with pytest.raises(pytest.fail.Exception, match=f"no server.*{var} is set"):
        skip_or_fail("no server", var)


@pytest.mark.parametrize("value", [None, "", "0"])
def test_not_required_means_skip_with_the_reason(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("TSACCESS_REQUIRE_TIMESCALEDB", raising=False)
    else:
        monkeypatch.setenv("TSACCESS_REQUIRE_TIMESCALEDB", value)
    with pytest.raises(pytest.skip.Exception, match="no server"):
        skip_or_fail("no server", "TSACCESS_REQUIRE_TIMESCALEDB")
