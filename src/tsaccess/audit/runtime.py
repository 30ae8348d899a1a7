"""The audit trail at run time: tag a session's audit rows, record refused statements.

Both are client-asserted (the application says who its end user is, or that a statement was
refused): audit rows keep them next to the server-verified ``username``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from tsaccess._log import get_logger
from tsaccess.audit.templates import DENIED_FUNCTION
from tsaccess.connection import TsConnection

__all__ = ["record_denied", "set_actor"]

log = get_logger("tsaccess.audit")


def set_actor(
    conn: psycopg.Connection[Any], actor: str | None, request_id: str | None = None
) -> None:
    """Tag this session's audit rows with an application-level actor and request id.

    The values are client-asserted (the application says who its end user is): audit rows store
    them in ``actor`` / ``request_id`` next to the server-verified ``username``. Pooled
    connections forget them on return.
    """
    conn.execute(
        "SELECT pg_catalog.set_config('tsaccess.actor', %s, false),"
        " pg_catalog.set_config('tsaccess.request_id', %s, false)",
        (actor or "", request_id or ""),
    )


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
    connection with the same parameters, so the event survives the caller's rollback. The event
    is client-asserted (``client_asserted = true``). Returns False, and logs, when the event
    could not be recorded (e.g. the user may not execute the function).

    Returns:
        True when the event was recorded.
    """
    stmt = sql.SQL("SELECT {}(%s, %s, %s)").format(sql.Identifier(schema, DENIED_FUNCTION))
    args = (statement, reason, table_name)
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
            with conn.open_side(autocommit=True) as side:
                side.execute(stmt, args)
    except psycopg.Error as exc:
        log.warning(
            "denied event not recorded", db_user=conn.info.user, error=exc.__class__.__name__
        )
        return False
    return True
