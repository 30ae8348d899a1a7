"""The verdict of a proof: where the trail breaks and how, and how a break is classified."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tsaccess.audit.integrity.encoding import LEAF_SIZE

__all__ = ["WHAT", "Break", "Ident", "Kind", "Proof", "classify", "describe"]

Kind = Literal["changed", "missing", "inserted", "reordered", "truncated"]
Ident = tuple[int, int, str]
"""(txid, audit id, data table or "") of a recomputed leaf."""


@dataclass(frozen=True)
class Break:
    """Where the trail no longer matches what was sealed (position None: outside the order)."""

    kind: Kind
    position: int | None
    detail: str
    checkpoint: str | None = None
    """The first checkpoint it fails, when known."""

    def to_text(self) -> str:
        where = "" if self.position is None else f" at position {self.position}"
        cp = f" (fails {self.checkpoint})" if self.checkpoint else ""
        return f"{self.kind}{where}: {self.detail}{cp}"


@dataclass(frozen=True)
class Proof:
    """The verdict: ``intact`` when every checkpoint's head was recomputed from the rows."""

    intact: bool
    checkpoints: tuple[str, ...]
    position: int
    """Positions proved: the newest checkpoint's."""
    rows: int
    records: int
    after_last_checkpoint: int
    """Audit rows newer than the newest checkpoint (not proved: seal again)."""
    breaks: tuple[Break, ...] = ()
    failed: tuple[str, ...] = field(default=())
    """Checkpoints whose head the rows no longer give."""

    @property
    def first_break(self) -> Break | None:
        return self.breaks[0] if self.breaks else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "checkpoints": list(self.checkpoints),
            "position": self.position,
            "rows": self.rows,
            "records": self.records,
            "after_last_checkpoint": self.after_last_checkpoint,
            "breaks": [
                {
                    "kind": b.kind,
                    "position": b.position,
                    "detail": b.detail,
                    "checkpoint": b.checkpoint,
                }
                for b in self.breaks
            ],
            "failed": list(self.failed),
        }

    def to_text(self) -> str:
        if self.intact:
            lines = [
                f"intact: {self.position} positions ({self.rows} audit rows, {self.records} "
                f"per-row records) match {len(self.checkpoints)} checkpoint(s)"
            ]
        else:
            lines = [f"TAMPERED: {len(self.failed)} of {len(self.checkpoints)} checkpoint(s) fail"]
            lines += [f"  {b.to_text()}" for b in self.breaks]
        if self.after_last_checkpoint:
            lines.append(
                f"not proved: {self.after_last_checkpoint} audit row(s) newer than the newest "
                "checkpoint (seal again)"
            )
        return "\n".join(lines)


def _contains(buf: bytes, leaf: bytes) -> bool:
    """Whether ``leaf`` is one of the 32-byte leaves concatenated in ``buf``."""
    i = buf.find(leaf)
    while i != -1 and i % LEAF_SIZE:
        i = buf.find(leaf, i + 1)
    return i != -1


def classify(stored: bytes, recomputed: bytes) -> tuple[int, Kind] | None:
    """The first position where two leaf sequences differ and what happened there.

    ``stored`` is authentic (it gives the signed heads); ``recomputed`` comes from the rows.
    None when ``recomputed`` starts with all of ``stored``.
    """
    n = min(len(stored), len(recomputed)) // LEAF_SIZE
    if stored[: n * LEAF_SIZE] == recomputed[: n * LEAF_SIZE]:  # the usual case, at C speed
        n = 0
    for i in range(n):
        a = stored[i * LEAF_SIZE : (i + 1) * LEAF_SIZE]
        b = recomputed[i * LEAF_SIZE : (i + 1) * LEAF_SIZE]
        if a == b:
            continue
        gone, new = not _contains(recomputed, a), not _contains(stored, b)
        if gone and new:
            return i, "changed"
        if gone:
            return i, "missing"
        if new:
            return i, "inserted"
        return i, "reordered"
    if len(recomputed) < len(stored):
        return len(recomputed) // LEAF_SIZE, "truncated"
    return None


def describe(ident: Ident | None) -> str:
    if ident is None:
        return "the start of the trail"
    txid, audit_id, table = ident
    if table:
        return f"the per-row data in {table} of audit row id {audit_id} (txid {txid})"
    return f"audit row id {audit_id} (txid {txid})"


WHAT = {
    "changed": "{cur} differs from what was sealed",
    "missing": "the row sealed here is gone (it came after {prev})",
    "inserted": "{cur} was not sealed here",
    "reordered": "{cur} was sealed at another position",
    "truncated": "the trail ends after {prev}; the rest of what was sealed is gone",
}
