"""The pre-flight connection: a :class:`~tsaccess.client.connection.TsConnection` whose cursors check
every statement before sending it.

``tsaccess.connect(..., preflight=True)`` and ``create_pool(..., preflight=True)`` create a
:class:`PreflightConnection` (this module plugs it into :mod:`tsaccess.client.connection` when
imported). A denied statement raises :class:`~tsaccess.PreflightDenied` and is never sent;
everything else is sent unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg._connection_base import BaseConnection

from tsaccess._log import get_logger
from tsaccess.client.connection import TsConnection, TsCursor, TsServerCursor, plug_preflight
from tsaccess.errors import PreflightDenied
from tsaccess.preflight.checker import Checker, Verdict

__all__ = [
    "PreflightConnection",
    "PreflightCursor",
    "PreflightServerCursor",
    "PreflightState",
    "after_statement",
    "check",
    "checked_text",
    "refusal",
    "server_refused",
]

log = get_logger("tsaccess.preflight")

_INVALIDATES = re.compile(
    r"^\s*(set|reset|grant|revoke|create|alter|drop|comment|security|discard|import|"
    r"reassign|refresh)\b",
    re.IGNORECASE,
)
_SET_CONFIG = re.compile(r"set_config", re.IGNORECASE)  # may change role or search_path


def _text(conn: BaseConnection[Any], query: Any) -> str | None:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode(conn.info.encoding, errors="replace")
    if isinstance(query, sql.Composable):
        return query.as_string(conn)
    return None


def refusal(
    conn: PreflightState, text: str, verdict: Verdict
) -> tuple[PreflightDenied, str, list[str]]:
    """Log a denied statement; return its error, and the reason and tables of its ``DENIED``
    audit event (the sync and async cursors then call ``on_denied`` or record it)."""
    user = conn.info.user
    log.warning(
        "preflight denied",
        db_user=user,
        role=conn.role,
        missing=[str(m) for m in verdict.missing],
    )
    reason = "pre-flight: missing " + "; ".join(str(m) for m in verdict.missing)
    tables = sorted({m.object for m in verdict.missing})
    return PreflightDenied(text, verdict.missing, user=user, role=conn.role), reason, tables


def after_statement(conn: Any, text: str | None) -> None:
    """After a statement ran: one that may change role, privileges or settings refreshes the
    privilege snapshot."""
    if (
        text is not None
        and (_INVALIDATES.match(text) or _SET_CONFIG.search(text))
        and isinstance(conn, PreflightState)
    ):
        conn.preflight.invalidate()
        conn.preflight.session_changed = True


def server_refused(conn: Any) -> None:
    """The server refused what pre-flight allowed: the snapshot is stale."""
    if isinstance(conn, PreflightState):
        conn.preflight.invalidate()


def checked_text(conn: Any, query: Any) -> tuple[PreflightState, str] | None:
    """The connection and the query's text when the statement must be checked."""
    if not (isinstance(conn, PreflightState) and conn.preflight_enabled):
        return None
    text = _text(conn, query)
    return None if text is None else (conn, text)


class _Checks:
    """What both pre-flight cursors do: check a statement, refuse it, refresh after it."""

    connection: Any

    def _preflight(self, query: Any, has_params: bool) -> str | None:
        checked = checked_text(self.connection, query)
        if checked is None:
            return None
        conn, text = checked
        verdict = conn.preflight.check(text, has_params=has_params)
        if verdict.status == "denied":
            error, reason, tables = refusal(conn, text, verdict)
            if conn.on_denied is not None:
                conn.on_denied(text, verdict)
            elif conn.record_denied and isinstance(conn, TsConnection):
                conn.record_refusal(text, reason, tables)
            raise error
        return text

    def _after(self, text: str | None) -> None:
        after_statement(self.connection, text)

    def _refused(self) -> None:
        server_refused(self.connection)


