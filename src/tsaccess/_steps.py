"""One step of a plan: a SQL statement with a human summary (shared by bootstrap and audit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from psycopg import sql

Phase = Literal["schema", "security", "audit"]
AUDIT_ONLY: tuple[Phase, ...] = ("audit",)


@dataclass(frozen=True)
class Step:
    """A statement to run. ``secret`` steps carry a password verifier: shown redacted."""

    statement: sql.SQL | sql.Composed
    summary: str
    phase: Phase
    secret: bool = False
    psql: str | None = None
    """The statement as written for psql scripts when it differs (passwords as variables)."""

    def text(self, *, redact: bool = True) -> str:
        if self.secret and redact:
            return f"-- {self.summary} (statement not shown: it carries a password verifier)"
        return self.statement.as_string(None)
