"""Scopes of a statement being walked: the FROM items each level of a query can see, and the
CTEs a statement refers to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from tsaccess.preflight.model import ALL, TableRef

__all__ = ["Scope", "Source", "alias_of", "ident", "used_ctes"]


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
    columns: tuple[str, ...] | None = None
    """The output columns of a source that is no table, when known (``VALUES``)."""


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

    def _may_have(self, column: str | None) -> list[list[Source]]:
        """The sources per level that may provide ``column`` (a source with known columns
        that lack it cannot)."""
        out = []
        scope: Scope | None = self
        while scope is not None:
            out.append(
                [
                    s
                    for s in scope.sources
                    if s.columns is None or column is None or column in s.columns
                ]
            )
            scope = scope.parent
        return out

    def levels(self, column: str | None = None) -> tuple[tuple[TableRef | None, ...], ...]:
        return tuple(tuple(s.table for s in level) for level in self._may_have(column))

    def aliases(self, column: str | None = None) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(s.alias for s in level) for level in self._may_have(column))


def alias_of(node: exp.Expression | exp.Func) -> str | None:
    a = node.args.get("alias")
    return ident(a.this) if a is not None and a.this is not None else None


def _tables_named(tree: exp.Expression, skip: exp.Expression | None) -> set[str]:
    """Unqualified table names in ``tree``, outside ``skip``."""
    out: set[str] = set()
    for t in tree.find_all(exp.Table):
        if t.args.get("db") is not None or not isinstance(t.this, exp.Identifier):
            continue
        p: Any = t
        while p is not None and p is not skip:
            p = p.parent
        if p is None:
            out.add(ident(t.this) or "")
    return out


def used_ctes(node: exp.Expression, w: exp.Expression) -> set[str | None]:
    """The CTEs of ``w`` that the statement refers to, directly or through referred CTEs
    (a CTE nobody refers to is not planned: PostgreSQL checks no privilege for it). Any name
    that cannot be told apart counts as used."""
    bodies = {ident(c.args["alias"].this): c.this for c in w.expressions if c.args.get("alias")}
    used: set[str | None] = set(bodies) & _tables_named(node, w)
    todo = list(used)
    while todo:
        body = bodies.get(todo.pop())
        for name in _tables_named(body, None) & set(bodies) if body is not None else ():
            if name not in used:
                used.add(name)
                todo.append(name)
    return used
