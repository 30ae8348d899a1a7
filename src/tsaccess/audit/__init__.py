"""The audit trail: install it (as plan steps), tag sessions, record DENIED events, read it.

Rooms: :mod:`~tsaccess.audit.templates` (the SQL it creates), :mod:`~tsaccess.audit.ddl` (plan
steps, used by :mod:`tsaccess.plan.build`), :mod:`~tsaccess.audit.runtime` (:func:`set_actor`, :func:`record_denied`),
:mod:`~tsaccess.audit.reports` (:func:`recent`, :func:`history`, :func:`changes`,
:func:`summary`, :func:`activity`), :mod:`~tsaccess.audit.integrity` (the tamper-evident chain:
:func:`keygen`, :func:`seal`, :func:`prove`). :func:`active_sessions` and :func:`roles` live in
:mod:`tsaccess.monitoring` and are re-exported here for compatibility.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from tsaccess.audit.integrity import (
    Break,
    Checkpoint,
    KeyPair,
    Proof,
    SealResult,
    keygen,
    prove,
    seal,
)
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
from tsaccess.client.results import Results
from tsaccess.monitoring import RoleRow, SessionRow, active_sessions, roles

__all__ = [
    "ActivityBucket",
    "AuditEvent",
    "Break",
    "Checkpoint",
    "KeyPair",
    "Proof",
    "Results",
    "RoleRow",
    "RowChange",
    "SealResult",
    "SessionRow",
    "SummaryRow",
    "active_sessions",
    "activity",
    "changes",
    "history",
    "keygen",
    "prove",
    "recent",
    "record_denied",
    "roles",
    "seal",
    "set_actor",
    "summary",
]


def __getattr__(name: str) -> Any:
    """``tsaccess.audit.install``: deprecated, use :func:`tsaccess.plan.install_audit`.

    The audit package sits below the plan (the plan's audit phase is :mod:`tsaccess.audit.ddl`),
    so it does not import :mod:`tsaccess.plan`; this old name is looked up when used, for one
    release.
    """
    if name == "install":
        warnings.warn(
            "tsaccess.audit.install is deprecated and will be removed in the next release: "
            "use tsaccess.plan.install_audit(conn, policy)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module("tsaccess.plan.compose").install_audit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
