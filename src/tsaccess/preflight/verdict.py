"""Pre-flight's answer for a statement text, in tsaccess's own types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tsaccess.errors import MissingPrivilege
from tsaccess.preflight.tables import Item

__all__ = ["Verdict", "merge"]


@dataclass(frozen=True)
class Verdict:
    """Pre-flight's answer for one statement text."""

    status: Literal["allowed", "denied", "deferred"]
    """``deferred``: the analysis cannot tell; the statement is sent and the server decides."""
    statement: str
    missing: tuple[MissingPrivilege, ...] = ()
    """For a denied statement: every privilege it lacks (confirmed by the server)."""
    reason: str = ""
    """For a deferred statement: why; for a denied one: the server's own refusal, when an
    ``EXPLAIN`` confirmed it."""
    generation: int = -1
    """The snapshot generation the verdict was computed with (cache validity)."""
    caveats: tuple[str, ...] = ()
    """For an allowed statement: what the server still checks on its own (view base tables,
    row-level security)."""

    @property
    def allowed(self) -> bool:
        return self.status != "denied"

    def __str__(self) -> str:
        if self.status == "allowed":
            extra = f" (the server still checks: {', '.join(self.caveats)})" if self.caveats else ""
            return "allowed: the session has every privilege this statement needs" + extra
        if self.status == "deferred":
            return f"undecided (deferred to the server): {self.reason}"
        return "denied: missing " + "; ".join(str(m) for m in self.missing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "caveats": list(self.caveats),
            "missing": [
                {"privilege": m.privilege, "object": m.object, "columns": list(m.columns)}
                for m in self.missing
            ],
        }


def merge(items: list[Item]) -> tuple[MissingPrivilege, ...]:
    merged: dict[tuple[str, str, str], list[str]] = {}
    for i in items:
        m = i.missing
        cols = merged.setdefault((m.privilege, m.object, m.kind), [])
        cols.extend(c for c in m.columns if c not in cols)
    return tuple(MissingPrivilege(p, o, tuple(c), k) for (p, o, k), c in merged.items())
