"""The pre-flight connection: a :class:`~tsaccess.connection.TsConnection` whose cursors check
every statement before sending it.

``tsaccess.connect(..., preflight=True)`` and ``create_pool(..., preflight=True)`` create a
:class:`PreflightConnection` (this module plugs it into :mod:`tsaccess.connection` when
imported). A denied statement raises :class:`~tsaccess.PreflightDenied` and is never sent;
everything else is sent unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from tsaccess._log import get_logger
from tsaccess.connection import TsConnection, plug_preflight
from tsaccess.errors import PreflightDenied
from tsaccess.preflight.checker import Checker, Verdict

__all__ = ["PreflightConnection", "PreflightCursor", "check"]

log = get_logger("tsaccess.preflight")

_INVALIDATES = re.compile(
    r"^\s*(set|reset|grant|revoke|create|alter|drop|comment|security|discard|import|"
    r"reassign|refresh)\b",
    re.IGNORECASE,
)


def _text(conn: psycopg.Connection[Any], query: Any) -> str | None:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode(conn.info.encoding, errors="replace")
    if isinstance(query, sql.Composable):
        return query.as_string(conn)
    return None


class PreflightCursor(psycopg.Cursor[Any]):
    """A cursor that checks every statement before sending it (see :class:`PreflightConnection`)."""

    def _checked(self) -> PreflightConnection | None:
        conn = self.connection
        if isinstance(conn, PreflightConnection) and conn.preflight_enabled:
            return conn
        return None

    def _preflight(self, query: Any, has_params: bool) -> str | None:
        conn = self._checked()
        if conn is None:
            return None
        text = _text(conn, query)
        if text is None:
            return None
        verdict = conn.preflight.check(text, has_params=has_params)
        if verdict.status == "denied":
            user = conn.info.user
            log.warning(
                "preflight denied",
                db_user=user,
                role=conn.role,
                missing=[str(m) for m in verdict.missing],
            )
            if conn.on_denied is not None:
                conn.on_denied(text, verdict)
            raise PreflightDenied(text, verdict.missing, user=user, role=conn.role)
        return text

    def _after(self, text: str | None) -> None:
        conn = self.connection
        if text is not None and _INVALIDATES.match(text) and isinstance(conn, PreflightConnection):
            conn.preflight.invalidate()
            conn.preflight.session_changed = True

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = self._preflight(query, params is not None)
        try:
            result = super().execute(query, params, **kwargs)
        except psycopg.errors.InsufficientPrivilege:
            conn = self.connection
            if isinstance(conn, PreflightConnection):
                conn.preflight.invalidate()  # the server refused what pre-flight allowed
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


class PreflightConnection(TsConnection):
    """A :class:`~tsaccess.connection.TsConnection` whose cursors pre-flight every statement.

    Created by ``tsaccess.connect(..., preflight=True)`` / ``create_pool(..., preflight=True)``.
    ``conn.preflight`` is the :class:`~tsaccess.preflight.Checker`; set ``conn.on_denied`` to a
    callable ``(statement, verdict)`` to act on refusals (e.g. record a DENIED audit event with
    :func:`tsaccess.audit.record_denied`). A pool forgets ``on_denied`` when the connection is
    handed back.
    """

    preflight: Checker
    """This connection's checker (caches, snapshot)."""
    preflight_enabled: bool = False
    """Statements are checked (``preflight=True`` was asked for)."""
    on_denied: Callable[[str, Verdict], object] | None = None
    """Called with the statement and the verdict before :class:`~tsaccess.PreflightDenied` is
    raised."""

    _preflight_asked: bool = False

    def after_connect(self, *, preflight: bool) -> None:
        self._preflight_asked = preflight
        self.preflight_enabled = preflight
        self.preflight = Checker(self)
        self.cursor_factory = PreflightCursor

    def after_reset(self) -> None:
        # the pool reset restores role and settings: the snapshot stays valid unless the
        # borrower changed them (then it was taken for another role or search_path)
        if self.preflight.session_changed:
            self.preflight.invalidate()
            self.preflight.session_changed = False
        self.on_denied = None
        self.preflight_enabled = self._preflight_asked


plug_preflight(PreflightConnection)


def check(conn: psycopg.Connection[Any], statement: str) -> Verdict:
    """Pre-flight ``statement`` on ``conn`` (as its session's user and role) without running it.

    Returns:
        the verdict; a :class:`PreflightConnection` uses (and fills) its own caches, any other
        connection a fresh :class:`~tsaccess.preflight.Checker`.
    """
    checker = conn.preflight if isinstance(conn, PreflightConnection) else Checker(conn)
    return checker.check(statement)
