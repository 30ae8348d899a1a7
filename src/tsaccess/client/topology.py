"""Primary and standbys: where a connection landed, the primary of the same host list, replay.

A libpq host list (``host=a,b,c`` with ``target_session_attrs``) may land a session on a hot
standby. Standbys refuse every write, so what must be written for them goes to the primary:
:func:`open_primary` opens a side connection to the read-write host of the *same* list (a
DENIED audit event of a standby session). :func:`require_primary` stops plan/apply on a
standby with an error that says what to connect to, and :func:`wait_replicas` waits until every
standby in the primary's ``pg_stat_replication`` has replayed a commit (``apply
--wait-replicas``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from tsaccess._log import get_logger
from tsaccess.client.connection import TsConnection
from tsaccess.errors import NoPrimaryError, ReplicaLagError, StandbyError, TsaccessError

__all__ = [
    "ReplicaState",
    "current_lsn",
    "host_list",
    "in_recovery",
    "open_primary",
    "replicas",
    "require_primary",
    "same_server",
    "wait_replicas",
]

log = get_logger("tsaccess.client.topology")


def in_recovery(conn: psycopg.Connection[Any]) -> bool:
    """Whether the session is on a hot standby.

    Read from the ``in_hot_standby`` parameter the server reports at login (PostgreSQL 14+, no
    round trip), else asked with ``pg_is_in_recovery()``.
    """
    reported = conn.info.parameter_status("in_hot_standby")
    if reported is not None:
        return reported == "on"
    was_idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with psycopg.Cursor(conn) as cur:  # past a pre-flight cursor factory
        row = cur.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
    if was_idle and not conn.autocommit:
        conn.rollback()
    return bool(row and row[0])


def host_list(conn: psycopg.Connection[Any]) -> str:
    """The hosts (``host:port``, comma-separated) the connection's parameters list."""
    if isinstance(conn, TsConnection) and conn.hosts:
        return ",".join(conn.hosts)
    return f"{conn.info.host}:{conn.info.port}"


def require_primary(conn: psycopg.Connection[Any], what: str) -> None:
    """Raise :class:`StandbyError` when ``conn`` is on a hot standby.

    Args:
        what: the operation, for the message (``"apply"``).
    """
    if not in_recovery(conn):
        return
    raise StandbyError(
        f"{what} needs the primary, but this connection is to a hot standby "
        f"({conn.info.host}:{conn.info.port}, read-only: pg_is_in_recovery() is true). "
        "Connect to the primary: its host, or the same host list with "
        "target_session_attrs=read-write"
    )


def open_primary(conn: psycopg.Connection[Any], *, autocommit: bool = False) -> TsConnection:
    """A side connection to the read-write host of ``conn``'s host list (same login).

    Raises:
        NoPrimaryError: no host of the list accepted a read-write session (or ``conn`` was not
            opened by tsaccess, so its parameters are unknown).
    """
    if not isinstance(conn, TsConnection):
        raise NoPrimaryError(
            "this connection was not opened by tsaccess.connect(): no host list to find the "
            "primary in"
        )
    try:
        return conn.open_side(autocommit=autocommit, target_session_attrs="read-write")
    except (psycopg.OperationalError, TsaccessError) as exc:
        raise NoPrimaryError(
            f"no primary reachable: no host of {host_list(conn)} accepted a read-write session "
            f"({exc.__class__.__name__}); list the primary in the connection's hosts "
            "(host=primary,standby1,...) so tsaccess can write there"
        ) from exc


def same_server(conn: psycopg.Connection[Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` pinned to the server ``conn`` landed on (for a host list): other sessions
    for the same check must see the same server."""
    out = dict(params)
    if "," not in str(out.get("host", "")) and "," not in str(out.get("hostaddr", "")):
        return out
    out.pop("hostaddr", None)
    out.pop("target_session_attrs", None)
    out["host"], out["port"] = conn.info.host, conn.info.port
    return out


def current_lsn(conn: psycopg.Connection[Any]) -> str:
    """The primary's WAL insert position: past every record of every committed transaction
    (``pg_current_wal_lsn()`` can lag a commit with ``synchronous_commit = off``)."""
    row = conn.execute("SELECT pg_catalog.pg_current_wal_insert_lsn()::text").fetchone()
    if not conn.autocommit:
        conn.rollback()
    assert row is not None
    return str(row[0])


@dataclass(frozen=True)
class ReplicaState:
    """One standby as the primary's ``pg_stat_replication`` shows it."""

    name: str
    """``application_name`` of the walreceiver (the standby's ``cluster_name`` or the one in
    its ``primary_conninfo``)."""
    client_addr: str | None
    state: str | None
    replay_lsn: str | None
    replayed: bool
    """Whether ``replay_lsn`` has reached the LSN waited for."""

    def __str__(self) -> str:
        where = f" at {self.client_addr}" if self.client_addr else ""
        return f"{self.name}{where} ({self.state or '?'}, replayed {self.replay_lsn or 'nothing'})"


def replicas(conn: psycopg.Connection[Any], lsn: str) -> tuple[ReplicaState, ...]:
    """The standbys streaming from this primary (``pg_stat_replication``, base backups left
    out), each with whether it has replayed ``lsn``."""
    rows = conn.execute(
        "SELECT coalesce(application_name, pid::text), client_addr::text, state,"
        " replay_lsn::text, coalesce(replay_lsn >= %s::pg_lsn, false)"
        " FROM pg_catalog.pg_stat_replication"
        " WHERE state IS DISTINCT FROM 'backup' ORDER BY 1",
        (lsn,),
    ).fetchall()
    if not conn.autocommit:
        conn.rollback()
    return tuple(ReplicaState(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows)


def wait_replicas(
    conn: psycopg.Connection[Any], lsn: str, *, timeout: float
) -> tuple[ReplicaState, ...]:
    """Return once every standby in ``pg_stat_replication`` has replayed ``lsn``.

    A standby reports its replay position every ``wal_receiver_status_interval`` (10 s by
    default): set it lower on the standbys for a shorter wait.

    Returns:
        the standbys (all replayed); empty when none streams from this server.

    Raises:
        ReplicaLagError: some had not replayed it within ``timeout`` seconds (named), or this
            user may not read their positions (needs ``pg_monitor``).
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        states = replicas(conn, lsn)
        if any(s.state is None for s in states):
            raise ReplicaLagError(
                f"user {conn.info.user!r} may not read the standbys' replay positions in "
                "pg_stat_replication; grant it pg_monitor (or run as a superuser)",
                laggards=[s.name for s in states if s.state is None],
            )
        behind = [s for s in states if not s.replayed]
        if not behind:
            return states
        if time.monotonic() >= deadline:
            raise ReplicaLagError(
                f"{len(behind)} of {len(states)} standby(s) had not replayed LSN {lsn} "
                f"within {timeout:g} s: {'; '.join(str(s) for s in behind)}. The change IS "
                "committed on the primary; those standbys still answer with the old "
                "privileges until they catch up",
                laggards=[s.name for s in behind],
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.25)
