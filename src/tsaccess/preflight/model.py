"""What pre-flight reasons about: the privileges a statement needs, in tsaccess's own types.

Produced by :mod:`tsaccess.preflight.analysis` (the only module that sees sqlglot's trees) and
consumed by :mod:`tsaccess.preflight.checker`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ALL", "Analysis", "ColNeed", "JoinNeed", "Need", "Priv", "TableRef"]

Priv = Literal["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]


@dataclass(frozen=True)
class TableRef:
    """A table as the statement names it: ``schema`` None when unqualified (resolved through
    the session's ``search_path`` at check time)."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


ALL = "*"  # marker: every column of the table


@dataclass(frozen=True)
class Need:
    """A privilege on a table: ``columns`` None = table or any column; ``(ALL,)`` = every
    column; ``first_n`` = the first N columns (INSERT without a column list)."""

    privilege: Priv
    table: TableRef
    columns: frozenset[str] | None = None
    first_n: int = 0
    positions: tuple[int, ...] = ()
    """Columns by position (0: the first), for columns renamed by ``t AS x(a, b)``."""


@dataclass(frozen=True)
class ColNeed:
    """An unqualified column, attributed at check time to the innermost source that has it."""

    privilege: Priv
    column: str
    levels: tuple[tuple[TableRef | None, ...], ...]
    """Candidate sources per scope level, innermost first; None = a source with unknown
    columns (CTE, subquery, function)."""
    aliases: tuple[tuple[str, ...], ...] = ()
    """The sources' names per level, as ``levels``: a name that is no column of any source is
    a whole-row reference to the source of that name (``SELECT t FROM t``, ``row_to_json(f)``),
    which needs the privilege on every column."""


@dataclass(frozen=True)
class JoinNeed:
    """``USING (c, ...)`` or ``NATURAL`` (``columns`` None: the columns both sides have): the
    join columns are read on both sides; resolved against the catalog at check time."""

    privilege: Priv
    left: tuple[TableRef | None, ...]
    """The sources joined so far (None: columns unknown)."""
    right: tuple[TableRef | None, ...]
    columns: frozenset[str] | None = None


@dataclass(frozen=True)
class Analysis:
    """The result of :func:`tsaccess.preflight.analyze`: what a statement text needs, or why
    it is deferred to the server."""

    needs: tuple[Need | ColNeed | JoinNeed, ...] = ()
    """Every privilege the statements need."""
    deferred: str = ""
    """Why the analysis is not sure (then ``needs`` is empty and the server decides)."""
    statements: int = 1
    """How many statements the text holds."""
    caveats: tuple[str, ...] = ()
    """What the server checks that this analysis does not (function bodies...)."""
