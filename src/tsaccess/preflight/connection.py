"""The pre-flight connection: a :class:`~tsaccess.client.connection.TsConnection` whose cursors check
every statement before sending it — whatever cursor class runs it.

``tsaccess.connect(..., preflight=True)`` and ``create_pool(..., preflight=True)`` create a
:class:`PreflightConnection` (this module plugs it into :mod:`tsaccess.client.connection` when
imported). A denied statement raises :class:`~tsaccess.PreflightDenied` and is never sent;
everything else is sent unchanged.

Every cursor is checked, and keeps its behaviour: the connection's ``cursor_factory`` and
``server_cursor_factory`` hold checking subclasses of the classes they are given (a
``psycopg.ClientCursor`` still binds client-side, a ``psycopg.RawCursor`` still takes ``$1``),
and a cursor built directly on the connection (``psycopg.ClientCursor(conn)``) becomes one when
it is created. ``execute``, ``executemany`` (checked with its first parameters), ``copy``,
``stream`` and named cursors' ``DECLARE`` are checked; pipelines too. Cursors tsaccess itself
creates for its catalog queries, resets and audit events are not checked.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg._cursor_base
from psycopg import sql
from psycopg._queries import PostgresClientQuery, PostgresRawQuery
from psycopg.adapt import AdaptersMap

from tsaccess._log import get_logger
from tsaccess.client.connection import TsConnection, TsCursor, TsServerCursor, plug_preflight
from tsaccess.errors import PreflightDenied, TsaccessError
from tsaccess.preflight.checker import Checker, Verdict
from tsaccess.preflight.drive import INTERNAL, Binding
from tsaccess.preflight.lexer import split
from tsaccess.preflight.utility import analyze_command

__all__ = [
    "PreflightConnection",
    "PreflightCursor",
    "PreflightServerCursor",
    "check",
    "checked_class",
]

log = get_logger("tsaccess.preflight")

_INVALIDATES = re.compile(
    r"^\s*(set|reset|grant|revoke|create|alter|drop|comment|security|discard|import|"
    r"reassign|refresh)\b",
    re.IGNORECASE,
)
_SET_CONFIG = re.compile(r"set_config", re.IGNORECASE)  # may change role or search_path
_PREPARES = re.compile(r"(?i)prepare|deallocate|discard")
_NOTHING: Any = object()


def _text(conn: psycopg.Connection[Any], query: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes | bytearray | memoryview):
        return bytes(query).decode(conn.info.encoding, errors="replace")
    if isinstance(query, sql.Composable):
        return query.as_string(conn)
    raise TsaccessError(
        f"pre-flight cannot read a query given as {type(query).__name__}; pass a str, bytes or "
        "psycopg.sql.Composable (or connect without preflight=True)"
    )


def _binding(cls: type[Any]) -> Binding:
    q = getattr(cls, "_query_cls", None)
    if q is not None and issubclass(q, PostgresClientQuery):
        return "client"
    if q is not None and issubclass(q, PostgresRawQuery):
        return "raw"
    return "server"


class _Checks:
    """What every pre-flight cursor does: check a statement, refuse it, refresh after it."""

    __slots__ = ()
    connection: Any
    _preflight_binding: Binding = "server"

    def _checked(self) -> PreflightConnection | None:
        conn = self.connection
        if isinstance(conn, PreflightConnection) and conn.preflight_enabled:
            return conn
        return None

    def _preflight(self, query: Any, params: Any, has_params: bool | None = None) -> str | None:
        conn = self._checked()
        if conn is None:
            return None
        text = _text(conn, query)
        verdict = conn.preflight.check(
            text,
            has_params=params is not None if has_params is None else has_params,
            params=params,
            binding=self._preflight_binding,
        )
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
            elif conn.record_denied:
                conn.record_refusal(
                    text,
                    "pre-flight: missing " + "; ".join(str(m) for m in verdict.missing),
                    sorted({m.object for m in verdict.missing}),
                )
            raise PreflightDenied(text, verdict.missing, user=user, role=conn.role)
        return text

    def _after(self, text: str | None) -> None:
        conn = self.connection
        if text is None or not isinstance(conn, PreflightConnection):
            return
        if _INVALIDATES.match(text) or _SET_CONFIG.search(text):
            conn.preflight.invalidate()
            conn.preflight.session_changed = True
        if _PREPARES.search(text):
            conn.note_prepared(text)

    def _refused(self) -> None:
        conn = self.connection
        if isinstance(conn, PreflightConnection):
            conn.preflight.invalidate()  # the server refused what pre-flight allowed

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = self._preflight(query, params)
        try:
            result = super().execute(query, params, **kwargs)  # type: ignore[misc]
        except psycopg.errors.InsufficientPrivilege:
            self._refused()
            raise
        self._after(text)
        return result

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        it = iter(params_seq)
        first = next(it, _NOTHING)
        text = None
        if first is not _NOTHING:  # nothing is sent for no parameters at all
            text = self._preflight(query, first, has_params=True)
            params_seq = itertools.chain([first], it)
        try:
            super().executemany(query, params_seq, **kwargs)  # type: ignore[misc]
        except psycopg.errors.InsufficientPrivilege:
            self._refused()
            raise
        self._after(text)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        self._preflight(statement, params)
        return super().copy(statement, params, **kwargs)  # type: ignore[misc]

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        self._preflight(query, params)
        result: Iterator[Any] = super().stream(query, params, **kwargs)  # type: ignore[misc]
        return result


_CHECKED: dict[type[Any], type[Any]] = {}


def checked_class(cls: type[Any]) -> type[Any]:
    """A subclass of the cursor class ``cls`` that checks every statement (``cls`` itself if it
    already does). It binds parameters as ``cls`` does; the probe confirming a refusal too."""
    if issubclass(cls, _Checks):
        return cls
    found = _CHECKED.get(cls)
    if found is None:
        found = type(
            f"Preflight{cls.__name__}",
            (_Checks, cls),
            {"__slots__": (), "__module__": __name__, "_preflight_binding": _binding(cls)},
        )
        _CHECKED[cls] = found
    return found


class PreflightCursor(_Checks, TsCursor):
    """A cursor that checks every statement before sending it (see :class:`PreflightConnection`)."""

    __slots__ = ()


class PreflightServerCursor(_Checks, TsServerCursor):
    """A named (server-side) cursor, ``conn.cursor(name=...)``, checked like
    :class:`PreflightCursor`: its ``DECLARE`` is never sent for a refused statement."""

    __slots__ = ()


_CHECKED[TsCursor] = PreflightCursor
_CHECKED[TsServerCursor] = PreflightServerCursor
_CURSOR_INIT = psycopg._cursor_base.BaseCursor.__init__.__code__


def _constructed_by_tsaccess(frame: Any) -> bool:
    """Whether the cursor being built was asked for by tsaccess's own code (catalog queries,
    pool resets, audit events): the first caller outside psycopg is a tsaccess module."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("psycopg"):
            return bool(module.startswith("tsaccess."))
        frame = frame.f_back
    return False


