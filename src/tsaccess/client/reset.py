"""What a pool's reset puts back between two borrowers of one connection.

Server side, one batch (one round trip): ``RESET ROLE``, ``RESET ALL``, temporary objects,
sequences state, listeners, cursors, then the pool's role again and one ``SELECT`` that releases
advisory locks, reports which custom settings exist and fingerprints the prepared statements.
``application_name`` is a startup parameter of pooled connections, so ``RESET ALL`` puts it back
(connections opened otherwise get it set again in the same ``SELECT``).

Prepared statements are not all thrown away: those tsaccess can prove are its own survive, so a
borrower's queries stay prepared across borrows (see :mod:`tsaccess.client.prepared`); when the
fingerprint shows anything else, every statement is deallocated (extra round trips, only then).

Client side: psycopg's prepared-statement map is rebuilt from what the server was shown to
hold (never from the borrower's objects), and the connection's Python state
(:class:`ClientState`: row and cursor factories, adapters, notice and notify handlers, prepare
settings) is put back as the pool configured it, while the server runs the batch. The reset
is written once as a psycopg generator (:func:`reset_gen`); the sync and async pools only run
it.

A custom setting (``SET myapp.x = 'y'``) leaves a placeholder that no SQL can list (PostgreSQL
hides placeholders from ``pg_settings``) and that ``RESET ALL`` turns into ``''`` instead of
removing: for the names the pool is told about (``custom_settings``), the batch reports which
exist, and a connection with one the borrower created is discarded (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import generators, sql
from psycopg._preparing import PrepareManager
from psycopg.adapt import AdaptersMap
from psycopg.rows import tuple_row

from tsaccess.client.prepared import (
    LISTED,
    PreparedLedger,
    changed_by_psycopg,
    check_results,
    list_sql,
    new_statements,
    rebuild_manager,
    reconcile_gen,
    run_gen,
    server_statements,
)
from tsaccess.client.sqltokens import significant
from tsaccess.errors import TsaccessError

if TYPE_CHECKING:
    from psycopg.abc import PQGen

__all__ = [
    "ClientState",
    "ResetPlan",
    "check_created",
    "check_custom_names",
    "custom_names_in",
    "custom_settings_present",
    "maybe_sets",
    "present_query",
    "reset_batch",
    "reset_gen",
]

AnyConnection = psycopg.Connection[Any] | psycopg.AsyncConnection[Any]

_CLEANUP = (
    "RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP; DISCARD SEQUENCES;"
    " UNLISTEN *; CLOSE ALL"
)
"""Every session may go back to its authenticated user, so the reset always does: whether a
borrower could have changed it (a superuser login) cannot be read from the session itself —
``is_superuser`` reports the current role's, which ``SET ROLE`` (the pool's role scope) and a
borrower's ``SET SESSION AUTHORIZATION`` change."""

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


def _flag_cols(app_name: str | None, custom: Sequence[str]) -> list[sql.Composable]:
    """Which ``custom`` settings exist (one boolean each), advisory locks released and, when
    ``app_name`` is given, ``application_name`` set again (for connections that did not get it
    as a startup parameter, which ``RESET ALL`` restores)."""
    cols: list[sql.Composable] = [
        *_present_cols(custom),
        sql.SQL("pg_catalog.pg_advisory_unlock_all()"),
    ]
    if app_name is not None:
        cols.append(
            sql.SQL("pg_catalog.set_config('application_name', {}, false)").format(
                sql.Literal(app_name)
            )
        )
    return cols


