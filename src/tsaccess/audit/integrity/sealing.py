"""Seal what is committed and sign a checkpoint of it outside the database.

:func:`seal` calls the seal function in the database (which appends blocks for every audit row
of a transaction older than the oldest one still running, with its per-row data), checks that
the stored chain still extends the newest checkpoint already in the directory, and writes a
signed checkpoint of the newest block there.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from tsaccess._log import get_logger
from tsaccess.audit.integrity.chain import Block, Names, read_blocks, stored_heads
from tsaccess.audit.integrity.checkpoint import (
    Checkpoint,
    database_identity,
    read_checkpoints,
    write_checkpoint,
)
from tsaccess.audit.integrity.keys import SigningKey, load_signing_key
from tsaccess.audit.integrity.schema import SEAL_FUNCTION
from tsaccess.errors import AuditChainError, AuditTamperedError

if TYPE_CHECKING:
    from tsaccess.policy import Policy

__all__ = ["SealResult", "seal"]

log = get_logger("tsaccess.audit.integrity")


@dataclass(frozen=True)
class SealResult:
    """What a seal did: the blocks it appended, the checkpoint it wrote, what still waits."""

    checkpoint: Checkpoint
    new_blocks: tuple[int, ...]
    waiting_rows: int
    """Committed audit rows not sealed yet: their transaction started after one still running
    (they are sealed by the first seal after it ends)."""
    oldest_running: str | None
    """When the oldest transaction still holding the seal back started, if one does."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.as_dict(),
            "new_blocks": list(self.new_blocks),
            "waiting_rows": self.waiting_rows,
            "oldest_running": self.oldest_running,
        }

    def to_text(self) -> str:
        cp = self.checkpoint
        lines = [
            f"sealed {cp.table} up to position {cp.position} ({cp.rows} audit rows, "
            f"{cp.records} per-row records), block {cp.block}, head {cp.head}",
            f"new blocks: {', '.join(map(str, self.new_blocks)) or 'none (nothing new committed)'}",
            f"checkpoint: {cp.path}",
        ]
        if self.waiting_rows:
            lines.append(
                f"waiting: {self.waiting_rows} committed audit row(s) behind a transaction "
                f"running since {self.oldest_running}; the next seal after it ends takes them"
            )
        return "\n".join(lines)


def _check_extends(last: Checkpoint, blocks: list[Block]) -> None:
    """The stored chain from ``last``'s block on still gives ``last``'s head and chains on."""
    if not blocks or blocks[0].block != last.block:
        raise AuditTamperedError(
            f"block {last.block} of {last.name} is gone from the chain table: the database "
            "no longer extends the last checkpoint; run `tsaccess audit prove`"
        )
    first = blocks[0]
    for b, head in stored_heads(blocks[1:], first.head):
        if head != b.head:
            raise AuditTamperedError(
                f"block {b.block} in the chain table does not follow from the blocks before "
                "it; run `tsaccess audit prove`"
            )
    if first.head.hex() != last.head:
        raise AuditTamperedError(
            f"the chain table's block {last.block} no longer has the head signed in "
            f"{last.name}: the database no longer extends the last checkpoint; run "
            "`tsaccess audit prove`"
        )


