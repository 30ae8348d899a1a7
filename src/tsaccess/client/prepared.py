"""Which prepared statements a pool's reset may keep: those tsaccess can prove are its own.

psycopg prepares a query the fifth time it runs (``_pg3_<n>``) and keeps a client-side map
from the query text and parameter types to that name. A borrower can replace the statement
behind a name (``DEALLOCATE _pg3_0; PREPARE _pg3_0 AS ...``, or libpq's ``PQprepare``) so that
the next borrower's query runs something else. Deallocating everything on every return closes
that door but makes every borrower's queries run unprepared.

Instead each pooled connection keeps a :class:`PreparedLedger`: the statements tsaccess itself
prepared on the server while no borrower held the connection, each with what the server
reports for it (digest of the text, parameter types, ``from_sql``). Every reset's batch lists
the server's prepared statements (:func:`list_sql`, in the same round trip); when the list is
the ledger, nothing was added, removed or replaced, and psycopg's map is rebuilt from the
ledger (not from the borrower's objects). Otherwise the reset looks closer
(:func:`reconcile_gen`, extra round trips): a statement psycopg prepared during the borrow,
whose text on the server is the text psycopg sent, is prepared again by tsaccess under the same
name (``DEALLOCATE`` + ``Parse`` with psycopg's arguments, so the server infers its parameter
types exactly as for psycopg) and joins the ledger — once per query and connection; if anything
else is there (a statement nobody can vouch for, a text that differs, one made by SQL
``PREPARE``, one of the ledger's gone or changed) every statement is deallocated and psycopg
starts afresh.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import generators, pq, sql
from psycopg._preparing import PrepareManager

if TYPE_CHECKING:
    from psycopg.abc import PQGen
    from psycopg.pq.abc import PGresult

__all__ = [
    "PreparedLedger",
    "changed_by_psycopg",
    "check_results",
    "list_sql",
    "new_statements",
    "rebuild_manager",
    "reconcile_gen",
    "run_gen",
    "server_statements",
]

Key = tuple[bytes, tuple[int, ...]]
"""psycopg's key of a prepared query: its text (with ``$n`` placeholders) and parameter types."""

Signature = tuple[bytes, bytes, bool]
"""What the server reports for one statement: text digest, parameter types, from_sql."""

LISTED = 4
"""The columns of :func:`list_sql` before the ``extra`` ones."""


def list_sql(extra: Sequence[sql.Composable] = ()) -> sql.Composed:
    """Every prepared statement of the session: name, digest of its text, parameter types
    (``{integer,text}``), whether SQL ``PREPARE`` made it, then the ``extra`` columns
    (evaluated once per row). Every name is qualified: the session's ``search_path`` is not
    ours."""
    cols: list[sql.Composable] = [
        sql.SQL("p.name, pg_catalog.md5(p.statement), p.parameter_types, p.from_sql"),
        *extra,
    ]
    return sql.SQL("SELECT {} FROM pg_catalog.pg_prepared_statement() p").format(
        sql.SQL(", ").join(cols)
    )


_PSYCOPG_NAME = re.compile(rb"_pg3_([0-9]{1,18})")


@dataclass
class _Entry:
    key: Key
    signature: Signature


@dataclass
class PreparedLedger:
    """The prepared statements tsaccess prepared on one connection (see the module)."""

    entries: dict[bytes, _Entry] = field(default_factory=dict)
    next_index: int = 0
    """The next ``_pg3_<n>`` psycopg may use (never one of the ledger's)."""

    def matches(self, server: dict[bytes, Signature]) -> bool:
        """Whether the server holds exactly the ledger's statements."""
        return len(server) == len(self.entries) and all(
            server.get(name) == e.signature for name, e in self.entries.items()
        )

    def forget(self) -> None:
        self.entries.clear()

    def note_index(self, name: bytes) -> None:
        m = _PSYCOPG_NAME.fullmatch(name)
        if m:
            self.next_index = max(self.next_index, int(m.group(1)) + 1)


def changed_by_psycopg(ledger: PreparedLedger, manager: PrepareManager) -> bool:
    """Whether psycopg itself dropped statements during the borrow (evicted from its cache, or
    cleared after a rollback, ``DROP`` or ``ALTER``): the reset then deallocates everything
    first, as psycopg would have."""
    if manager._to_flush:
        return True
    names = manager._names
    return any(names.get(e.key) != name for name, e in ledger.entries.items())


