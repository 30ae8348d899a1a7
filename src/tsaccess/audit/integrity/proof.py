"""Prove the audit trail against signed checkpoints: recompute the chain from the rows.

Every leaf is recomputed here from the rows' text (:mod:`~tsaccess.audit.integrity.encoding`),
block by block, and the head after each checkpoint's block must be the signed one. Where a
checkpoint fails, the stored leaves (``tsaccess_chain``) say where and how — once they are shown
authentic (they give the signed heads themselves): the first position whose leaf differs, and
whether the row there was changed, is missing, was inserted, moved (reordered), or whether the
trail simply ends (truncated). A stored chain that was itself rewritten only narrows the break
to the checkpoint it fails.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from tsaccess.audit.integrity.chain import Block, Names, read_blocks
from tsaccess.audit.integrity.checkpoint import (
    Checkpoint,
    database_identity,
    read_checkpoint,
    read_checkpoints,
)
from tsaccess.audit.integrity.encoding import (
    GENESIS,
    LEAF_SIZE,
    SETTINGS,
    group_leaf,
    next_head,
)
from tsaccess.audit.integrity.keys import VerifyKey, load_verify_key
from tsaccess.audit.integrity.schema import DATA_TABLES_SQL, data_record_sql
from tsaccess.audit.integrity.verdict import WHAT, Break, Ident, Kind, Proof, classify, describe
from tsaccess.errors import AuditChainError

if TYPE_CHECKING:
    from tsaccess.policy import Policy

__all__ = ["prove"]


def _block_sql(names: Names, block: Block, columns_now: set[str], tables: Sequence[str]) -> Any:
    cols = [
        sql.SQL("a.{}").format(sql.Identifier(c)) if c in columns_now else sql.SQL("NULL")
        for c in block.columns
    ]
    parts = [
        sql.SQL(
            "SELECT 0 AS k, a.txid, a.id, ''::text AS tbl, NULL::text AS et, ROW({})::text AS t"
            " FROM {} a WHERE a.txid >= %(lo)s AND a.txid < %(hi)s"
        ).format(sql.SQL(", ").join(cols), names.audit)
    ]
    for t in tables:
        parts.append(
            sql.SQL(
                "SELECT 1, a.txid, a.id, {}, a.event_time::text, " + data_record_sql("d") + ""
                " FROM {} d JOIN {} a ON a.id = d.audit_id AND a.event_time = d.event_time"
                " WHERE a.txid >= %(lo)s AND a.txid < %(hi)s"
            ).format(sql.Literal(t), sql.Identifier(names.data_schema, t), names.audit)
        )
    return sql.SQL('SELECT * FROM ({}) u ORDER BY u.txid, u.id, u.k, u.tbl COLLATE "C"').format(
        sql.SQL(" UNION ALL ").join(parts)
    )


class _Leaves:
    """A block's leaves recomputed from its rows (ordered by txid, id, kind, table)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.idents: list[Ident] = []
        self.rows = 0
        self.records = 0
        self._key: tuple[int, int] | None = None
        self._own: list[bytes] = []
        self._groups: dict[tuple[str, str], list[bytes]] = {}

    def feed(self, rows: Sequence[tuple[Any, ...]]) -> None:
        sha = hashlib.sha256
        key, own, groups = self._key, self._own, self._groups
        group: list[bytes] = []
        gkey: tuple[str, str] | None = None
        for k, txid, audit_id, table, et, text in rows:
            if key is None or audit_id != key[1] or txid != key[0]:
                self.flush()
                key = self._key = (txid, audit_id)
                own, groups, gkey = self._own, self._groups, None
            if k == 0:
                own.append(sha(b"\x00" + text.encode()).digest())  # audit_leaf(), inline
            else:  # record_hash(), inline
                if (table, et) != gkey:
                    gkey = (table, et)
                    group = groups.setdefault(gkey, [])
                group.append(sha(text.encode()).digest())

    def flush(self) -> None:
        key, own, groups = self._key, self._own, self._groups
        if key is None:
            return
        self.rows += len(own)
        if len(own) == 1 and not groups:  # most rows: one audit row, no per-row data
            self.data += own[0]
            self.idents.append((key[0], key[1], ""))
        else:
            entries = [(0, b"", leaf, "") for leaf in own]
            for (table, _), hashes in groups.items():
                self.records += len(hashes)
                entries.append((1, table.encode(), group_leaf(table, key[1], hashes), table))
            for _, _, leaf, table in sorted(entries):
                self.data += leaf
                self.idents.append((key[0], key[1], table))
        self._key, self._own, self._groups = None, [], {}