def reset_batch(
    role: str | None,
    app_name: str | None,
    custom: Sequence[str],
    listed: bool = False,
) -> sql.Composed:
    """The one batch of a reset: the cleanup, ``SET ROLE`` again, then the custom settings'
    flags (columns 0...; see :func:`_flag_cols`) and the list of prepared statements
    (:func:`~tsaccess.client.prepared.list_sql`). ``listed``: one statement, the flags
    repeated on each listed row (for a connection that keeps prepared statements: it lists
    at least one, else the flags are asked for again); else two."""
    parts: list[sql.Composable] = [sql.SQL(_CLEANUP)]
    if role:
        parts.append(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    if listed:
        parts.append(list_sql(_flag_cols(app_name, custom)))
    else:
        parts.append(sql.SQL("SELECT {}").format(sql.SQL(", ").join(_flag_cols(app_name, custom))))
        parts.append(list_sql())
    return sql.SQL("; ").join(parts)


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


def reset_gen(conn: Any, plan: ResetPlan, state: ClientState) -> PQGen[None]:
    """The reset of a pooled connection (sync or async: run it with ``conn.wait``), in one
    round trip unless prepared statements need a closer look; the client state is put back
    while the server runs the batch.

    Raises:
        TsaccessError: the borrower created a custom setting that ``RESET ALL`` cannot remove,
            or may have (the pool then discards the connection).
        psycopg.Error: the server refused part of the reset (discarded as well).
    """
    names = plan.names_for(conn)
    ledger: PreparedLedger | None = conn._prepared_ledger
    if ledger is None:
        ledger = conn._prepared_ledger = PreparedLedger()
    # the borrower's map stays until the reply is read: the reset speaks to libpq directly,
    # and a connection whose reset fails is discarded
    borrowed: PrepareManager = conn._prepared
    new: dict[bytes, Any] = {}
    dropped = changed_by_psycopg(ledger, borrowed)
    if dropped:  # evicted or cleared: deallocate as psycopg would have
        ledger.forget()
    else:
        new = new_statements(ledger, borrowed)
    listed = bool(ledger.entries)
    batch = plan.batch(names, conn, listed)
    conn.pgconn.send_query(b"DEALLOCATE ALL; " + batch if dropped else batch)
    yield from generators.send(conn.pgconn)
    # while the server runs the batch: the next borrower's Python objects, never the last one's
    state.restore(conn)
    rebuilt = None if new else rebuild_manager(ledger, borrowed)
    results: list[Any] = yield from generators.fetch_many(conn.pgconn)
    check_results(conn, results)
    listing = results[-1]
    if not listed:
        flags, offset = results[-2], 0
    elif listing.ntuples:
        flags, offset = listing, LISTED
    else:  # the borrower deallocated them all: no row carried the flags, nor released locks
        flags, offset = (yield from run_gen(conn, plan.flags(names, conn)))[-1], 0
    if names:
        present = tuple(flags.get_value(0, offset + i) == b"t" for i in range(len(names)))
        check_created(present, names, state.custom_present)
    server = server_statements(listing)
    if rebuilt is None or not ledger.matches(server):
        yield from reconcile_gen(conn, ledger, server, new)
        rebuilt = rebuild_manager(ledger, borrowed)
    conn._prepared = rebuilt
    conn.prepare_threshold = state.prepare_threshold  # both live on psycopg's map: set again
    conn.prepared_max = state.prepared_max
    if conn._notifies_backlog is not None:
        conn._notifies_backlog.clear()  # notifications that came with the reply


def check_created(present: Sequence[bool], custom: Sequence[str], before: frozenset[str]) -> None:
    """Raise when the reset batch shows a ``custom`` setting (``present``: one flag per name)
    that did not exist when the connection was configured (``before``).

    Raises:
        TsaccessError: the connection must be discarded, not handed on.
    """
    created = frozenset(n for n, exists in zip(custom, present, strict=False) if exists) - before
    if created:
        raise TsaccessError(
            f"the borrower created custom settings {sorted(created)}; RESET ALL leaves them as "
            "'' (not NULL), so this connection is discarded rather than handed on"
        )


class ResetPlan:
    """What a pool's reset sends for one login user, built once per pool (sync or async).

    ``app_name`` is the ``application_name`` the connections must have; ``startup_app_name``
    the one they were opened with (a startup parameter, which ``RESET ALL`` restores): when
    the two agree the batch does not set it again.
    """

    def __init__(
        self,
        role: str | None,
        app_name: str,
        custom: Sequence[str],
        startup_app_name: str | None = None,
    ) -> None:
        self.role = role
        self.app_name = app_name if app_name != startup_app_name else None
        self.custom = tuple(custom)
        self._batches: dict[bool, bytes] = {}

    def batch(self, names: Sequence[str], conn: Any, listed: bool = False) -> bytes:
        """The batch checking ``names`` as bytes for ``conn`` (see :func:`reset_batch`; built
        once for the pool's own names)."""
        if tuple(names) != self.custom:
            built = reset_batch(self.role, self.app_name, names, listed)
            return built.as_bytes(conn)
        batch = self._batches.get(listed)
        if batch is None:
            built = reset_batch(self.role, self.app_name, self.custom, listed)
            batch = self._batches[listed] = built.as_bytes(conn)
        return batch

    def flags(self, names: Sequence[str], conn: Any) -> bytes:
        """The flags of :func:`reset_batch` alone."""
        cols = _flag_cols(self.app_name, names)
        return sql.SQL("SELECT {}").format(sql.SQL(", ").join(cols)).as_bytes(conn)

    def names_for(self, conn: Any) -> tuple[str, ...]:
        """The custom settings the reset of ``conn`` checks: the pool's, and those the
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
        return (*self.custom, *extra)
