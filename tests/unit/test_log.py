"""Library logging: level filtered before rendering, handed to stdlib unrendered."""

from __future__ import annotations

import logging

import pytest
import structlog
from structlog.testing import capture_logs

from tsaccess import _log


@pytest.fixture
def unconfigured():
    """structlog as an application that never configured it leaves it."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def counted(monkeypatch):
    """Count the events that reach the processors after the level filter."""
    calls: list[str] = []

    def count(logger, method_name, event_dict):
        calls.append(event_dict["event"])
        return event_dict

    monkeypatch.setattr(_log, "PROCESSORS", list(_log.PROCESSORS))
    _log.PROCESSORS.insert(1, count)
    return calls


def test_a_debug_event_is_not_rendered_at_warning(unconfigured, counted, caplog):
    caplog.set_level(logging.WARNING, logger="tsaccess.test_log")
    log = _log.get_logger("tsaccess.test_log")
    log.debug("quiet", db_user="alice")
    log.warning("loud", db_user="alice")
    assert counted == ["loud"]
    assert [r.getMessage() for r in caplog.records] == ["loud"]


def test_stdlib_gets_the_event_unrendered(unconfigured, caplog):
    caplog.set_level(logging.INFO, logger="tsaccess.test_log")
    _log.get_logger("tsaccess.test_log").info("connected", db_user="bob", role="analysts")
    (record,) = caplog.records
    assert record.getMessage() == "connected"  # no timestamp, no level, no key=value text
    assert (record.db_user, record.role) == ("bob", "analysts")
    assert record.name == "tsaccess.test_log"
    assert record.levelno == logging.INFO


def test_capture_logs_sees_library_events(caplog):
    caplog.set_level(logging.DEBUG, logger="tsaccess.test_log")
    with capture_logs() as logs:
        _log.get_logger("tsaccess.test_log").debug("connected", db_user="bob")
    assert logs == [{"event": "connected", "db_user": "bob", "log_level": "debug"}]


def test_the_library_only_adds_a_null_handler():
    handlers = logging.getLogger("tsaccess").handlers
    assert [h.__class__ for h in handlers] == [logging.NullHandler]