@dataclass
class _Walk:
    """The recomputation's state across blocks."""

    stored: bytes
    """Authentic stored leaves from the first proved position on."""
    recomputed: bytearray = field(default_factory=bytearray)
    first: tuple[int, Ident | None, Ident | None] | None = None
    """(relative index, previous identity, identity) of the first leaf unlike the stored one."""
    last: Ident | None = None

    def add(self, block: _Leaves) -> None:
        at = len(self.recomputed)
        seen = self.stored[at : at + len(block.data)]
        if self.first is None and seen != block.data[: len(seen)]:
            i = (
                next(
                    i
                    for i in range(0, len(seen), LEAF_SIZE)
                    if seen[i : i + LEAF_SIZE] != block.data[i : i + LEAF_SIZE]
                )
                // LEAF_SIZE
            )
            before = block.idents[i - 1] if i else self.last
            self.first = (at // LEAF_SIZE + i, before, block.idents[i])
        self.recomputed += block.data
        if block.idents:
            self.last = block.idents[-1]


def _recompute(
    conn: psycopg.Connection[Any],
    names: Names,
    block: Block,
    columns_now: set[str] | None,
    tables: Sequence[str],
    walk: _Walk,
) -> _Leaves:
    """The block's leaves from the rows."""
    out = _Leaves()
    if columns_now is not None:  # else the audit table is gone
        with conn.cursor(name=f"tsaccess_prove_{block.block}") as cur:
            cur.execute(
                _block_sql(names, block, columns_now, tables),
                {"lo": block.lo_txid, "hi": block.hi_txid},
            )
            while rows := cur.fetchmany(20_000):
                out.feed(rows)
        out.flush()
    walk.add(out)
    return out


def _from_checkpoint(cp: Checkpoint) -> Block:
    return Block(
        cp.block,
        cp.first_position,
        cp.leaf_count,
        cp.audit_rows,
        cp.data_records,
        cp.lo_txid,
        cp.hi_txid,
        cp.columns,
        b"",
        bytes.fromhex(cp.head),
        cp.sealed_at,
    )


def prove(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    checkpoints: str | os.PathLike[str] | Sequence[Checkpoint],
    public_key: VerifyKey | str | os.PathLike[str],
    start: str | os.PathLike[str] | None = None,
) -> Proof:
    """Recompute the chain from the rows and check it against every checkpoint.

    Args:
        conn: a superuser connection to the database (it reads the private per-row data).
        checkpoints: the directory the seals wrote (or checkpoints already read).
        public_key: ``KEY.pub`` (or a :class:`VerifyKey`).
        start: prove only what was sealed after this checkpoint (a period; rows before it may
            have been removed by retention): its signed head is the starting point.

    Raises:
        AuditChainError: no verdict — a checkpoint is unreadable, changed, signed by another
            key, or of another database or audit table.
    """
    key = public_key if isinstance(public_key, VerifyKey) else load_verify_key(public_key)
    if isinstance(checkpoints, (str, os.PathLike)):
        cps = read_checkpoints(checkpoints, key)
        source = str(checkpoints)
    else:
        cps, source = list(checkpoints), "the checkpoints given"
    first = read_checkpoint(start, key) if start is not None else None
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise AuditChainError("prove needs a connection outside a transaction")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for name, value in (*SETTINGS, ("work_mem", "64MB")):  # a block sorts in memory
            conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, value))
        return _prove(conn, Names.of(policy), cps, first, source)


