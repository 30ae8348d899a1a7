"""What a pool's reset puts back between two borrowers of one connection.

Server side, one batch (one round trip): ``DEALLOCATE ALL`` (every prepared statement, psycopg's
``_pg3_*`` included: a borrower can replace one of them with a statement of its own),
``RESET ROLE``, ``RESET ALL``, temporary objects, sequences state, listeners, cursors, then the
pool's role again and one ``SELECT`` (advisory locks, ``application_name``, custom settings).
Client side: psycopg's prepared-statement cache is emptied *before* the batch (so it agrees
with ``DEALLOCATE ALL`` without a second round trip), and the connection's Python state
(:class:`ClientState`: row and cursor factories, adapters, notice and notify handlers, prepare
settings) is put back as the pool configured it.

A custom setting (``SET myapp.x = 'y'``) leaves a placeholder that no SQL can list (PostgreSQL
hides placeholders from ``pg_settings``) and that ``RESET ALL`` turns into ``''`` instead of
removing: for the names the pool is told about (``custom_settings``), the batch reports which
exist, and a connection with one the borrower created is discarded (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg._connection_base import BaseConnection
from psycopg._preparing import PrepareManager
from psycopg.adapt import AdaptersMap
from psycopg.rows import tuple_row

from tsaccess.client.sqltokens import significant
from tsaccess.errors import TsaccessError

__all__ = [
    "ClientState",
    "ResetPlan",
    "check_created",
    "check_custom_names",
    "custom_names_in",
    "custom_settings_present",
    "forget_prepared",
    "maybe_sets",
    "present_query",
    "reset_batch",
    "run_reset",
]

AnyConnection = psycopg.Connection[Any] | psycopg.AsyncConnection[Any]

_CLEANUP = (
    "DEALLOCATE ALL; RESET ROLE; RESET SESSION AUTHORIZATION; RESET ALL; DISCARD TEMP;"
    " DISCARD SEQUENCES; UNLISTEN *; CLOSE ALL"
)

_CUSTOM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)+")


_OWN = "tsaccess."
"""Settings tsaccess itself sets and resets (the audit actor): not the borrower's."""
_DEPTH = 4
"""How deep string literals are read as SQL (a ``DO`` body, an ``EXECUTE``'d string...)."""


def custom_names_in(text: str) -> tuple[frozenset[str], bool]:
    """The custom settings (``prefix.name``) a statement text may create: ``SET x.y``, ``SET
    LOCAL x.y``, ``set_config('x.y', ...)``, read with :mod:`tsaccess.client.sqltokens` (so
    comments, quoted and ``U&`` identifiers, ``E''`` and dollar-quoted strings cannot hide one),
    also inside string literals (code run by ``DO`` or ``EXECUTE``); and True when a
    ``set_config`` name is not a literal, or a ``SET`` ends a string (the name is built at run
    time): which setting it creates cannot be known, the pool fails closed."""
    low = text.lower()
    if "set_config" not in low and not any(c in text for c in _SIGNS):
        # no dotted, quoted or escaped name, no string (code run later), no set_config: a SET
        # here names no custom setting (a parameterised UPDATE ... SET stops here)
        return frozenset(), False
    names: set[str] = set()
    unknown = _names_in(text, names, 0)
    return frozenset(names), unknown


_SIGNS = ".\"'$\\&"


def _names_in(text: str, names: set[str], depth: int) -> bool:
    toks = significant(text)
    unknown = False
    for i, (kind, value) in enumerate(toks):
        if kind == "ident" and value == "set":
            j = i + 1
            while j < len(toks) and toks[j][0] == "ident" and toks[j][1] in _SET_WORDS:
                j += 1
            if j >= len(toks):
                unknown = depth > 0  # a string ending in SET: the name is appended at run time
                continue
            name = _dotted(toks, j)
            if name is not None:
                _add(names, name)
        elif kind in ("ident", "quoted") and value == "set_config":
            if i + 1 >= len(toks) or toks[i + 1] != ("op", "("):
                continue
            arg = toks[i + 2] if i + 2 < len(toks) else None
            after = toks[i + 3] if i + 3 < len(toks) else None
            if arg is None or arg[0] != "string" or (after is not None and after != ("op", ",")):
                unknown = True
            else:
                _add(names, arg[1].lower())
        elif kind == "string" and depth < _DEPTH and _MAYBE.search(value):
            unknown |= _names_in(value, names, depth + 1)
    return unknown