class PreflightConnection(TsConnection):
    """A :class:`~tsaccess.client.connection.TsConnection` whose cursors pre-flight every statement.

    Created by ``tsaccess.connect(..., preflight=True)`` / ``create_pool(..., preflight=True)``.
    ``conn.preflight`` is the :class:`~tsaccess.preflight.Checker`. Each refusal is recorded as
    a ``DENIED`` audit event by default (``record_denied``); set ``conn.on_denied`` to a
    callable ``(statement, verdict)`` to act on refusals yourself. A pool forgets both when the
    connection is handed back.
    """

    preflight: Checker
    """This connection's checker (caches, snapshot, :attr:`~Checker.disagreements`)."""
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
    _cursor_class: type[Any] = PreflightCursor
    _server_cursor_class: type[Any] = PreflightServerCursor

    @property
    def cursor_factory(self) -> type[Any]:
        """The cursor class of ``conn.cursor()``: a checking subclass of the class set."""
        return self._cursor_class

    @cursor_factory.setter
    def cursor_factory(self, cls: type[Any]) -> None:
        self._cursor_class = checked_class(cls)

    @property
    def server_cursor_factory(self) -> type[Any]:
        """The class of ``conn.cursor(name=...)``: a checking subclass of the class set."""
        return self._server_cursor_class

    @server_cursor_factory.setter
    def server_cursor_factory(self, cls: type[Any]) -> None:
        self._server_cursor_class = checked_class(cls)

    @property
    def adapters(self) -> AdaptersMap:
        # a cursor built directly on the connection (psycopg.ClientCursor(conn)) reads the
        # adapters while it is created: it becomes its checking subclass there
        frame = sys._getframe(1)
        if frame.f_code is _CURSOR_INIT and not INTERNAL.get():
            cur = frame.f_locals.get("self")
            if (
                cur is not None
                and not isinstance(cur, _Checks)
                and not _constructed_by_tsaccess(frame.f_back)
            ):
                cur.__class__ = checked_class(type(cur))
        return super().adapters

    @property
    def preflight_disagreements(self) -> int:
        """Refusals the analysis predicted that the server's ``EXPLAIN`` did not confirm."""
        return self.preflight.disagreements

    def after_connect(self, *, preflight: bool) -> None:
        self._preflight_asked = preflight
        self.preflight_enabled = preflight
        self.preflight = Checker(self)

    def after_reset(self) -> None:
        # the pool reset restores role and settings: the snapshot stays valid unless the
        # borrower changed them (then it was taken for another role or search_path)
        if self.preflight.session_changed:
            self.preflight.invalidate()
            self.preflight.session_changed = False
        self.preflight.prepared.clear()  # the reset deallocates every prepared statement
        self.on_denied = None
        self.preflight_enabled = self._preflight_asked
        self.__dict__.pop("record_denied", None)  # back to the class default

    def note_prepared(self, text: str) -> None:
        """Follow ``PREPARE`` / ``DEALLOCATE`` / ``DISCARD ALL`` the session ran (an
        ``EXECUTE`` is checked as the statement it runs)."""
        pieces = split(text) or []
        path = self.preflight._snapshot.search_path if self.preflight._snapshot else ()
        for piece, toks in pieces:
            if not toks or toks[0].kind != "word":
                continue
            effect = analyze_command(piece, toks)[0].effect
            if effect.prepared is not None:
                self.preflight.prepared[effect.prepared[0]] = (effect.prepared[1], path)
            if effect.deallocated == "*":
                self.preflight.prepared.clear()
            elif effect.deallocated is not None:
                self.preflight.prepared.pop(effect.deallocated, None)


plug_preflight(PreflightConnection)


def check(conn: psycopg.Connection[Any], statement: str) -> Verdict:
    """Pre-flight ``statement`` on ``conn`` (as its session's user and role) without running it.

    Returns:
        the verdict; a :class:`PreflightConnection` uses (and fills) its own caches, any other
        connection a fresh :class:`~tsaccess.preflight.Checker`.
    """
    checker = conn.preflight if isinstance(conn, PreflightConnection) else Checker(conn)
    return checker.check(statement)
