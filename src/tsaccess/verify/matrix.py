"""The access matrix as data: one :class:`Cell` per user, object and privilege, and the
:class:`AccessMatrix` of them, shown as text, JSON, a pandas frame or HTML.

:func:`tsaccess.verify.verify` fills it (and re-exports both classes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tsaccess._render import html_table, text_table
from tsaccess.client.tls import TlsStatus
from tsaccess.policy import TABLE_PRIVILEGES

__all__ = [
    "DATABASE_OBJECT",
    "LEGEND",
    "ROUTINES_OBJECT",
    "SCHEMA_OBJECT",
    "UNTRIED_DETAIL",
    "AccessMatrix",
    "Cell",
]

UNTRIED_DETAIL = "no password available for this user"
LEGEND = (
    "allowed/denied: what happened when the user tried it; ?: not tried; "
    "!!: the policy, the catalog and the try disagree"
)
DATABASE_OBJECT = "<database>"
SCHEMA_OBJECT = "<schema>"
ROUTINES_OBJECT = "<timescaledb routines>"
"""EXECUTE on any TimescaleDB routine revoked from PUBLIC (:mod:`tsaccess.verify.routines`)."""


@dataclass(frozen=True)
class Cell:
    user: str
    object: str
    """A managed table, ``<database>`` (CONNECT), ``<schema>`` (CREATE) or
    ``<timescaledb routines>`` (EXECUTE)."""
    privilege: str
    expected: bool
    catalog: bool
    actual: bool | None
    """None when it could not be tried (no password for the user)."""
    detail: str = ""
    """The server's answer when the try failed (SQLSTATE and message)."""
    error: bool = False
    """The try ended in an error that says nothing about the privilege (lost connection, lock
    or statement timeout...): ``actual`` is None and the matrix is not ok."""

    @property
    def ok(self) -> bool:
        return not self.error and self.expected == self.catalog == self.actual

    @property
    def untried(self) -> bool:
        """Not tried (no password for the user) and nothing known disagrees: policy and
        catalog agree, the try is missing. Neither proved nor a disagreement."""
        return (
            self.actual is None
            and not self.error
            and self.detail == UNTRIED_DETAIL
            and self.expected == self.catalog
        )

    @property
    def state(self) -> str:
        """``agree``, ``disagree``, ``untried`` or ``error``."""
        if self.error:
            return "error"
        if self.untried:
            return "untried"
        return "agree" if self.ok else "disagree"