_SET_WORDS = frozenset({"session", "local"})
_MAYBE = re.compile(r"(?i)set|u&|\\")
"""Text worth reading for a setting: ``set``, or what can spell it (``U&`` escapes)."""


def _dotted(toks: Sequence[tuple[str, str]], j: int) -> str | None:
    """``a.b[.c]`` from ``toks[j:]`` (unquoted parts lower-cased; one quoted part may hold the
    dot itself: ``"a.b"``), None when not a custom setting name."""
    parts: list[str] = []
    while j < len(toks) and toks[j][0] in ("ident", "quoted"):
        parts.append(toks[j][1])
        if j + 1 < len(toks) and toks[j + 1] == ("op", "."):
            j += 2
            continue
        break
    name = ".".join(parts)
    return name if "." in name else None


def _add(names: set[str], name: str) -> None:
    if "." in name and not name.lower().startswith(_OWN):
        names.add(name)


def maybe_sets(text: str) -> bool:
    """Cheap test: can ``text`` create a custom setting at all (``set`` in any case, or ``U&``
    or backslash escapes that could spell ``set_config``)?"""
    return _MAYBE.search(text) is not None


def check_custom_names(names: Sequence[str]) -> tuple[str, ...]:
    """The names as given, or :class:`TsaccessError` for one that is not a custom setting name
    (``prefix.name``)."""
    if isinstance(names, str):
        raise TsaccessError("custom_settings takes a list of names, not one string")
    for name in names:
        if not _CUSTOM_NAME.fullmatch(name):
            raise TsaccessError(
                f"custom_settings: {name!r} is not a custom setting name; give names such as "
                "'myapp.tenant_id' (a prefix, a dot, a name)"
            )
    return tuple(names)


def present_query(names: Sequence[str]) -> sql.Composed:
    """One row, one boolean per name: does the custom setting exist in this session?"""
    return sql.SQL("SELECT {}").format(sql.SQL(", ").join(_present_cols(names)))


def _present_cols(names: Sequence[str]) -> list[sql.Composable]:
    """One boolean column per name: does the setting exist in this session?"""
    return [
        sql.SQL("pg_catalog.current_setting({}, true) IS NOT NULL").format(sql.Literal(n))
        for n in names
    ]


def custom_settings_present(conn: psycopg.Connection[Any], names: Sequence[str]) -> frozenset[str]:
    """Which of ``names`` exist in this session (set by the server, database or role, or a
    placeholder left by ``SET``)."""
    if not names:
        return frozenset()
    autocommit = conn.autocommit
    conn.autocommit = True  # no transaction left open (a pool refuses a configured one)
    try:
        with psycopg.Cursor(conn, row_factory=tuple_row) as cur:
            row = cur.execute(present_query(names), prepare=False).fetchone()
    finally:
        conn.autocommit = autocommit
    return frozenset(n for n, present in zip(names, row or (), strict=False) if present)


