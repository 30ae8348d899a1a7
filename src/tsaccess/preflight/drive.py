"""The I/O of a check, on a synchronous connection: the checker's requests answered.

:meth:`tsaccess.preflight.Checker.steps` is a generator that decides and yields what it needs
from the server: a catalog :class:`Query` (answered with its rows) or a :class:`Probe` (answered
with a :class:`ProbeResult`). :func:`drive` answers them on a ``psycopg.Connection``;
:mod:`~tsaccess.preflight.drive_async` answers the same requests on a
``psycopg.AsyncConnection`` with its own cursors (the decision is shared, only the I/O differs,
as psycopg does with its generators).

A probe confirms a refusal without changing anything: it runs in a transaction of its own that
is rolled back (``BEGIN ... ROLLBACK`` when the session is idle, ``SAVEPOINT ... ROLLBACK TO``
inside the caller's transaction, through psycopg's ``Connection.transaction`` so pipelines and
the transaction-pooler scope work as for any statement), and runs ``EXPLAIN`` (never
``ANALYZE``) or privilege functions only. psycopg forgets the session's prepared statements at
every rollback (``DEALLOCATE ALL``: a rollback may undo the objects they name); the check's
rollbacks undo only its own reads and probes, so it keeps them (:func:`own_prepared`).
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import sql
from psycopg._connection_base import BaseConnection
from psycopg._preparing import PrepareManager

from tsaccess.preflight.snapshot import catalog_rows

__all__ = [
    "INTERNAL",
    "Binding",
    "Probe",
    "ProbeResult",
    "Query",
    "Request",
    "drive",
    "internal",
    "own_prepared",
    "run_probe",
]

Binding = Literal["server", "client", "raw"]
"""How the caller's cursor binds parameters: server-side (``%s`` -> ``$1``), client-side
(``ClientCursor``), or raw ``$1`` placeholders (``RawCursor``)."""

INTERNAL: ContextVar[bool] = ContextVar("tsaccess_preflight_internal", default=False)
"""True while pre-flight runs its own catalog queries and probes (they are not checked)."""


@contextmanager
def internal() -> Any:
    token = INTERNAL.set(True)
    try:
        yield
    finally:
        INTERNAL.reset(token)


@contextmanager
def own_prepared(conn: BaseConnection[Any]) -> Any:
    """The check's statements with a prepared-statement cache of their own (none): the
    rollbacks of its catalog reads and probes leave the session's prepared statements alone.
    In a pipeline, results of the caller's queued statements may come in meanwhile: left as
    psycopg does it."""
    if conn._pipeline is not None:
        yield
        return
    saved, conn._prepared = conn._prepared, PrepareManager()
    conn._prepared.prepare_threshold = None
    try:
        yield
    finally:
        conn._prepared = saved


@dataclass(frozen=True)
class Query:
    """A catalog query; the answer is its rows."""

    sql: sql.Composable
    params: Any = None


@dataclass(frozen=True)
class Probe:
    """Statements run in a transaction rolled back at once: ``setup`` (statements of the same
    string that set the role or ``search_path`` before it), then ``checks`` (a ``SELECT`` of
    booleans: the privileges, live; its row is answered), then ``statement`` (an ``EXPLAIN``,
    bound to the caller's parameters when ``with_params``) — only when one of the ``checks``
    columns listed in ``explain_if`` is false (all of them when empty).

    ``generic`` >= 0: ``statement`` is a query with that many ``$n`` parameters and no values
    for them; it is prepared (``PREPARE``, which infers their types), explained with NULLs
    (``EXPLAIN EXECUTE``, its own savepoint) and deallocated."""

    statement: str | sql.SQL | sql.Composed | None
    setup: tuple[str, ...] = ()
    with_params: bool = False
    generic: int = -1
    checks: sql.SQL | sql.Composed | None = None
    explain_if: tuple[int, ...] = ()


@dataclass(frozen=True)
class ProbeResult:
    """What the server said: ``sqlstate`` None when the statement ran (or was not needed);
    ``setup`` True when a setup statement or the checks failed (nothing was learnt about the
    statement); ``checks`` the row of the checks; ``ran`` whether the statement was run."""

    sqlstate: str | None
    message: str = ""
    setup: bool = False
    checks: tuple[Any, ...] = ()
    ran: bool = False


Request = Query | Probe
T = TypeVar("T")

_CURSORS: dict[Binding, type[psycopg.Cursor[Any]]] = {
    "server": psycopg.Cursor,
    "client": psycopg.ClientCursor,
    "raw": psycopg.RawCursor,
}


def run_probe(
    conn: psycopg.Connection[Any], probe: Probe, params: Any = None, binding: Binding = "server"
) -> ProbeResult:
    """Run ``probe`` and roll it back (see the module's docstring); in autocommit with nothing
    to set up, no transaction is needed (a failure aborts nothing)."""
    cls = _CURSORS[binding]
    direct = (
        conn.autocommit
        and not probe.setup
        and probe.generic < 0
        and conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        and conn._pipeline is None
    )
    row: tuple[Any, ...] = ()
    stage = "setup"
    try:
        with (
            internal(),
            nullcontext() if direct else conn.transaction(force_rollback=True),
            cls(conn) as cur,
        ):
            for text in probe.setup:
                cur.execute(text, prepare=False)
            if probe.checks is not None:
                cur.execute(probe.checks, prepare=False)
                row = tuple(cur.fetchone() or ())
            stage = "statement"
            if probe.statement is None or (
                row and probe.explain_if and all(row[i] for i in probe.explain_if)
            ):
                return ProbeResult(None, checks=row)
            if probe.generic >= 0:
                found = _generic(conn, cur, probe)
                return ProbeResult(found.sqlstate, found.message, checks=row, ran=True)
            args = params if probe.with_params else None
            cur.execute(probe.statement, args, prepare=False)
    except psycopg.Error as exc:
        message = str(exc).split("\n", 1)[0]
        return ProbeResult(exc.sqlstate, message, stage == "setup", row, stage == "statement")
    return ProbeResult(None, checks=row, ran=True)


def _generic(conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], probe: Probe) -> ProbeResult:
    """``EXPLAIN`` of a query whose parameters have no values (see :class:`Probe`)."""
    name = sql.Identifier("tsaccess_preflight_probe")
    statement = probe.statement or ""
    query = sql.SQL(statement) if isinstance(statement, str) else statement
    cur.execute(sql.SQL("PREPARE {} AS ").format(name) + query, prepare=False)
    nulls = sql.SQL(", ").join([sql.NULL] * probe.generic)
    explain = sql.SQL("EXPLAIN EXECUTE {}").format(name)
    if probe.generic:
        explain += sql.SQL("({})").format(nulls)
    result = ProbeResult(None)
    try:
        with conn.transaction():
            cur.execute(explain, prepare=False)
    except psycopg.Error as exc:
        result = ProbeResult(exc.sqlstate, str(exc).split("\n", 1)[0])
    cur.execute(sql.SQL("DEALLOCATE {}").format(name), prepare=False)
    return result


def drive(
    conn: psycopg.Connection[Any],
    gen: Generator[Request, Any, T],
    params: Any = None,
    binding: Binding = "server",
) -> T:
    """Run a checker's generator to its verdict, answering its requests on ``conn``."""
    try:
        request = next(gen)
        with own_prepared(conn):
            while True:
                if isinstance(request, Query):
                    with internal():
                        answer: Any = catalog_rows(conn, request.sql, request.params)
                else:
                    answer = run_probe(conn, request, params, binding)
                request = gen.send(answer)
    except StopIteration as stop:
        result: T = stop.value
        return result