def seal(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    key: SigningKey | str | os.PathLike[str],
    out: str | os.PathLike[str],
    max_rows: int | None = None,
) -> SealResult:
    """Seal every committed audit row (and its per-row data) and sign a checkpoint into ``out``.

    Rows of transactions still running are left for a later seal, and so is every row of a
    transaction that started after the oldest one still running (transaction ids are handed out
    before commit): they are never skipped and never put before what is sealed.

    Args:
        conn: a superuser connection to the database (not inside a transaction).
        key: the private key (:func:`tsaccess.audit.keygen`) or its path.
        out: the checkpoint directory (created if missing); its checkpoints must verify with
            ``key`` and be of this database.
        max_rows: audit rows per block (default: the seal function's, 250,000).

    Raises:
        AuditChainError: the key or directory is unusable, or a checkpoint there is refused or
            of another database.
        AuditTamperedError: the chain in the database no longer extends the newest checkpoint.
    """
    signing = key if isinstance(key, SigningKey) else load_signing_key(key)
    directory = Path(out)
    names = Names.of(policy)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise AuditChainError(
            "seal needs a connection outside a transaction (the seal commits before its "
            "checkpoint is signed)"
        )
    with conn.transaction():
        identity = database_identity(conn)
    previous = read_checkpoints(directory, signing.verify_key) if directory.exists() else []
    for cp in previous:
        if cp.identity != identity or cp.table != names.qualified:
            raise AuditChainError(
                f"{cp.name} in {directory} seals {cp.table} of {cp.identity.describe()}, not "
                f"{names.qualified} of {identity.describe()}: use one directory per audit trail"
            )
    last = previous[-1] if previous else None
    func = sql.Identifier(policy.schema, SEAL_FUNCTION)
    call = (
        sql.SQL("SELECT * FROM {}()").format(func)
        if max_rows is None
        else sql.SQL("SELECT * FROM {}({})").format(func, sql.Literal(max_rows))
    )
    try:
        with conn.transaction():
            new = tuple(int(r[0]) for r in conn.execute(call).fetchall())
    except psycopg.errors.UndefinedFunction:
        raise AuditChainError(
            f"{policy.schema}.{SEAL_FUNCTION}() is missing: apply the policy (`tsaccess apply`) "
            "to install the audit chain"
        ) from None
    with conn.transaction():
        blocks = read_blocks(conn, names, since=last.block if last else 0)
        if blocks is None:
            raise AuditTamperedError(
                f"{names.data_schema}.tsaccess_chain is gone: run `tsaccess audit prove`"
            )
        if last is not None:
            _check_extends(last, blocks)
        else:
            for b, head in stored_heads(blocks):
                if head != b.head:
                    raise AuditTamperedError(
                        f"block {b.block} in the chain table does not follow from the blocks "
                        "before it; run `tsaccess audit prove`"
                    )
        totals = conn.execute(
            sql.SQL(
                "SELECT coalesce(sum(audit_rows), 0)::bigint, coalesce(sum(data_records), 0)::bigint"
                " FROM {}"
            ).format(names.chain)
        ).fetchone()
        newest = blocks[-1]
        waiting = conn.execute(
            sql.SQL("SELECT pg_catalog.count(*) FROM {} WHERE txid >= %s").format(names.audit),
            (newest.hi_txid,),
        ).fetchone()
        oldest = conn.execute(
            "SELECT pg_catalog.min(xact_start)::text FROM pg_catalog.pg_stat_activity"
            " WHERE backend_xid IS NOT NULL AND pid <> pg_catalog.pg_backend_pid()"
        ).fetchone()
    assert totals is not None and waiting is not None
    cp = Checkpoint(
        system_identifier=identity.system_identifier,
        database=identity.database,
        database_oid=identity.database_oid,
        table=names.qualified,
        data_schema=names.data_schema,
        block=newest.block,
        first_position=newest.first_position,
        leaf_count=newest.leaf_count,
        audit_rows=newest.audit_rows,
        data_records=newest.data_records,
        lo_txid=newest.lo_txid,
        hi_txid=newest.hi_txid,
        columns=newest.columns,
        position=newest.first_position + newest.leaf_count,
        rows=int(totals[0]),
        records=int(totals[1]),
        head=newest.head.hex(),
        sealed_at=newest.sealed_at,
        signed_at=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        key_id=signing.key_id,
    )
    written = write_checkpoint(directory, cp, signing)
    log.info(
        "audit chain sealed",
        block=cp.block,
        position=cp.position,
        new_blocks=len(new),
        checkpoint=str(written.path),
    )
    return SealResult(
        written,
        new,
        int(waiting[0]),
        oldest[0] if oldest and waiting[0] else None,
    )
