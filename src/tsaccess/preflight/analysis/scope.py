"""Scopes of a statement being walked: the FROM items each level of a query can see, and the
CTEs a statement refers to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from tsaccess.preflight.model import ALL, Derived, Renamed, SourceRef, TableRef

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
    table: TableRef | None  # None: CTE / subquery / function
    renames: tuple[str, ...] = ()
    """``t AS x(a, b)``: the new names of the table's first columns, in order."""
    columns: tuple[str, ...] | None = None
    """The output columns of a source that is no table, when known (``VALUES``, a subquery
    whose select list names every column)."""
    tables: tuple[TableRef, ...] = ()
    """For a subquery: the tables of its FROM lists (a locking clause reaches them)."""

    def ref(self) -> SourceRef:
        if self.table is not None:
            return Renamed(self.table, self.renames) if self.renames else self.table
        return Derived(frozenset(self.columns)) if self.columns is not None else None


@dataclass
class Scope:
    sources: list[Source] = field(default_factory=list)
    parent: Scope | None = None
    ghost: bool = False
    """A query the server folds away (under ``false AND``...): its tables are never checked."""

    def find(self, alias: str) -> Source | None:
        found = self.find_with_scope(alias)
        return found[0] if found else None

    def find_with_scope(self, alias: str) -> tuple[Source, Scope] | None:
        scope: Scope | None = self
        while scope is not None:
            for s in scope.sources:
                if s.alias == alias:
                    return s, scope
            scope = scope.parent
        return None

    def find_table(self, ref: TableRef) -> tuple[Source, Scope] | None:
        """The source that is ``ref`` under its own name (``schema.table.column``): named with
        that schema, or unqualified (the server then requires it to be that table)."""
        scope: Scope | None = self
        while scope is not None:
            for s in scope.sources:
                if (
                    s.table is not None
                    and s.alias == ref.name
                    and s.table.name == ref.name
                    and s.table.schema in (ref.schema, None)
                ):
                    return s, scope
            scope = scope.parent
        return None

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

    def levels(self, column: str | None = None) -> tuple[tuple[SourceRef, ...], ...]:
        return tuple(tuple(s.ref() for s in level) for level in self._may_have(column))

    def aliases(self, column: str | None = None) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(s.alias for s in level) for level in self._may_have(column))

    def ghost_levels(self) -> int:
        """How many of the innermost levels are folded away."""
        n = 0
        scope: Scope | None = self
        while scope is not None and scope.ghost:
            n += 1
            scope = scope.parent
        return n


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
    (a CTE nobody refers to is not planned: PostgreSQL checks no privilege for it). A CTE
    body sees the CTEs before it (all of them with ``RECURSIVE``). Any name that cannot be
    told apart counts as used."""
    recursive = bool(w.args.get("recursive"))
    order = [ident(c.args["alias"].this) for c in w.expressions if c.args.get("alias")]
    bodies = {ident(c.args["alias"].this): c.this for c in w.expressions if c.args.get("alias")}
    used: set[str | None] = set(bodies) & _tables_named(node, w)
    todo = list(used)
    while todo:
        name = todo.pop()
        body = bodies.get(name)
        if body is None:
            continue
        visible = set(bodies) if recursive else set(order[: order.index(name)])
        for ref in _tables_named(body, None) & visible:
            if ref not in used:
                used.add(ref)
                todo.append(ref)
    return used