@dataclass(frozen=True)
class AccessMatrix:
    database: str
    schema: str
    cells: tuple[Cell, ...]
    tls: Mapping[str, TlsStatus | None]
    read_only: bool = False
    """Checked on a hot standby: read-side cells only (writes need the primary)."""
    routines: tuple[Cell, ...] = ()
    """Per user: EXECUTE on the TimescaleDB routines revoked from PUBLIC (object
    :data:`ROUTINES_OBJECT`), a section of its own next to the table cells."""

    @property
    def _all(self) -> tuple[Cell, ...]:
        return self.cells + self.routines

    @property
    def ok(self) -> bool:
        """Every check was tried and agrees: the database enforces exactly the policy."""
        return all(c.ok for c in self._all)

    @property
    def disagreements(self) -> tuple[Cell, ...]:
        """Cells that are not ok (a disagreement, or a try that ended in an error); cells not
        tried for want of a password are not among them (:attr:`untried`)."""
        return tuple(c for c in self._all if not c.ok and not c.untried)

    @property
    def untried(self) -> tuple[Cell, ...]:
        """Cells not tried for want of the user's password (see :attr:`Cell.untried`)."""
        return tuple(c for c in self._all if c.state == "untried")

    @property
    def complete(self) -> bool:
        """Every check was tried (no untried cell, no error)."""
        return not self.untried and not self.errors

    @property
    def verdict(self) -> str:
        """``agree`` (all tried and agreeing), ``disagree`` (some disagree), ``incomplete``
        (nothing disagrees, some were not tried) or ``error`` (some tries ended in an error)."""
        if self.errors:
            return "error"
        if any(c.state == "disagree" for c in self._all):
            return "disagree"
        return "incomplete" if self.untried else "agree"

    @property
    def errors(self) -> tuple[Cell, ...]:
        """Cells whose try failed for a reason other than privileges (nothing was proved)."""
        return tuple(c for c in self._all if c.error)

    def cell(self, user: str, obj: str, privilege: str) -> Cell:
        return next(
            c for c in self._all if (c.user, c.object, c.privilege) == (user, obj, privilege)
        )

    def _grid(self) -> tuple[list[str], list[list[str]], list[list[str]]]:
        headers = ["user", "object", *TABLE_PRIVILEGES, "TLS"]
        rows: list[list[str]] = []
        classes: list[list[str]] = []
        users = list(dict.fromkeys(c.user for c in self._all))
        objects = list(dict.fromkeys(c.object for c in self._all))
        index = {(c.user, c.object, c.privilege): c for c in self._all}
        for u in users:
            for o in objects:
                row, cls = [u, o], ["", ""]
                special = {
                    DATABASE_OBJECT: "CONNECT",
                    SCHEMA_OBJECT: "CREATE",
                    ROUTINES_OBJECT: "EXECUTE",
                }.get(o)
                for p in TABLE_PRIVILEGES:
                    # CONNECT / CREATE are shown in the first column of their object's row
                    key = (u, o, special) if special and p == "SELECT" else (u, o, p)
                    c = index.get(key)
                    if c is None:
                        row.append("")
                        cls.append("")
                        continue
                    mark = (
                        "ERROR"
                        if c.error
                        else "allowed"
                        if c.actual
                        else "denied"
                        if c.actual is False
                        else "?"
                    )
                    row.append(mark if c.ok else f"{mark} !!")
                    cls.append("ok" if c.ok else "mismatch")
                tls = self.tls.get(u)
                row.append(str(tls) if o == objects[0] and tls else "")
                cls.append("")
                rows.append(row)
                classes.append(cls)
        return headers, rows, classes

    def to_text(self) -> str:
        """An aligned table; ``!!`` marks a cell where policy, catalog and reality disagree."""
        headers, rows, _ = self._grid()
        pretty = [
            [
                r[0],
                r[1]
                .replace(DATABASE_OBJECT, "database (CONNECT)")
                .replace(SCHEMA_OBJECT, f"schema {self.schema} (CREATE)")
                .replace(ROUTINES_OBJECT, "TimescaleDB routines revoked from PUBLIC (EXECUTE)"),
                *r[2:],
            ]
            for r in rows
        ]
        out = [text_table(headers, pretty), "", LEGEND]
        bad = self.disagreements
        untried = self.untried
        if untried:
            out.append(
                f"\n{len(self._all)} checks, {len(bad)} disagreement(s), {len(untried)} not "
                "tried: incomplete, "
                + ("nothing proved for those" if not bad else "and some disagree")
            )
        else:
            out.append(
                f"\n{len(self._all)} checks, {len(bad)} disagreement(s)"
                + ("" if bad or self.errors else ": the database enforces exactly the policy")
            )
        if self.read_only:
            out.append(
                "read side only (hot standby): SELECT and CONNECT were tried; run verify "
                "against the primary for the write side"
            )
        if untried:
            users = sorted({c.user for c in untried})
            out.append(
                f"  ? {len(untried)} check(s) not tried: no password for "
                f"{', '.join(users)}. Set TSACCESS_PASSWORD_<USER> or give --passwords-file "
                "(the file apply --generate-passwords wrote) to try them"
            )
        if self.errors:
            out.append(
                f"{len(self.errors)} check(s) ended in an error, not in an answer: nothing is "
                "proved for them; fix the cause and run verify again"
            )
        for c in bad:
            if c.error:
                out.append(f"  !! {c.user} {c.privilege} on {c.object}: error ({c.detail})")
                continue
            out.append(
                f"  !! {c.user} {c.privilege} on {c.object}: policy "
                f"{'allows' if c.expected else 'denies'}, catalog "
                f"{'allows' if c.catalog else 'denies'}, actual "
                f"{'allowed' if c.actual else 'denied' if c.actual is False else 'not tried'}"
                + (f" ({c.detail})" if c.detail else "")
            )
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "schema": self.schema,
            "ok": self.ok,
            "read_only": self.read_only,
            "verdict": self.verdict,
            "complete": self.complete,
            "disagreements": len(self.disagreements),
            "untried": len(self.untried),
            "errors": len(self.errors),
            "tls": {u: (asdict(t) if t else None) for u, t in self.tls.items()},
            "cells": [{**asdict(c), "ok": c.ok, "state": c.state} for c in self.cells],
            "routines": [{**asdict(c), "ok": c.ok, "state": c.state} for c in self.routines],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def to_pandas(self) -> Any:
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install 'tsaccess[pandas]'") from None
        return pd.DataFrame([{**asdict(c), "ok": c.ok} for c in self._all])

    def _repr_html_(self) -> str:
        headers, rows, classes = self._grid()
        style = (
            "<style>table.tsaccess td.ok{background:#e8f5e9}"
            "table.tsaccess td.mismatch{background:#ffcdd2;font-weight:bold}</style>"
        )
        verdict = "OK" if self.ok else f"{len(self.disagreements)} disagreement(s)"
        if self.untried:
            verdict += f", {len(self.untried)} not tried (incomplete)"
        return f"{style}<p><b>Access matrix for {self.database}</b>: {verdict}</p>" + html_table(
            headers, rows, classes=classes
        )
