"""The audit trail at run time: tag a session's audit rows, record refused statements.

Both are client-asserted (the application says who its end user is, or that a statement was
refused): audit rows keep them next to the server-verified ``username``.

On a hot standby nothing can be written: a DENIED event of a standby session is recorded on the
primary of the same host list (:func:`tsaccess.client.topology.open_primary`), with the session's
actor; if no primary is reachable :class:`~tsaccess.NoPrimaryError` says so. Behind a
transaction-mode pooler the actor is set in every transaction, never on the shared session.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from psycopg import sql

from tsaccess._log import get_logger
from tsaccess.audit.templates import DENIED_FUNCTION
from tsaccess.client.connection import TsConnection, plug_denied_recorder
from tsaccess.client.session import actor_statement
from tsaccess.client.topology import in_recovery, open_primary
from tsaccess.errors import NoPrimaryError, TsaccessError

__all__ = ["record_denied", "set_actor"]

log = get_logger("tsaccess.audit")

_SIDE_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '500ms'"


def set_actor(
    conn: psycopg.Connection[Any], actor: str | None, request_id: str | None = None
) -> None:
    """Tag this session's audit rows with an application-level actor and request id.

    The values are client-asserted (the application says who its end user is; any session could
    set the same settings itself): audit rows store them in ``actor`` / ``request_id`` next to
    the server-verified ``username``, with ``client_asserted = true``. Pooled
    connections forget them on return. Behind a pooler (``connect(pooler=...)``) they are set
    locally in each transaction, starting with the current one. An async connection:
    ``await conn.set_actor(actor, request_id)``.
    """
    if isinstance(conn, TsConnection):
        conn.set_actor(actor, request_id)  # the same statement as AsyncTsConnection.set_actor
        return
    conn.execute(actor_statement(local=False), (actor or "", request_id or ""))


def record_denied(
    conn: psycopg.Connection[Any],
    statement: str,
    reason: str,
    *,
    table_name: str | None = None,
    schema: str = "public",
) -> bool:
    """Record a refused statement as a ``DENIED`` audit event, in its own transaction.

    Uses ``conn`` when it is idle; otherwise (a transaction is open or failed) a second
    connection with the same parameters, so the event survives the caller's rollback. If the
    second connection waits on a lock the caller's transaction holds (it created the audit
    table's current chunk), the event is written in the caller's transaction instead (under a
    savepoint: kept if that transaction commits). The event
    is client-asserted (``client_asserted = true``). Returns False, and logs, when the event
    could not be recorded (e.g. the user may not execute the function).

    On a hot standby the event is written on the primary of the same host list, through a side
    connection that carries the session's actor and request id.

    Returns:
        True when the event was recorded.

    Raises:
        NoPrimaryError: ``conn`` is on a standby and no primary is reachable.
    """
    stmt = sql.SQL("SELECT {}(%s, %s, %s)").format(sql.Identifier(schema, DENIED_FUNCTION))
    args = (statement, reason, table_name)
    if isinstance(conn, TsConnection) and conn.pooler is None and in_recovery(conn):
        with open_primary(conn) as side:  # NoPrimaryError: never lost silently
            try:
                with side.transaction():
                    _tag(side, conn)
                    side.execute(stmt, args)
            except psycopg.Error as exc:
                log.warning(
                    "denied event not recorded on the primary",
                    db_user=conn.info.user,
                    error=exc.__class__.__name__,
                )
                return False
        log.debug("denied event recorded on the primary", db_user=conn.info.user)
        return True
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with conn.transaction():
                conn.execute(stmt, args)
        else:
            if not isinstance(conn, TsConnection):
                log.warning(
                    "denied event not recorded: connection is busy and was not "
                    "opened by tsaccess.connect",
                    db_user=conn.info.user,
                )
                return False
            with conn.open_side(autocommit=False) as side:
                try:
                    with side.transaction():
                        side.execute(_SIDE_LOCK_TIMEOUT)
                        _tag(side, conn)
                        side.execute(stmt, args)
                except psycopg.errors.LockNotAvailable:
                    # the caller's own transaction holds the lock (it created the audit
                    # table's current chunk): record inside it, kept if it commits
                    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                        raise
                    log.info(
                        "denied event written in the caller's transaction", db_user=side.info.user
                    )
                    with conn.transaction():
                        conn.execute(stmt, args)
    except psycopg.Error as exc:
        log.warning(
            "denied event not recorded", db_user=conn.info.user, error=exc.__class__.__name__
        )
        return False
    return True


def _tag(side: TsConnection, conn: TsConnection) -> None:
    """Give a side connection's transaction the actor of the session it writes for."""
    if conn.actor or conn.request_id:
        side.execute(
            "SELECT pg_catalog.set_config('tsaccess.actor', %s, true),"
            " pg_catalog.set_config('tsaccess.request_id', %s, true)",
            (conn.actor or "", conn.request_id or ""),
        )


# per connection: the schema of the DENIED function this user may execute (None: none)
_denied_schema: WeakKeyDictionary[TsConnection, str | None] = WeakKeyDictionary()

_FIND_DENIED = (
    "SELECT n.nspname FROM pg_catalog.pg_proc p"
    " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
    " WHERE p.proname = %s AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE')"
    " ORDER BY pg_catalog.array_position(pg_catalog.current_schemas(false), n.nspname), 1"
    " LIMIT 1"
)


def _find_schema(conn: TsConnection) -> str | None:
    """Where the audit trail's DENIED function is (looked up once per connection)."""
    if conn in _denied_schema:
        return _denied_schema[conn]
    schema: str | None = None
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with conn.transaction(), psycopg.Cursor(conn) as cur:
                row = cur.execute(_FIND_DENIED, (DENIED_FUNCTION,)).fetchone()
        else:
            with conn.open_side(autocommit=True) as side:
                row = side.execute(_FIND_DENIED, (DENIED_FUNCTION,)).fetchone()
        schema = row[0] if row else None
    except (psycopg.Error, TsaccessError) as exc:
        log.debug("denied events: lookup failed", error=exc.__class__.__name__)
        return None
    if schema is None:
        log.debug("denied events: no audit trail this user may write", db_user=conn.info.user)
    _denied_schema[conn] = schema
    return schema


def _record_refusal(
    conn: TsConnection, statement: str, reason: str, tables: tuple[str, ...]
) -> bool:
    """The recorder behind :meth:`tsaccess.TsConnection.record_refusal`: a DENIED event with
    the refused tables, when the database has the audit trail."""
    schema = _find_schema(conn)
    if schema is None:
        return False
    try:
        return record_denied(
            conn, statement, reason, table_name=", ".join(tables) or None, schema=schema
        )
    except NoPrimaryError as exc:
        # the refusal itself (PreflightDenied) matters more than its record: say so loudly,
        # but let the caller get the refusal
        log.warning("denied event not recorded", db_user=conn.info.user, why=str(exc))
        return False


plug_denied_recorder(_record_refusal)