class PreflightCursor(_Checks, TsCursor):
    """A cursor that checks every statement before sending it (see :class:`PreflightConnection`)."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = self._preflight(query, params is not None)
        try:
            result = super().execute(query, params, **kwargs)
        except psycopg.errors.InsufficientPrivilege:
            self._refused()
            raise
        self._after(text)
        return result

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        self._preflight(query, True)
        super().executemany(query, params_seq, **kwargs)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        self._preflight(statement, params is not None)
        return super().copy(statement, params, **kwargs)

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        self._preflight(query, params is not None)
        return super().stream(query, params, **kwargs)


class PreflightServerCursor(_Checks, TsServerCursor):
    """A named (server-side) cursor, ``conn.cursor(name=...)``, checked like
    :class:`PreflightCursor`: its ``DECLARE`` is never sent for a refused statement."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self._preflight(query, params is not None)
        try:
            return super().execute(query, params, **kwargs)
        except psycopg.errors.InsufficientPrivilege:
            self._refused()
            raise

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        self._preflight(query, True)
        super().executemany(query, params_seq, **kwargs)


class PreflightState(BaseConnection[Any]):
    """The pre-flight state of a connection, sync or async: the checker, and what happens to
    refusals. :class:`PreflightConnection` and
    :class:`~tsaccess.preflight.aio.AsyncPreflightConnection` share it."""

    role: str | None
    preflight: Checker
    """This connection's checker (caches, snapshot)."""
    preflight_enabled: bool = False
    """Statements are checked (``preflight=True`` was asked for)."""
    on_denied: Callable[[str, Verdict], object] | None = None
    """Called with the statement and the verdict before :class:`~tsaccess.PreflightDenied` is
    raised (instead of the default recording)."""
    record_denied: bool = True
    """With no ``on_denied``: record each refusal as a ``DENIED`` audit event naming the refused
    tables (:meth:`~tsaccess.TsConnection.record_refusal`), when the database has the audit
    trail. Opt out with ``conn.record_denied = False`` (a pool restores the class default on
    return), or for every connection with ``PreflightConnection.record_denied = False``."""

    _preflight_asked: bool = False

    def _start_preflight(self, checker_conn: psycopg.Connection[Any], preflight: bool) -> None:
        self._preflight_asked = preflight
        self.preflight_enabled = preflight
        self.preflight = Checker(checker_conn)

    def _reset_preflight(self) -> None:
        # the pool reset restores role and settings: the snapshot stays valid unless the
        # borrower changed them (then it was taken for another role or search_path)
        if self.preflight.session_changed:
            self.preflight.invalidate()
            self.preflight.session_changed = False
        self.on_denied = None
        self.preflight_enabled = self._preflight_asked
        self.__dict__.pop("record_denied", None)  # back to the class default


class PreflightConnection(PreflightState, TsConnection):
    """A :class:`~tsaccess.client.connection.TsConnection` whose cursors pre-flight every statement.

    Created by ``tsaccess.connect(..., preflight=True)`` / ``create_pool(..., preflight=True)``.
    ``conn.preflight`` is the :class:`~tsaccess.preflight.Checker`. Each refusal is recorded as
    a ``DENIED`` audit event by default (``record_denied``); set ``conn.on_denied`` to a
    callable ``(statement, verdict)`` to act on refusals yourself. A pool forgets both when the
    connection is handed back.
    """

    def after_connect(self, *, preflight: bool) -> None:
        self._start_preflight(self, preflight)
        self.cursor_factory = PreflightCursor
        self.server_cursor_factory = PreflightServerCursor

    def after_reset(self) -> None:
        self._reset_preflight()


plug_preflight(PreflightConnection)


def check(conn: psycopg.Connection[Any], statement: str) -> Verdict:
    """Pre-flight ``statement`` on ``conn`` (as its session's user and role) without running it.

    Returns:
        the verdict; a :class:`PreflightConnection` uses (and fills) its own caches, any other
        connection a fresh :class:`~tsaccess.preflight.Checker`.
    """
    checker = conn.preflight if isinstance(conn, PreflightConnection) else Checker(conn)
    return checker.check(statement)
