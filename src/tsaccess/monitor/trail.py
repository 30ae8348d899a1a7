"""Counters read from the audit trail, and the audit chain's state.

The counters are counts of audit rows, so they survive an exporter restart: the first
collection counts the whole trail once; later ones count only the rows of transactions that
ended since (the audit table's ``txid`` index), like a seal does (``docs/audit-integrity.md``,
"Sealing follows commit order"): rows of transactions older than the oldest one still running
(``pg_snapshot_xmin``) are *settled* — visible now or never — and added once; the rows above
that bound are counted afresh each time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tsaccess.audit.integrity.schema import STATUS_FUNCTION
from tsaccess.audit.templates import DENIED_PER_SECOND
from tsaccess.policy import Policy

__all__ = ["AuditCounts", "ChainState", "TrailCounter", "chain_state"]

# what an audit row is, for the counters: DENIED rows have no table label (the client names the
# tables of a refused statement); the rate bound's row says the rest of a second was not
# recorded; a DROP CHUNK row was written by the retention job or by the DROP TABLE event trigger
_COUNT_SQL = """
SELECT CASE WHEN a.operation = 'DENIED' THEN '' ELSE coalesce(a.table_name, '') END,
       a.operation,
       CASE WHEN a.operation = 'DENIED' THEN a.username END,
       CASE WHEN a.operation = 'DENIED' AND a.description = 'more than ' || {limit}
                 || ' DENIED events of ' || a.username
                 || ' in this second: the others are not recorded' THEN 'unrecorded'
            WHEN a.operation = 'DROP CHUNK' AND a.description LIKE '%% by retention job %%'
              THEN 'retention'
            WHEN a.operation = 'DROP CHUNK' THEN 'drop_table'
            ELSE '' END,
       pg_catalog.count(*)
FROM {audit} a WHERE a.txid >= %s AND a.txid < %s
GROUP BY 1, 2, 3, 4
"""

_BOUND_SQL = "SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint"
_NO_END = 2**62


@dataclass
class AuditCounts:
    """Counts of audit rows, by what the exporter labels them with."""

    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(table, operation) -> rows."""
    denied: Counter[str] = field(default_factory=Counter)
    """login user -> DENIED rows (the rate bound's rows included)."""
    unrecorded: Counter[str] = field(default_factory=Counter)
    """login user -> seconds with more DENIED events than recorded."""
    drops: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(table, ``retention`` or ``drop_table``) -> DROP CHUNK rows."""

    def add(self, other: AuditCounts) -> AuditCounts:
        return AuditCounts(
            self.rows + other.rows,
            self.denied + other.denied,
            self.unrecorded + other.unrecorded,
            self.drops + other.drops,
        )


class TrailCounter:
    """The audit trail's counters for one policy, kept across collections."""

    def __init__(self, policy: Policy) -> None:
        self._sql = sql.SQL(_COUNT_SQL).format(
            limit=sql.Literal(DENIED_PER_SECOND),
            audit=sql.Identifier(policy.schema, policy.audit.table),
        )
        self._settled = AuditCounts()
        self._bound = 0

    def _count(self, conn: psycopg.Connection[Any], lo: int, hi: int) -> AuditCounts:
        out = AuditCounts()
        for table, op, user, kind, n in conn.execute(self._sql, (lo, hi)).fetchall():
            out.rows[str(table), str(op)] += n
            if op == "DENIED":
                out.denied[str(user)] += n
                if kind == "unrecorded":
                    out.unrecorded[str(user)] += n
            elif kind:
                out.drops[str(table), str(kind)] += n
        return out

    def read(self, conn: psycopg.Connection[Any]) -> AuditCounts:
        """Every audit row, counted: the settled ones once, the others afresh."""
        row = conn.execute(_BOUND_SQL).fetchone()
        bound = int(row[0]) if row else self._bound
        if bound > self._bound:
            self._settled = self._settled.add(self._count(conn, self._bound, bound))
            self._bound = bound
        return self._settled.add(self._count(conn, self._bound, _NO_END))


@dataclass(frozen=True)
class ChainState:
    """What the chain status function says (``tsaccess_audit_chain_status``)."""

    blocks: int
    linked: bool
    """Every block continues the one before (numbers, transaction ranges, positions)."""
    rows_present: bool
    """The blocks checked still have exactly the audit rows they sealed."""
    all_blocks: bool
    """Every sealed block was checked (else the oldest and the newest)."""
    last_seal: float | None
    """When the newest block was sealed (Unix time)."""
    unsealed_seconds: float
    """Age of the oldest committed row no block covers (0: none)."""

    @property
    def ok(self) -> bool:
        return self.linked and self.rows_present


def chain_state(
    conn: psycopg.Connection[Any], policy: Policy, *, all_blocks: bool
) -> ChainState | None:
    """The chain's state, or None when the database has no chain status function (a policy
    without an audit trail, or not applied since the chain came)."""
    fn = sql.Identifier(policy.schema, STATUS_FUNCTION)
    exists = conn.execute(
        "SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL",
        (fn.as_string(None) + "(boolean)",),
    ).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        sql.SQL(
            "SELECT s.blocks, s.linked, s.rows_present,"
            " pg_catalog.date_part('epoch', s.last_sealed),"
            " coalesce(pg_catalog.date_part('epoch',"
            "  pg_catalog.clock_timestamp() - s.oldest_unsealed), 0)"
            " FROM {}(%s) s"
        ).format(fn),
        (all_blocks,),
    ).fetchone()
    assert row is not None
    blocks, linked, present, last, unsealed = row
    return ChainState(
        int(blocks), bool(linked), bool(present), all_blocks, last, max(0.0, unsealed)
    )
