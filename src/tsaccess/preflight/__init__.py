"""Pre-flight privilege checks: know before sending — never refuse what the server would allow.

A statement text is split into its statements, each is read (sqlglot for queries, its tokens for
commands) and what it needs is worked out (:func:`analyze`, cached per statement shape); the
needs are compared with a snapshot of the session's effective privileges (``has_*_privilege``
& co., which handle inheritance, PUBLIC and predefined roles). A refusal is confirmed by the
server before it is reported — the privileges live, then ``EXPLAIN`` of the statement (the
same permission checks, nothing executed) or, for a command ``EXPLAIN`` cannot take, its first
check — in a transaction of its own that is rolled back; when the server would run it, the
statement is sent and the disagreement counted (:attr:`Checker.disagreements`) and logged.

Whenever the analysis is not sure it *defers*: the statement is sent and marked ``deferred``
with the reason; the server stays the enforcer. It never answers "allowed" for what it does not
model (a function body running with the caller's rights, a check made only if a row needs it).

Rooms: :mod:`~tsaccess.preflight.analysis` (queries -> needs; the only sqlglot importer, loaded
on first use), :mod:`~tsaccess.preflight.utility` and :mod:`~tsaccess.preflight.ddl` (commands
read from their tokens), :mod:`~tsaccess.preflight.lexer` (statements and tokens as the server
reads them), :mod:`~tsaccess.preflight.scan` and :mod:`~tsaccess.preflight.writes` (the token
scan: new query shapes proven allowed without parsing), :mod:`~tsaccess.preflight.text` (cache
keys with constants normalised, ``EXPLAIN``, ``U&"..."`` names), :mod:`~tsaccess.preflight.model`
(the needs), :mod:`~tsaccess.preflight.snapshot` and :mod:`~tsaccess.preflight.lookups` (the
privileges, loaded once or when needed), :mod:`~tsaccess.preflight.tables` and
:mod:`~tsaccess.preflight.evaluate` (needs against privileges), :mod:`~tsaccess.preflight.verdict`
(the answer), :mod:`~tsaccess.preflight.checker`
(verdicts, confirmation, caches; a generator of requests), :mod:`~tsaccess.preflight.drive` (its
I/O on a synchronous connection), :mod:`~tsaccess.preflight.connection` (the psycopg connection
and its cursors), :mod:`~tsaccess.preflight.access` (``my_access``: what may I read and write?).
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
from tsaccess.preflight.model import ALL, Analysis, ColNeed, Need, ObjNeed, Statement, TableRef
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
    "ObjNeed",
    "PreflightConnection",
    "PreflightCursor",
    "PreflightServerCursor",
    "Snapshot",
    "Statement",
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