def new_statements(ledger: PreparedLedger, manager: PrepareManager) -> dict[bytes, Key]:
    """The statements psycopg prepared during the borrow (not yet the ledger's)."""
    return {
        name: key
        for key, name in manager._names.items()
        if isinstance(name, bytes) and name not in ledger.entries and _valid_key(key)
    }


def _valid_key(key: Any) -> bool:
    return (
        isinstance(key, tuple)
        and len(key) == 2
        and isinstance(key[0], bytes)
        and isinstance(key[1], tuple)
        and all(isinstance(t, int) and 0 <= t < 2**32 for t in key[1])
    )


def rebuild_manager(ledger: PreparedLedger, borrowed: PrepareManager) -> PrepareManager:
    """psycopg's prepared-statement map for the next borrower, built from the ledger (the
    borrower's execution counts carried over: they only decide when psycopg prepares)."""
    fresh = PrepareManager()
    fresh._names = OrderedDict((e.key, name) for name, e in ledger.entries.items())
    counts = borrowed._counts if isinstance(borrowed._counts, OrderedDict) else {}
    if counts:
        fresh._counts = OrderedDict(
            (k, c) for k, c in counts.items() if _valid_key(k) and isinstance(c, int)
        )
        for key in fresh._names:
            fresh._counts.pop(key, None)
    idx = borrowed._prepared_idx
    if isinstance(idx, int) and 0 <= idx < 2**62:
        ledger.next_index = max(ledger.next_index, idx)
    fresh._prepared_idx = ledger.next_index
    return fresh


def check_results(conn: psycopg.BaseConnection[Any], results: Iterable[PGresult]) -> None:
    """Raise the server's error if one of ``results`` is one."""
    for res in results:
        if res.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            raise psycopg.errors.error_from_result(res, encoding=conn.pgconn._encoding)


def run_gen(conn: psycopg.BaseConnection[Any], command: bytes) -> PQGen[list[PGresult]]:
    """Send ``command`` (simple query protocol: several statements allowed) and return its
    results, raising the first error."""
    conn.pgconn.send_query(command)
    results: list[PGresult] = yield from generators.execute(conn.pgconn)
    check_results(conn, results)
    return results


def server_statements(res: PGresult) -> dict[bytes, Signature]:
    """The rows of :func:`list_sql` by statement name."""
    out: dict[bytes, Signature] = {}
    for row in range(res.ntuples):
        name, digest, types, from_sql = (res.get_value(row, col) for col in range(LISTED))
        out[bytes(name or b"")] = (bytes(digest or b""), bytes(types or b""), from_sql == b"t")
    return out


def reconcile_gen(
    conn: psycopg.BaseConnection[Any],
    ledger: PreparedLedger,
    server: dict[bytes, Signature],
    new: dict[bytes, Key],
) -> PQGen[None]:
    """Bring the server's prepared statements (``server``, as the reset listed them) to what
    tsaccess can vouch for (see the module): the ledger's and ``new`` ones prepared again by
    tsaccess; or none at all."""
    trusted = all(server.get(name) == e.signature for name, e in ledger.entries.items())
    again: list[tuple[bytes, Key]] = []
    for name, (digest, _types, from_sql) in server.items():
        entry = ledger.entries.get(name)
        if entry is not None and entry.signature == (digest, _types, from_sql):
            continue
        key = new.get(name)
        if (
            key is None or from_sql or hashlib.md5(key[0]).hexdigest().encode() != digest  # noqa: S324 not a secret
        ):
            trusted = False
            break
        again.append((name, key))
    if not trusted:
        yield from run_gen(conn, b"DEALLOCATE ALL")
        ledger.forget()
        return
    if not again:
        return
    for name, (query, types) in again:  # now tsaccess prepares it, with psycopg's arguments
        drop = sql.SQL("DEALLOCATE {}").format(sql.Identifier(name.decode()))
        yield from run_gen(conn, drop.as_bytes(conn))
        conn.pgconn.send_prepare(name, query, param_types=types or None)
        check_results(conn, (yield from generators.execute(conn.pgconn)))
    (listing,) = (yield from run_gen(conn, list_sql().as_bytes(conn)))[-1:]
    now = server_statements(listing)
    for name, key in again:
        if name in now:
            ledger.entries[name] = _Entry(key, now[name])
            ledger.note_index(name)
