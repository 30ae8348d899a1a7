"""Pre-flight privilege checks: know before sending — never refuse what the server would allow.

A statement is parsed (postgres dialect), the privileges it needs are worked out
(:func:`analyze`, cached per statement text), and compared with a snapshot of the session's
effective privileges (``has_table_privilege`` & co., which handle inheritance, PUBLIC and
predefined roles). A denial is confirmed with one live ``has_*_privilege`` query before it is
reported, so a stale snapshot never causes a false refusal.

Whenever the analysis is not sure it *defers*: the statement is allowed and marked
``deferred`` with the reason; the server stays the enforcer. Deferred: parse errors, statements
outside the allow-list (SELECT, set operations, INSERT, UPDATE, DELETE, TRUNCATE, COPY, MERGE
and EXPLAIN of them), what function bodies, views' base tables, RLS policies and triggers do,
unresolved names (temporary tables), ``pg_catalog`` objects, texts too long to analyse quickly,
strings whose ``set_config`` may change the role of later statements.

Rooms: :mod:`~tsaccess.preflight.analysis` (statement -> needs; the only sqlglot importer,
loaded on first use), :mod:`~tsaccess.preflight.scan` (the token scan: new read-only query
shapes proven allowed without parsing), :mod:`~tsaccess.preflight.text` (cache keys with constants normalised,
``EXPLAIN``, ``U&"..."`` names), :mod:`~tsaccess.preflight.access` (``my_access``: what may I
read and write?), :mod:`~tsaccess.preflight.model` (the needs), :mod:`~tsaccess.preflight.snapshot`
(the session's privileges), :mod:`~tsaccess.preflight.checker` (verdicts and caches),
:mod:`~tsaccess.preflight.connection` (the psycopg connection and cursor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tsaccess.preflight.access import AccessReport, TableAccess, my_access
from tsaccess.preflight.checker import Checker, Verdict
from tsaccess.preflight.connection import (
    PreflightConnection,
    PreflightCursor,
    PreflightServerCursor,
    check,
)
from tsaccess.preflight.model import ALL, Analysis, ColNeed, Need, TableRef
from tsaccess.preflight.snapshot import Snapshot, take_snapshot

if TYPE_CHECKING:
    from tsaccess.preflight.analysis import analyze

__all__ = [
    "ALL",
    "AccessReport",
    "Analysis",
    "Checker",
    "ColNeed",
    "Need",
    "PreflightConnection",
    "PreflightCursor",
    "PreflightServerCursor",
    "Snapshot",
    "TableAccess",
    "TableRef",
    "Verdict",
    "analyze",
    "check",
    "my_access",
    "take_snapshot",
]


def __getattr__(name: str) -> Any:
    # the analysis (and sqlglot, ~0.1 s to import) loads when first needed, not with tsaccess
    if name == "analyze":
        from tsaccess.preflight.analysis import analyze

        return analyze
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