def reset_batch(role: str | None, app_name: str, custom: Sequence[str]) -> sql.Composed:
    """The one batch of a reset: the cleanup, ``SET ROLE`` again, and one final ``SELECT`` that
    releases advisory locks, sets ``application_name`` again (after ``RESET ALL``) and reports
    which ``custom`` settings exist (columns 3...)."""
    cols: list[sql.Composable] = [
        sql.SQL("pg_catalog.pg_advisory_unlock_all()"),
        sql.SQL("pg_catalog.set_config('application_name', {}, false)").format(
            sql.Literal(app_name)
        ),
        *_present_cols(custom),
    ]
    parts: list[sql.Composable] = [sql.SQL(_CLEANUP)]
    if role:
        parts.append(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    parts.append(sql.SQL("SELECT {}").format(sql.SQL(", ").join(cols)))
    return sql.SQL("; ").join(parts)


def forget_prepared(conn: BaseConnection[Any]) -> None:
    """Empty psycopg's prepared-statement cache without queueing its own ``DEALLOCATE ALL``:
    the reset batch deallocates on the server in the same round trip.

    psycopg keeps the cache in ``conn._prepared`` (a ``PrepareManager``); ``clear()`` would queue
    a second round trip, so a fresh manager replaces it (threshold and size are restored from
    :class:`ClientState` afterwards).
    """
    conn._prepared = PrepareManager()


@dataclass(frozen=True)
class ClientState:
    """The Python side of a pooled connection as the pool configured it."""

    row_factory: Any
    cursor_factory: Any
    server_cursor_factory: Any
    adapters: AdaptersMap
    notice_handlers: tuple[Any, ...]
    notify_handlers: tuple[Any, ...]
    prepare_threshold: int | None
    prepared_max: int | None
    custom_present: frozenset[str]
    """Custom settings that existed when the connection was configured."""

    @classmethod
    def capture(cls, conn: psycopg.Connection[Any], custom: Sequence[str]) -> ClientState:
        return cls.of(conn, custom_settings_present(conn, custom))

    @classmethod
    def of(cls, conn: AnyConnection, present: frozenset[str]) -> ClientState:
        """The state of ``conn`` (sync or async), ``present``: the custom settings that exist."""
        return cls(
            row_factory=conn.row_factory,
            cursor_factory=conn.cursor_factory,
            server_cursor_factory=conn.server_cursor_factory,
            adapters=AdaptersMap(conn.adapters),  # a copy: the borrower's registrations stay out
            notice_handlers=tuple(conn._notice_handlers),
            notify_handlers=tuple(conn._notify_handlers),
            prepare_threshold=conn.prepare_threshold,
            prepared_max=conn.prepared_max,
            custom_present=present,
        )

    def restore(self, conn: AnyConnection) -> None:
        conn.row_factory = self.row_factory
        conn.cursor_factory = self.cursor_factory
        conn.server_cursor_factory = self.server_cursor_factory
        conn._adapters = AdaptersMap(self.adapters)
        conn._notice_handlers[:] = self.notice_handlers
        conn._notify_handlers[:] = self.notify_handlers
        if conn._notifies_backlog is not None:
            conn._notifies_backlog.clear()  # notifications for the previous borrower
        conn.prepare_threshold = self.prepare_threshold
        conn.prepared_max = self.prepared_max


def run_reset(
    conn: psycopg.Connection[Any], batch: sql.Composed, custom: Sequence[str], state: ClientState
) -> None:
    """Run the reset ``batch`` (autocommit) and put the client state back.

    Raises:
        TsaccessError: the borrower created one of the ``custom`` settings (the pool then
            discards the connection).
    """
    forget_prepared(conn)
    conn.autocommit = True
    with psycopg.Cursor(conn, row_factory=tuple_row) as cur:
        cur.execute(batch, prepare=False)  # one round trip
        row: tuple[Any, ...] | None = None
        if custom:
            while cur.nextset():  # the final SELECT's result
                pass
            row = cur.fetchone()
    check_created(row, custom, state)
    state.restore(conn)


def check_created(row: tuple[Any, ...] | None, custom: Sequence[str], state: ClientState) -> None:
    """Raise when the reset batch's final row shows a ``custom`` setting the borrower created.

    Raises:
        TsaccessError: the connection must be discarded, not handed on.
    """
    present = zip(custom, (row or ())[2:], strict=False)
    created = frozenset(n for n, exists in present if exists) - state.custom_present
    if created:
        raise TsaccessError(
            f"the borrower created custom settings {sorted(created)}; RESET ALL leaves them as "
            "'' (not NULL), so this connection is discarded rather than handed on"
        )


class ResetPlan:
    """What a pool's reset sends for one login user, built once per pool (sync or async)."""

    def __init__(self, role: str | None, app_name: str, custom: Sequence[str]) -> None:
        self.role = role
        self.app_name = app_name
        self.custom = tuple(custom)
        self._batch = reset_batch(role, app_name, self.custom)

    def for_connection(self, conn: Any) -> tuple[sql.Composed, tuple[str, ...]]:
        """The batch for ``conn`` and the custom settings it checks: also those the
        borrower's statements may have created (``conn.custom_seen``), in the same round trip.

        Raises:
            TsaccessError: a statement called ``set_config`` with a name that is not a literal
                (which setting it created cannot be known: the connection is discarded).
        """
        if conn.custom_unknown:
            raise TsaccessError(
                "the borrower called set_config() with a setting name that is not a literal: "
                "it may have created a custom setting that RESET ALL leaves as '' (not NULL); "
                "this connection is discarded rather than handed on"
            )
        extra = sorted(set(conn.custom_seen) - set(self.custom))
        if not extra:
            return self._batch, self.custom  # one round trip: clean up, scope again
        names = (*self.custom, *extra)
        return reset_batch(self.role, self.app_name, names), names
