"""The state and behaviour every tsaccess connection has, sync or async: :class:`TsSession`.

psycopg keeps what ``Connection`` and ``AsyncConnection`` share in ``BaseConnection`` (the
generators that build and send a transaction's start, for one); tsaccess does the same:
:class:`TsSession` is a ``BaseConnection`` with tsaccess's typed state (login user, role, the
TLS report, pooler, audit actor, host list, the custom settings a borrower may have created) and
the transaction start behind a transaction-mode pooler (``BEGIN`` and the transaction-local role
in one round trip), written once as psycopg generators. :class:`~tsaccess.client.connection.
TsConnection` and :class:`~tsaccess.client.aio.AsyncTsConnection` add only their I/O.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import generators, pq, sql
from psycopg._connection_base import BaseConnection

from tsaccess.client.params import SecureParams
from tsaccess.client.pooler import autocommit_refused, scope_statement
from tsaccess.client.prepared import PreparedLedger
from tsaccess.client.reset import ClientState, custom_names_in, maybe_sets
from tsaccess.client.session import hosts_of
from tsaccess.client.tls import TlsStatus

if TYPE_CHECKING:
    from psycopg.abc import PQGen, QueryNoTemplate  # QueryNoTemplate: psycopg 3.3+

__all__ = ["TsSession", "note_query", "query_text", "recently_reset"]


def query_text(conn: BaseConnection[Any], query: Any) -> str:
    """A query as text (``sql.Composable`` rendered for ``conn``)."""
    if isinstance(query, str):
        return query
    if isinstance(query, bytes | bytearray | memoryview):
        return bytes(query).decode("utf-8", "replace")
    if isinstance(query, sql.Composable):
        return query.as_string(conn)
    return str(query)


def note_query(conn: Any, query: Any) -> None:
    """Note the custom settings ``query`` may create, on a pooled connection (a plain one is
    never handed to another borrower: it skips the text scan on every statement)."""
    if isinstance(conn, TsSession) and conn._client_state is not None:
        conn.note_custom_settings(query_text(conn, query))


def recently_reset(conn: Any, within: float) -> bool:
    """Whether ``conn`` is idle and a pool's round trip on it (reset or configure) finished
    less than ``within`` seconds ago: that round trip is the proof of life a borrow check
    would ask for again."""
    at = conn._reset_at
    return (
        at is not None
        and time.monotonic() - at < within
        and conn.pgconn.status == pq.ConnStatus.OK
        and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    )


class TsSession(BaseConnection[Any]):
    """What :class:`~tsaccess.client.connection.TsConnection` and
    :class:`~tsaccess.client.aio.AsyncTsConnection` share: typed state and hooks.

    Subclasses extend a connection through two hooks, :meth:`after_connect` and
    :meth:`after_reset` (pre-flight does). The password is never kept on the connection.
    """

    login_user: str = ""
    """The login user (``session_user``): the security boundary."""
    role: str | None = None
    """The group role the session was scoped to with ``SET ROLE`` (None: the login user's own
    privileges)."""
    verified_tls: TlsStatus | None = None
    """The server's TLS report taken when the session was verified."""
    pooler: str | None = None
    """The transaction-mode pooler this connection goes through (``"pgbouncer"``), or None.
    With a pooler, role and audit actor are set per transaction (see
    :mod:`tsaccess.client.pooler`)."""
    actor: str | None = None
    """The audit actor set with :func:`tsaccess.audit.set_actor` (client-asserted)."""
    request_id: str | None = None
    """The audit request id set with :func:`tsaccess.audit.set_actor`."""
    hosts: tuple[str, ...] = ()
    """The ``host:port`` entries of the parameters the connection was opened with (a host
    list has several; the session is on ``info.host`` / ``info.port``)."""
    _tx_scope: bytes | None = None
    _unscoped: int = 0
    _client_state: ClientState | None = None
    _prepared_ledger: PreparedLedger | None = None
    """The prepared statements tsaccess made on this pooled connection (see
    :mod:`tsaccess.client.prepared`)."""
    _reset_at: float | None = None
    """``time.monotonic()`` when a pool last finished a round trip that reset (or configured)
    this connection: a borrow soon after needs no check (see :func:`recently_reset`)."""
    custom_unknown: bool = False
    """A statement called ``set_config`` with a name that is not a literal."""

    def _init_session(self) -> None:
        self.custom_seen: set[str] = set()
        """Custom settings statements on this connection may have created (since the last
        pool reset): the reset checks them and discards the connection if one exists."""
        self.custom_unknown = False

    def note_custom_settings(self, text: str) -> None:
        """Note the custom settings ``text`` may create (called by the default cursors)."""
        if maybe_sets(text):  # any case, or escapes that could spell set_config
            names, unknown = custom_names_in(text)
            self.custom_seen |= names
            self.custom_unknown |= unknown

    def after_connect(self, *, preflight: bool) -> None:
        """Hook: the connection is verified and scoped (``preflight``: as asked of
        ``connect``). The default does nothing."""

    def after_reset(self) -> None:
        """Hook: a pool reset the connection for its next borrower. The default does nothing."""

    def _init_state(
        self, secure: SecureParams, role: str | None, status: TlsStatus, pooler: str | None
    ) -> None:
        self.login_user = self.info.user
        self.role = role
        self.verified_tls = status
        self.pooler = pooler
        self.hosts = hosts_of(secure.kwargs, self.info.host, self.info.port)
        if pooler is not None:
            self.prepare_threshold = None  # psycopg's advice for PgBouncer < 1.21
            self.set_scoped_settings()

    def set_scoped_settings(self, actor: str | None = None, request_id: str | None = None) -> None:
        """Behind a pooler: the actor and request id every following transaction sets locally
        (see :mod:`tsaccess.client.pooler`). Without a pooler it only records them."""
        self.actor, self.request_id = actor, request_id
        if self.pooler is None:
            return
        settings = {"tsaccess.actor": actor or "", "tsaccess.request_id": request_id or ""}
        self._tx_scope = scope_statement(self.role, settings).as_bytes(self)

    @contextmanager
    def _unscoped_block(self) -> Iterator[None]:
        """Let tsaccess itself send a harmless statement in autocommit (pool checks)."""
        self._unscoped += 1
        try:
            yield
        finally:
            self._unscoped -= 1

    def _start_query(self) -> PQGen[None]:
        if self._tx_scope is not None and self._autocommit and not self._unscoped:
            raise autocommit_refused(self.login_user, self.role)
        return (yield from super()._start_query())

    def _exec_command(
        self, command: QueryNoTemplate, result_format: pq.Format = pq.Format.TEXT
    ) -> PQGen[pq.abc.PGresult | None]:
        scope = self._tx_scope
        if (
            scope is None
            or not isinstance(command, bytes)
            or command != self._get_tx_start_command()
        ):
            return (yield from super()._exec_command(command, result_format))
        if self._pipeline is not None:
            res = yield from super()._exec_command(command, result_format)
            yield from super()._exec_command(scope)
            return res
        # BEGIN and the transaction-local role and settings in one round trip
        self._check_connection_ok()
        self.pgconn.send_query(command + b"; " + scope)
        results: list[pq.abc.PGresult] = yield from generators.execute(self.pgconn)
        for res in results:
            if res.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                if self.pgconn.transaction_status != pq.TransactionStatus.IDLE:
                    yield from super()._exec_command(b"ROLLBACK")
                raise psycopg.errors.error_from_result(res, encoding=self.pgconn._encoding)
        return results[0]
