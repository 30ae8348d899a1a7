"""FROM items and joins: the sources a scope reads, and the privileges naming them needs.

The bottom half of the scope walker (:mod:`~tsaccess.preflight.analysis.walk`):
:class:`SourceWalker` resolves tables, subqueries, functions, ``VALUES`` and joins into a
:class:`~tsaccess.preflight.analysis.scope.Scope`; the expressions and queries it meets on the
way are the walker's (:meth:`SourceWalker.query`, :meth:`SourceWalker.exprs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from tsaccess.preflight.analysis.scope import Scope as _Scope
from tsaccess.preflight.analysis.scope import Source as _Source
from tsaccess.preflight.analysis.scope import alias_of as _alias
from tsaccess.preflight.analysis.scope import ident as _ident
from tsaccess.preflight.model import ColNeed, JoinNeed, Need, ObjNeed, TableRef

__all__ = ["Defer", "QueryInfo", "SourceWalker"]


class Defer(Exception):
    """The analysis cannot be sure: the server decides."""


_Defer = Defer


@dataclass(frozen=True)
class QueryInfo:
    """What a nested query shows its parent: the tables of its FROM lists (a locking clause
    of the parent reaches them) and its output column names (None: not all known)."""

    tables: tuple[TableRef, ...] = ()
    columns: tuple[str, ...] | None = None


class SourceWalker:
    """Collects what the FROM items and joins of a statement need (``needs``)."""

    def __init__(self) -> None:
        self.needs: list[Need | ColNeed | JoinNeed | ObjNeed] = []
        self.caveats: set[str] = set()
        self.ghost = 0
        """> 0 while walking what the server folds away (``false AND (SELECT ...)``)."""
        self.cte_columns: dict[str, tuple[str, ...] | None] = {}

    def query(self, node: exp.Expression, outer: _Scope | None, ctes: frozenset[str]) -> QueryInfo:
        """A nested query, analysed as a scope seeing ``outer`` (the walker's)."""
        raise NotImplementedError

    def exprs(self, node: exp.Expression | None, scope: _Scope, ctes: frozenset[str]) -> None:
        """The columns an expression tree reads (the walker's)."""
        raise NotImplementedError

    def table_ref(self, t: exp.Table, ctes: frozenset[str]) -> TableRef | None:
        """Resolve a FROM item to a physical table reference (None for a CTE)."""
        if not isinstance(t.this, exp.Identifier):
            raise _Defer("table function or unusual FROM item")
        if t.args.get("catalog") is not None:
            raise _Defer("three-part name")
        name = _ident(t.this) or ""
        if not name:  # sqlglot reads a string constant where a name belongs ("FROM 'x'")
            raise _Defer("zero-length name (a string where a table name belongs)")
        schema = _ident(t.args.get("db")) if t.args.get("db") is not None else None
        if schema is None and name in ctes:
            return None
        return TableRef(schema, name)

    def add_sources(
        self, node: exp.Expression, scope: _Scope, ctes: frozenset[str], parent: _Scope | None
    ) -> None:
        """Add a FROM / JOIN item of ``node`` to ``scope`` (subqueries analysed with ``parent``;
        LATERAL subqueries and functions also see the items before them)."""
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Func | exp.Anonymous):
            self.function_source(node.this, _alias(node) or "", scope, ctes, node)
        elif isinstance(node, exp.Table) and node.args.get("rows_from"):
            for item in node.args["rows_from"]:  # ROWS FROM (f(...), g(...)): read the args
                self.exprs(item, scope, ctes)
            scope.sources.append(_Source(_alias(node) or "", None))
        elif isinstance(node, exp.Table):
            ref = self.table_ref(node, ctes)
            alias = _alias(node) or _ident(node.this)
            renames: tuple[str, ...] = ()
            columns: tuple[str, ...] | None = None
            has_list = node.args.get("alias") is not None and node.args["alias"].columns
            if has_list:
                renames = tuple(_ident(c) or "" for c in node.args["alias"].columns)
            if ref is None:  # a CTE: its columns when its select list names them all
                columns = None if has_list else self.cte_columns.get(_ident(node.this) or "")
                renames = ()
            scope.sources.append(_Source(alias or node.alias_or_name, ref, renames, columns))
            if ref is not None and not scope.ghost:
                self.needs.append(Need("SELECT", ref))
            elif ref is not None and ref.schema is not None:  # folded away: looked up only
                self.needs.append(ObjNeed("schema", "USAGE", ref.schema))
            if node.args.get("joins"):  # a parenthesized join tree: its items join the scope
                for j in node.args["joins"]:
                    cond = self.join(j, scope, ctes, parent, len(scope.sources) - 1)
                    if cond is not None:
                        self.exprs(cond, scope, ctes)
        elif isinstance(node, exp.Lateral):
            inner = node.this
            if isinstance(inner, exp.Subquery):
                info = self.query(inner.this, scope, ctes)  # sees the FROM items before it
                scope.sources.append(self._derived(node, info))
            elif isinstance(inner, exp.Func | exp.Anonymous):
                self.function_source(inner, _alias(node) or _alias(inner) or "", scope, ctes, node)
            else:
                raise _Defer(f"unsupported LATERAL item {type(inner).__name__}")
        elif isinstance(node, exp.Unnest):
            self.function_source(node, _alias(node) or "", scope, ctes, node)
        elif (
            isinstance(node, exp.Subquery)
            and isinstance(node.this, exp.Table)
            and node.this.args.get("joins")
            and node.args.get("alias") is None
        ):  # (a JOIN b ON ...)
            self.add_sources(node.this, scope, ctes, parent)
        elif isinstance(node, exp.Subquery):
            if node.args.get("lateral"):
                raise _Defer("LATERAL subquery")
            info = self.query(node.this, parent, ctes)
            scope.sources.append(self._derived(node, info))
        elif isinstance(node, exp.Values):
            alias = node.args.get("alias")
            first = node.expressions[0] if node.expressions else None
            width = len(first.expressions) if isinstance(first, exp.Tuple) else 1
            named = [_ident(c) or "" for c in alias.columns] if alias is not None else []
            columns = (*named, *(f"column{k + 1}" for k in range(len(named), width)))
            scope.sources.append(_Source(node.alias_or_name.lower(), None, columns=columns))
            for e in node.expressions:
                self.exprs(e, parent or _Scope(), ctes)
        else:
            raise _Defer(f"unsupported FROM item {type(node).__name__}")

    @staticmethod
    def _derived(node: exp.Expression, info: QueryInfo) -> _Source:
        """A subquery in FROM: its known output columns (renamed by an alias list)."""
        columns = info.columns
        a = node.args.get("alias")
        if columns is not None and a is not None and a.columns:
            names = tuple(_ident(c) or "" for c in a.columns)
            columns = names + columns[len(names) :] if len(names) <= len(columns) else None
        return _Source(_alias(node) or "", None, columns=columns, tables=info.tables)

    def function_source(
        self,
        fn: exp.Expression | exp.Func,
        alias: str,
        scope: _Scope,
        ctes: frozenset[str],
        holder: exp.Expression | None = None,
    ) -> None:
        """A function in FROM: its arguments are read (it may see the items before it); its
        columns are unknown; its body is the server's to check."""
        args: list[Any] = list(fn.iter_expressions())
        for arg in args:
            if not isinstance(arg, exp.TableAlias):
                self.exprs(arg, scope, ctes)
        scope.sources.append(_Source(alias, None))

    def from_joins(
        self, node: exp.Expression, scope: _Scope, ctes: frozenset[str], outer: _Scope | None
    ) -> list[exp.Expression]:
        """Sources of FROM and JOINs; returns the join conditions to analyse in ``scope``."""
        conds: list[exp.Expression] = []
        frm = node.args.get("from_") or node.args.get("from")
        group = len(scope.sources)  # where the current join tree starts (commas restart it)
        if frm is not None:
            for item in [frm.this, *frm.expressions]:
                group = len(scope.sources)
                self.add_sources(item, scope, ctes, outer)
        for j in node.args.get("joins") or []:
            if not any(j.args.get(k) for k in ("kind", "side", "on", "using", "method")):
                group = len(scope.sources)  # a comma starts a new join tree
            cond = self.join(j, scope, ctes, outer, group)
            if cond is not None:
                conds.append(cond)
        return conds

    def join(
        self,
        j: exp.Expression,
        scope: _Scope,
        ctes: frozenset[str],
        outer: _Scope | None,
        group: int,
    ) -> exp.Expression | None:
        """One JOIN: its item joins ``scope``; ``group``: where its join tree starts. Returns
        its ON condition (to analyse in ``scope``)."""
        method = str(j.args.get("method") or "").upper()
        if method and method != "NATURAL":
            raise _Defer(f"{method} JOIN")
        before = len(scope.sources)
        self.add_sources(j.this, scope, ctes, outer)
        left = scope.sources[group:before]
        right = scope.sources[before:]
        using = [c for c in (_ident(u) for u in j.args.get("using") or []) if c]
        if (method == "NATURAL" or using) and not scope.ghost:
            self.needs.append(
                JoinNeed(
                    "SELECT",
                    tuple(s.ref() for s in left),
                    tuple(s.ref() for s in right),
                    frozenset(using) if method != "NATURAL" else None,
                )
            )
        on = j.args.get("on")
        return on if isinstance(on, exp.Expression) else None
