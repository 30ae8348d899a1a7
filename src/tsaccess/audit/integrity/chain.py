"""The sealed blocks as the database keeps them (``<data_schema>.tsaccess_chain``).

Read by both the seal (to check that the chain still extends the last checkpoint before signing
it) and the proof (where the rows are compared with what was sealed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from tsaccess.audit.integrity.encoding import GENESIS, block_meta, next_head
from tsaccess.audit.integrity.schema import CHAIN_TABLE
from tsaccess.errors import AuditChainError

if TYPE_CHECKING:
    from tsaccess.policy import Policy

__all__ = ["Block", "Names", "read_blocks", "stored_heads"]


@dataclass(frozen=True)
class Names:
    """Where a policy keeps its audit trail."""

    schema: str
    table: str
    data_schema: str

    @classmethod
    def of(cls, policy: Policy) -> Names:
        return cls(policy.schema, policy.audit.table, policy.audit.data_schema)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def audit(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def chain(self) -> sql.Identifier:
        return sql.Identifier(self.data_schema, CHAIN_TABLE)


@dataclass(frozen=True)
class Block:
    """One sealed block: what it says about itself, its leaves and the head after it."""

    block: int
    first_position: int
    leaf_count: int
    audit_rows: int
    data_records: int
    lo_txid: int
    hi_txid: int
    columns: tuple[str, ...]
    leaves: bytes
    head: bytes
    sealed_at: str = ""

    def meta(
        self,
        leaf_count: int | None = None,
        audit_rows: int | None = None,
        data_records: int | None = None,
    ) -> bytes:
        """The block's meta, with counts of its own or (a proof's) recomputed ones."""
        return block_meta(
            self.block,
            self.first_position,
            self.leaf_count if leaf_count is None else leaf_count,
            self.audit_rows if audit_rows is None else audit_rows,
            self.data_records if data_records is None else data_records,
            self.lo_txid,
            self.hi_txid,
            self.columns,
        )


def _denied(names: Names, exc: psycopg.Error) -> AuditChainError:
    return AuditChainError(
        f"cannot read {names.data_schema}.{CHAIN_TABLE} ({exc.__class__.__name__}): the chain "
        "and the per-row data are private to the audit owner; connect as a superuser"
    )


def read_blocks(conn: psycopg.Connection[Any], names: Names, since: int = 0) -> list[Block] | None:
    """The sealed blocks from ``since`` on, in order; None when the chain table is gone."""
    exists = conn.execute(
        "SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (names.chain.as_string(None),)
    ).fetchone()
    if not exists or not exists[0]:
        return None
    try:
        with conn.cursor(binary=True) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT block, first_position, leaf_count, audit_rows, data_records,"
                    " lo_txid, hi_txid, columns, leaves, head,"
                    " pg_catalog.to_char(sealed_at AT TIME ZONE 'UTC',"
                    ' \'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\')'
                    " FROM {} WHERE block >= %s ORDER BY block"
                ).format(names.chain),
                (since,),
            )
            rows = cur.fetchall()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _denied(names, exc) from None
    return [
        Block(
            int(r[0]),
            int(r[1]),
            int(r[2]),
            int(r[3]),
            int(r[4]),
            int(r[5]),
            int(r[6]),
            tuple(r[7]),
            bytes(r[8]),
            bytes(r[9]),
            str(r[10]),
        )
        for r in rows
    ]


def stored_heads(blocks: Sequence[Block], start: bytes = GENESIS) -> Iterable[tuple[Block, bytes]]:
    """Each block with the head its *stored* meta and leaves give, chained from ``start``."""
    head = start
    for b in blocks:
        head = next_head(head, b.meta(), b.leaves)
        yield b, head
