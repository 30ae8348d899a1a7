"""The audit trail: install it (as plan steps), tag sessions, record DENIED events, read it.

Rooms: :mod:`~tsaccess.audit.templates` (the SQL it creates), :mod:`~tsaccess.audit.ddl` (plan
steps, used by :mod:`tsaccess.bootstrap`), :mod:`~tsaccess.audit.install` (the audit phase
alone), :mod:`~tsaccess.audit.runtime` (:func:`set_actor`, :func:`record_denied`),
:mod:`~tsaccess.audit.reports` (:func:`recent`, :func:`history`, :func:`changes`,
:func:`summary`, :func:`activity`). :func:`active_sessions` and :func:`roles` live in
:mod:`tsaccess.monitoring` and are re-exported here for compatibility.
"""

from __future__ import annotations

from tsaccess._results import Results
from tsaccess.audit.install import install
from tsaccess.audit.reports import (
    ActivityBucket,
    AuditEvent,
    RowChange,
    SummaryRow,
    activity,
    changes,
    history,
    recent,
    summary,
)
from tsaccess.audit.runtime import record_denied, set_actor
from tsaccess.monitoring import RoleRow, SessionRow, active_sessions, roles

__all__ = [
    "ActivityBucket",
    "AuditEvent",
    "Results",
    "RoleRow",
    "RowChange",
    "SessionRow",
    "SummaryRow",
    "active_sessions",
    "activity",
    "changes",
    "history",
    "install",
    "recent",
    "record_denied",
    "roles",
    "set_actor",
    "summary",
]
