"""Scopes of a statement being walked: the FROM items each level of a query can see."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from tsaccess.preflight.model import ALL, TableRef

__all__ = ["Scope", "Source", "alias_of", "ident"]


def ident(node: exp.Expression | str | None) -> str | None:
    """An identifier as PostgreSQL folds it: unquoted -> lower case."""
    if node is None:
        return None
    if isinstance(node, str):
        return node.lower()
    if isinstance(node, exp.Identifier):
        text = str(node.this)
        return text if node.quoted else text.lower()
    if isinstance(node, exp.Star):
        return ALL
    name = str(node.name)
    return name.lower() if name else None


@dataclass
class Source:
    alias: str
    table: TableRef | None  # None: CTE / subquery / function: columns unknown
    renames: tuple[str, ...] = ()
    """``t AS x(a, b)``: the new names of the table's first columns, in order."""


@dataclass
class Scope:
    sources: list[Source] = field(default_factory=list)
    parent: Scope | None = None

    def find(self, alias: str) -> Source | None:
        scope: Scope | None = self
        while scope is not None:
            for s in scope.sources:
                if s.alias == alias:
                    return s
            scope = scope.parent
        return None

    def find_table(self, ref: TableRef) -> Source | None:
        """The source that is ``ref`` under its own name (``schema.table.column``)."""
        scope: Scope | None = self
        while scope is not None:
            for s in scope.sources:
                if s.table == ref and s.alias == ref.name:
                    return s
            scope = scope.parent
        return None

    def renamed(self) -> bool:
        """Whether a source in reach has renamed columns (``t AS x(a, b)``)."""
        scope: Scope | None = self
        while scope is not None:
            if any(s.renames for s in scope.sources):
                return True
            scope = scope.parent
        return False

    def levels(self) -> tuple[tuple[TableRef | None, ...], ...]:
        out = []
        scope: Scope | None = self
        while scope is not None:
            out.append(tuple(s.table for s in scope.sources))
            scope = scope.parent
        return tuple(out)

    def aliases(self) -> tuple[tuple[str, ...], ...]:
        out = []
        scope: Scope | None = self
        while scope is not None:
            out.append(tuple(s.alias for s in scope.sources))
            scope = scope.parent
        return tuple(out)


def alias_of(node: exp.Expression | exp.Func) -> str | None:
    a = node.args.get("alias")
    return ident(a.this) if a is not None and a.this is not None else None
