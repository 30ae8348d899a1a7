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

A check that needs the server (catalog reads, a refusal's confirmation) holds the connection's
lock meanwhile — reentrant for the thread (or task) holding it — so no other thread uses the
session between those statements. :class:`PreflightState` and the module's functions are what
the asynchronous connection (:mod:`tsaccess.preflight.aio`) shares.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg._cursor_base
from psycopg import sql
from psycopg._connection_base import BaseConnection
from psycopg._queries import PostgresClientQuery, PostgresRawQuery
from psycopg.adapt import AdaptersMap
from psycopg.rows import tuple_row

from tsaccess._log import get_logger
from tsaccess.client.connection import TsConnection, TsCursor, TsServerCursor, plug_preflight
from tsaccess.errors import PreflightDenied, TsaccessError
from tsaccess.preflight.checker import Checker, Verdict
from tsaccess.preflight.drive import INTERNAL, Binding, drive
from tsaccess.preflight.lexer import split
from tsaccess.preflight.utility import analyze_command

__all__ = [
    "PreflightConnection",
    "PreflightCursor",
    "PreflightServerCursor",
    "PreflightState",
    "after_statement",
    "binding_of",
    "check",
    "checked_class",
    "refusal",
    "server_refused",
    "statement_text",
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


def statement_text(conn: BaseConnection[Any], query: Any) -> str:
    """The text pre-flight checks for ``query`` (a ``str``, ``bytes`` or ``sql.Composable``)."""
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


def binding_of(cls: type[Any]) -> Binding:
    """How the cursor class ``cls`` binds parameters (the probe binds them the same way)."""
    q = getattr(cls, "_query_cls", None)
    if q is not None and issubclass(q, PostgresClientQuery):
        return "client"
    if q is not None and issubclass(q, PostgresRawQuery):
        return "raw"
    return "server"


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
    privilege snapshot; ``PREPARE`` / ``DEALLOCATE`` are followed."""
    if text is None or not isinstance(conn, PreflightState):
        return
    if _INVALIDATES.match(text) or _SET_CONFIG.search(text):
        conn.preflight.invalidate()
        conn.preflight.session_changed = True
    if _PREPARES.search(text):
        conn.note_prepared(text)


def server_refused(conn: Any) -> None:
    """The server refused what pre-flight allowed: the snapshot is stale."""
    if isinstance(conn, PreflightState):
        conn.preflight.invalidate()


class _Checks:
    """What every pre-flight cursor does: check a statement, refuse it, refresh after it."""

    __slots__ = ()
    connection: Any
    _preflight_binding: Binding = "server"

    def _preflight(self, query: Any, params: Any, has_params: bool | None = None) -> str | None:
        conn = self.connection
        if not (isinstance(conn, PreflightConnection) and conn.preflight_enabled):
            return None
        text = statement_text(conn, query)
        has_params = params is not None if has_params is None else has_params
        verdict = conn.preflight_verdict(text, has_params, params, self._preflight_binding)
        if verdict.status == "denied":
            error, reason, tables = refusal(conn, text, verdict)
            if conn.on_denied is not None:
                conn.on_denied(text, verdict)
            elif conn.record_denied:
                conn.record_refusal(text, reason, tables)
            raise error
        return text

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = self._preflight(query, params)
        try:
            result = super().execute(query, params, **kwargs)  # type: ignore[misc]
        except psycopg.errors.InsufficientPrivilege:
            server_refused(self.connection)
            raise
        after_statement(self.connection, text)
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
            server_refused(self.connection)
            raise
        after_statement(self.connection, text)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        self._preflight(statement, params)
        return super().copy(statement, params, **kwargs)  # type: ignore[misc]

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        self._preflight(query, params)
        result: Iterator[Any] = super().stream(query, params, **kwargs)  # type: ignore[misc]
        return result


_CHECKED: dict[type[Any], type[Any]] = {}


def checked_class(
    cls: type[Any], mixin: type[Any] = _Checks, cache: dict[type[Any], type[Any]] = _CHECKED
) -> type[Any]:
    """A subclass of the cursor class ``cls`` that checks every statement (``cls`` itself if it
    already does). It binds parameters as ``cls`` does; the probe confirming a refusal too.
    (``mixin`` and ``cache``: the asynchronous cursors' own.)"""
    if issubclass(cls, mixin):
        return cls
    found = cache.get(cls)
    if found is None:
        found = type(
            f"Preflight{cls.__name__}",
            (mixin, cls),
            {
                "__slots__": (),
                "__module__": mixin.__module__,
                "_preflight_binding": binding_of(cls),
            },
        )
        cache[cls] = found
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


class PreflightState(BaseConnection[Any]):
    """The pre-flight state of a connection, sync or async: the checker, the checked cursor
    classes, and what happens to refusals. :class:`PreflightConnection` and
    :class:`~tsaccess.preflight.aio.AsyncPreflightConnection` share it."""

    role: str | None
    preflight: Checker
    """This connection's checker (caches, snapshot, :attr:`~Checker.disagreements`)."""
    preflight_enabled: bool = False
    """Statements are checked (``preflight=True`` was asked for)."""
    on_denied: Callable[[str, Verdict], object] | None = None
    """Called with the statement and the verdict before :class:`~tsaccess.PreflightDenied` is
    raised (instead of the default recording); on an async connection it may be a coroutine
    function."""
    record_denied: bool = True
    """With no ``on_denied``: record each refusal as a ``DENIED`` audit event naming the refused
    tables (:meth:`~tsaccess.TsConnection.record_refusal`), when the database has the audit
    trail. Opt out with ``conn.record_denied = False`` (a pool restores the class default on
    return), or for every connection with ``PreflightConnection.record_denied = False``."""

    _preflight_asked: bool = False
    _cursor_class: type[Any]
    _server_cursor_class: type[Any]

    def _checking(self, cls: type[Any]) -> type[Any]:
        """The checking subclass of the cursor class ``cls`` (sync or async)."""
        raise NotImplementedError

    @property
    def cursor_factory(self) -> type[Any]:
        """The cursor class of ``conn.cursor()``: a checking subclass of the class set."""
        return self._cursor_class

    @cursor_factory.setter
    def cursor_factory(self, cls: type[Any]) -> None:
        self._cursor_class = self._checking(cls)

    @property
    def server_cursor_factory(self) -> type[Any]:
        """The class of ``conn.cursor(name=...)``: a checking subclass of the class set."""
        return self._server_cursor_class

    @server_cursor_factory.setter
    def server_cursor_factory(self, cls: type[Any]) -> None:
        self._server_cursor_class = self._checking(cls)

    @property
    def adapters(self) -> AdaptersMap:
        # a cursor built directly on the connection (psycopg.ClientCursor(conn)) reads the
        # adapters while it is created: it becomes its checking subclass there
        frame = sys._getframe(1)
        if frame.f_code is _CURSOR_INIT and not INTERNAL.get():
            cur = frame.f_locals.get("self")
            if (
                cur is not None
                and cur.__class__ is not self._checking(type(cur))
                and not _constructed_by_tsaccess(frame.f_back)
            ):
                cur.__class__ = self._checking(type(cur))
        return super().adapters

    @property
    def preflight_disagreements(self) -> int:
        """Refusals the analysis predicted that the server's ``EXPLAIN`` did not confirm."""
        return self.preflight.disagreements

    def _start_preflight(self, preflight: bool) -> None:
        self._preflight_asked = preflight
        self.preflight_enabled = preflight
        self.preflight = Checker(self)

    def _reset_preflight(self) -> None:
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


class PreflightConnection(PreflightState, TsConnection):
    """A :class:`~tsaccess.client.connection.TsConnection` whose cursors pre-flight every statement.

    Created by ``tsaccess.connect(..., preflight=True)`` / ``create_pool(..., preflight=True)``.
    ``conn.preflight`` is the :class:`~tsaccess.preflight.Checker`. Each refusal is recorded as
    a ``DENIED`` audit event by default (``record_denied``); set ``conn.on_denied`` to a
    callable ``(statement, verdict)`` to act on refusals yourself. A pool forgets both when the
    connection is handed back.
    """

    def __init__(self, pgconn: Any, row_factory: Any = tuple_row) -> None:
        super().__init__(pgconn, row_factory)
        self.lock = threading.RLock()  # type: ignore[assignment]  # held across a check

    def _checking(self, cls: type[Any]) -> type[Any]:
        return checked_class(cls)

    def preflight_verdict(
        self, text: str, has_params: bool, params: Any = None, binding: Binding = "server"
    ) -> Verdict:
        """The verdict for ``text`` about to be sent (with ``params``, bound as ``binding``
        binds them): :meth:`Checker.quick`, else the checker's steps driven on this session,
        holding its lock (no other thread uses the session between their statements)."""
        checker = self.preflight
        verdict = checker.quick(text, has_params)
        if verdict is None:
            with self.lock:
                steps = checker.steps(text, has_params, params is not None)
                verdict = drive(self, steps, params, binding)
        return verdict

    def after_connect(self, *, preflight: bool) -> None:
        self._start_preflight(preflight)

    def after_reset(self) -> None:
        self._reset_preflight()


plug_preflight(PreflightConnection)


def check(conn: psycopg.Connection[Any], statement: str) -> Verdict:
    """Pre-flight ``statement`` on ``conn`` (as its session's user and role) without running it.

    Returns:
        the verdict; a :class:`PreflightConnection` uses (and fills) its own caches, any other
        connection a fresh :class:`~tsaccess.preflight.Checker`.
    """
    if isinstance(conn, PreflightConnection):
        return conn.preflight_verdict(statement, False)
    return Checker(conn).check(statement)