def _prove(
    conn: psycopg.Connection[Any],
    names: Names,
    cps: list[Checkpoint],
    first: Checkpoint | None,
    source: str,
) -> Proof:
    identity = database_identity(conn)
    for cp in [*cps, *([first] if first else [])]:
        if cp.identity != identity:
            raise AuditChainError(
                f"{cp.name} is of {cp.identity.describe()}, not of this database "
                f"{identity.describe()}"
            )
        if cp.table != names.qualified or cp.data_schema != names.data_schema:
            raise AuditChainError(
                f"{cp.name} seals {cp.table} (data in {cp.data_schema}), not {names.qualified}"
                f" (data in {names.data_schema}): prove it with its own policy"
            )
    after = first.block if first else -1
    cps = [c for c in cps if c.block > after]
    if not cps:
        raise AuditChainError(f"no checkpoint in {source} to prove (seal first)")
    block0 = first.block + 1 if first else 0
    head = bytes.fromhex(first.head) if first else GENESIS
    pos0 = first.position if first else 0
    last_block = max(c.block for c in cps)
    by_block: dict[int, list[Checkpoint]] = {}
    for c in cps:
        by_block.setdefault(c.block, []).append(c)
    stored = read_blocks(conn, names, since=block0) or []
    blocks = {b.block: b for b in stored if b.block <= last_block}
    # the stored leaves are authentic as far as they give the signed heads
    trusted, pending, h, expect = bytearray(), bytearray(), head, pos0
    for n in range(block0, last_block + 1):
        b = blocks.get(n)
        if b is None or b.first_position != expect or len(b.leaves) != b.leaf_count * LEAF_SIZE:
            break  # a gap in the stored chain: nothing after it is authentic
        h = next_head(h, b.meta(), b.leaves)
        pending += b.leaves
        expect += b.leaf_count
        marks = by_block.get(n, [])
        if any(c.head != h.hex() for c in marks):
            break
        if marks:
            trusted += pending
            pending = bytearray()
    reg = conn.execute(
        "SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (names.audit.as_string(None),)
    ).fetchone()
    columns_now: set[str] | None = None
    if reg and reg[0]:
        columns_now = {
            r[0]
            for r in conn.execute(
                "SELECT attname::text FROM pg_catalog.pg_attribute WHERE attrelid = %s::regclass"
                " AND attnum > 0 AND NOT attisdropped",
                (names.audit.as_string(None),),
            )
        }
    tables = [
        r[0]
        for r in conn.execute(
            sql.SQL(DATA_TABLES_SQL.format(schema="{}")).format(sql.Literal(names.data_schema))
        )
    ]
    walk = _Walk(bytes(trusted))
    heads: dict[int, bytes] = {}
    positions: dict[int, int] = {}
    breaks: list[Break] = []
    position = pos0
    for n in range(block0, last_block + 1):
        block = blocks.get(n) or (_from_checkpoint(by_block[n][0]) if n in by_block else None)
        if block is None:
            breaks.append(
                Break(
                    "missing" if any(b > n for b in blocks) else "truncated",
                    position,
                    f"block {n} is gone from {names.data_schema}.tsaccess_chain: the blocks "
                    "after it cannot be followed",
                )
            )
            break
        got = _recompute(conn, names, block, columns_now, tables, walk)
        count = len(got.data) // LEAF_SIZE
        head = next_head(head, block.meta(count, got.rows, got.records), bytes(got.data))
        heads[n] = head
        position += count
        positions[n] = position
    failed = [c for c in cps if heads.get(c.block, b"").hex() != c.head]
    found = classify(walk.stored, bytes(walk.recomputed))
    if found is not None and failed:
        i, kind = found
        at = walk.first if walk.first and walk.first[0] == i else (i, walk.last, None)
        fails = next((c.name for c in cps if c.position > pos0 + i), None)
        breaks.insert(
            0,
            Break(
                kind,
                pos0 + i,
                WHAT[kind].format(prev=describe(at[1]), cur=describe(at[2])),
                fails,
            ),
        )
    elif failed and not breaks:  # the stored chain cannot tell: narrow it to the checkpoint
        c = failed[0]
        before = max(
            (x.position for x in cps if x.position < c.position and x not in failed), default=pos0
        )
        reached = positions.get(c.block, position)
        guess: Kind = "changed"
        if reached < c.position:
            guess = "truncated" if reached <= before else "missing"
        elif reached > c.position:
            guess = "inserted"
        breaks.append(
            Break(
                guess,
                before,
                f"between positions {before} and {c.position} the rows give {reached - before} "
                f"leaves, {c.position - before} were sealed; the chain table was changed too, "
                "so it cannot tell which",
                c.name,
            )
        )
    breaks += _strays(conn, names, tables, columns_now is not None, first)
    newest = max(cps, key=lambda c: c.block)
    later = (
        conn.execute(
            sql.SQL("SELECT pg_catalog.count(*) FROM {} WHERE txid >= %s").format(names.audit),
            (newest.hi_txid,),
        ).fetchone()
        if columns_now is not None
        else None
    )
    return Proof(
        intact=not failed and not breaks,
        checkpoints=tuple(c.name for c in cps),
        position=newest.position,
        rows=newest.rows,
        records=newest.records,
        after_last_checkpoint=int(later[0]) if later else 0,
        breaks=tuple(breaks),
        failed=tuple(c.name for c in failed),
    )


def _strays(
    conn: psycopg.Connection[Any],
    names: Names,
    tables: Sequence[str],
    audit_exists: bool,
    first: Checkpoint | None,
) -> list[Break]:
    """Rows no seal would ever take: audit rows without a transaction id, per-row records
    that belong to no audit row. No trigger writes either. After a start checkpoint, records
    older than the period (their audit rows may be gone by retention) are not judged."""
    out: list[Break] = []
    since: sql.Composable = sql.SQL("")
    if first is not None and audit_exists:
        since = sql.SQL(
            " AND d.event_time >= (SELECT pg_catalog.min(s.event_time) FROM {} s"
            " WHERE s.txid >= {})"
        ).format(names.audit, sql.Literal(first.hi_txid))
    if audit_exists:
        row = conn.execute(
            sql.SQL(
                "SELECT pg_catalog.count(*), pg_catalog.min(id) FROM {} WHERE txid IS NULL"
            ).format(names.audit)
        ).fetchone()
        if row and row[0]:
            out.append(
                Break(
                    "inserted",
                    None,
                    f"{row[0]} audit row(s) without a transaction id (the first: id {row[1]}); "
                    "no trigger writes such a row",
                )
            )
    for t in tables:
        probe = (
            sql.SQL(
                "SELECT pg_catalog.count(*) FROM {} d WHERE NOT EXISTS (SELECT FROM {} a"
                " WHERE a.id = d.audit_id AND a.event_time = d.event_time){}"
            ).format(sql.Identifier(names.data_schema, t), names.audit, since)
            if audit_exists
            else sql.SQL("SELECT pg_catalog.count(*) FROM {}").format(
                sql.Identifier(names.data_schema, t)
            )
        )
        row = conn.execute(probe).fetchone()
        if row and row[0]:
            out.append(
                Break(
                    "inserted",
                    None,
                    f"{row[0]} per-row record(s) in {names.data_schema}.{t} belong to no audit row",
                )
            )
    return out
