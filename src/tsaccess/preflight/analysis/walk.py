"""The scope walker: the privileges a query's expressions and nested queries need.

Scopes are resolved here rather than with ``sqlglot.optimizer.scope`` / ``qualify_columns``
(measured with sqlglot 30.30): without a schema of every table, ``qualify`` raises
``OptimizeError`` on ``SELECT a FROM t JOIN u ON t.id = u.id`` ("could not be resolved") and on
a correlated subquery ("missing source schemas"), and ``build_scope`` lists the sources but
leaves the same unqualified columns to attribute. Pre-flight loads column privileges only for
the tables a check needs, so an unqualified column becomes a
:class:`~tsaccess.preflight.model.ColNeed`, and ``USING`` / ``NATURAL`` a
:class:`~tsaccess.preflight.model.JoinNeed`, that the checker attributes against the catalog.

Constant folding: PostgreSQL 15 removes, before checking privileges, the subqueries of a branch
that can never be taken (``false AND EXISTS (...)``, ``CASE WHEN false THEN (SELECT ...)``,
``COALESCE(1, (SELECT ...))``): their tables are never checked, their outer references are
(:attr:`~tsaccess.preflight.analysis.scope.Scope.ghost`). An ``EXISTS`` or ``IN`` that is a
conjunct of a ``WHERE`` or ``ON`` condition may be turned into a join first: it stays checked.
Only the constants ``true``/``false`` are folded here (a number is no key of the cache).
"""

from __future__ import annotations

from sqlglot import exp

from tsaccess.preflight.analysis.calls import call_needs, set_config_effect
from tsaccess.preflight.analysis.scope import Scope as _Scope
from tsaccess.preflight.analysis.scope import ident as _ident
from tsaccess.preflight.analysis.scope import used_ctes as _used_ctes
from tsaccess.preflight.analysis.sources import Defer, QueryInfo, SourceWalker
from tsaccess.preflight.model import ALL, ColNeed, Effect, Need, Priv, TableRef

__all__ = ["Defer", "QueryWalker"]

_Defer = Defer


def _const(node: exp.Expression | None) -> bool | None:
    """The value of a boolean constant (``true``, ``NOT false``, ``(false)``), else None."""
    if isinstance(node, exp.Paren):
        return _const(node.this)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Not):
        inner = _const(node.this)
        return None if inner is None else not inner
    return None


def _flatten(node: exp.Expression, kind: type[exp.Expression]) -> list[exp.Expression]:
    out: list[exp.Expression] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, kind):
            stack.extend([n.expression, n.this])
        elif isinstance(n, exp.Paren) and isinstance(n.this, kind):
            stack.append(n.this)
        else:
            out.append(n)
    return out


def _uncorrelated(sub: exp.Expression) -> bool:
    """Certainly no outer reference: every column is qualified by a name the subquery's own
    FROM items define (an unqualified one could be an outer column)."""
    names = {
        _ident(t.args["alias"].this) if t.args.get("alias") is not None else _ident(t.this)
        for t in sub.find_all(exp.Table)
    }
    for col in sub.find_all(exp.Column):
        qualifier = col.args.get("table")
        if qualifier is None or _ident(qualifier) not in names:
            return False
    return True


def _pulled_up(n: exp.Expression) -> bool:
    """A conjunct PostgreSQL may turn into a join before folding (``EXISTS`` with an outer
    reference, ``IN``, ``= ANY`` over a subquery, and their ``NOT``)."""
    if isinstance(n, exp.Not):
        n = n.this
    if isinstance(n, exp.Exists):
        return not _uncorrelated(n.this)
    if isinstance(n, exp.In) and n.args.get("query") is not None:
        return True
    return isinstance(n, exp.Any | exp.All) or any(isinstance(c, exp.Any) for c in n.args.values())


class QueryWalker(SourceWalker):
    """Walks queries and expressions, collecting what they need (``needs``)."""

    def __init__(self) -> None:
        super().__init__()
        self.effect: Effect | None = None
        """What a ``set_config`` of the statement changes for the statements after it."""
        self.opaque_calls = 0
        """Calls whose privileges depend on a computed argument (``nextval(x)``)."""

    # expressions ----------------------------------------------------------------------------
    def column(self, col: exp.Column, scope: _Scope, priv: Priv = "SELECT") -> None:
        name = _ident(col.this)
        if name is None:
            return
        if col.args.get("catalog") is not None:
            raise _Defer("three-part column reference")
        qualifier = _ident(col.args.get("table")) if col.args.get("table") is not None else None
        if col.args.get("db") is not None:  # schema.table.column: the source of that table
            found = scope.find_table(TableRef(_ident(col.args["db"]), qualifier or ""))
            if found is None:
                raise _Defer("schema-qualified column reference")
        elif qualifier:
            found = scope.find_with_scope(qualifier)
            if found is None:
                raise _Defer(f"unknown qualifier {qualifier}")
        else:
            self.needs.append(
                ColNeed(priv, name, scope.levels(name), scope.aliases(name), scope.ghost_levels())
            )
            return
        src, where = found
        if src.table is None or where.ghost:
            return
        if name in src.renames:  # t AS x(a, b): x.b is the table's second column
            self.needs.append(
                Need(priv, src.table, frozenset(), positions=(src.renames.index(name),))
            )
        else:
            self.needs.append(Need(priv, src.table, frozenset({name})))

    def folded(self, node: exp.Expression, scope: _Scope, ctes: frozenset[str]) -> None:
        """Walk what the server folds away: its subqueries are ghosts."""
        self.ghost += 1
        try:
            self.exprs(node, scope, ctes)
        finally:
            self.ghost -= 1

    def condition(self, node: exp.Expression | None, scope: _Scope, ctes: frozenset[str]) -> None:
        """A ``WHERE`` or ``ON`` condition: a conjunct ``EXISTS``/``IN`` may become a join (its
        tables checked) even beside ``false``; the rest folds as in any expression."""
        if isinstance(node, exp.Where):
            node = node.this
        if node is None:
            return
        parts = _flatten(node, exp.And)
        if len(parts) > 1 and any(_const(p) is False for p in parts):
            for p in parts:
                if _pulled_up(p):
                    self.exprs(p, scope, ctes)
                else:
                    self.folded(p, scope, ctes)
            return
        self.exprs(node, scope, ctes)

    def _fold(self, n: exp.Expression, scope: _Scope, ctes: frozenset[str]) -> bool:
        """Walk ``n`` if the server folds a part of it away; True when done."""
        if isinstance(n, exp.And | exp.Or):
            kind = type(n)
            parts = _flatten(n, kind)
            if any(_const(p) is (kind is exp.Or) for p in parts):
                for p in parts:
                    self.folded(p, scope, ctes)
                return True
            return False
        if isinstance(n, exp.Case):
            dead = False
            for branch in n.args.get("ifs") or []:
                cond = _const(branch.this)
                if dead or cond is False:
                    self.folded(branch, scope, ctes)
                    continue
                self.exprs(branch, scope, ctes)
                dead = cond is True
            default = n.args.get("default")
            if default is not None:
                (self.folded if dead else self.exprs)(default, scope, ctes)
            self.exprs(n.this, scope, ctes)
            return True
        if isinstance(n, exp.Coalesce):
            args = [n.this, *n.expressions]
            for k, a in enumerate(args):
                if isinstance(a, exp.Literal | exp.Boolean):
                    for kept in args[: k + 1]:
                        self.exprs(kept, scope, ctes)
                    for rest in args[k + 1 :]:
                        self.folded(rest, scope, ctes)
                    return True
        return False

    def exprs(self, node: exp.Expression | None, scope: _Scope, ctes: frozenset[str]) -> None:
        """Columns read by an expression tree; nested queries analysed as correlated scopes."""
        if node is None:
            return
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, exp.Select | exp.SetOperation):
                self.query(n, scope, ctes)
                continue
            if isinstance(n, exp.Subquery):
                self.query(n.this, scope, ctes)
                continue
            if isinstance(n, exp.Column):
                if isinstance(n.this, exp.Star):
                    q = _ident(n.args.get("table"))
                    found = scope.find_with_scope(q) if q else None
                    if found is None:
                        raise _Defer("unknown qualifier for .*")
                    if found[0].table is not None and not found[1].ghost:
                        self.needs.append(Need("SELECT", found[0].table, frozenset({ALL})))
                else:
                    self.column(n, scope)
                continue
            if isinstance(n, exp.Placeholder | exp.Parameter):
                continue
            if isinstance(n, exp.And | exp.Or | exp.Case | exp.Coalesce) and self._fold(
                n, scope, ctes
            ):
                continue
            if isinstance(n, exp.Anonymous | exp.Cast):
                # EXECUTE and the body are judged from the statement's tokens (evaluate)
                if isinstance(n, exp.Anonymous) and str(n.this).lower() == "set_config":
                    effect = set_config_effect(n)
                    if effect is not None:
                        self.effect = effect
                found_needs = call_needs(n)
                if found_needs is None:
                    self.opaque_calls += 0 if self.ghost else 1
                else:  # a name cast to regclass is looked up even where it is folded away
                    self.needs.extend(x for x in found_needs if not self.ghost or x.when == "plan")
            stack.extend(v for v in n.iter_expressions())

    # queries ----------------------------------------------------------------------------------
    def statement(
        self, node: exp.Expression, ctes: frozenset[str], outer: _Scope | None = None
    ) -> None:
        """A statement (the DML walker's): a query here."""
        self.query(node, outer, ctes)

    def with_ctes(
        self, node: exp.Expression, ctes: frozenset[str], outer: _Scope | None
    ) -> frozenset[str]:
        w = node.args.get("with_") or node.args.get("with")
        if w is None:
            return ctes
        recursive = bool(w.args.get("recursive"))
        names = set(ctes)
        all_names = {
            _ident(c.args["alias"].this) for c in w.expressions if c.args.get("alias") is not None
        }
        if recursive:  # every CTE of the list sees every other one
            names |= {n for n in all_names if n}
        used = _used_ctes(node, w)
        for cte in w.expressions:
            cname = _ident(cte.args["alias"].this) if cte.args.get("alias") else None
            body = cte.this
            if cname in used or not isinstance(body, exp.Select | exp.SetOperation):
                # the server plans no SELECT CTE nothing refers to, nor checks what it reads
                if isinstance(body, exp.Select | exp.SetOperation | exp.Subquery):
                    info = self.query(body, outer, frozenset(names))
                    if cname and not cte.args["alias"].columns:
                        self.cte_columns[cname] = info.columns
                else:
                    self.statement(body, frozenset(names), outer)
            if cname:
                names.add(cname)
        return frozenset(names)

    def query(self, node: exp.Expression, outer: _Scope | None, ctes: frozenset[str]) -> QueryInfo:
        if isinstance(node, exp.Subquery):
            return self.query(node.this, outer, ctes)
        if isinstance(node, exp.SetOperation):
            ctes = self.with_ctes(node, ctes, outer)
            left = self.query(node.this, outer, ctes)
            right = self.query(node.expression, outer, ctes)
            # ORDER BY of a set operation names output columns
            return QueryInfo(left.tables + right.tables, left.columns)
        if isinstance(node, exp.Values):
            for e in node.expressions:
                self.exprs(e, outer or _Scope(ghost=self.ghost > 0), ctes)
            return QueryInfo()
        if not isinstance(node, exp.Select):
            raise _Defer(f"unsupported query {type(node).__name__}")
        ctes = self.with_ctes(node, ctes, outer)
        scope = _Scope(parent=outer, ghost=self.ghost > 0)
        conds = self.from_joins(node, scope, ctes, outer)
        aliases = {
            _ident(e.args["alias"])
            for e in node.expressions
            if isinstance(e, exp.Alias) and e.args.get("alias") is not None
        }
        self.output_list(node.expressions, scope, ctes)
        for c in conds:
            self.condition(c, scope, ctes)
        self.condition(node.args.get("where"), scope, ctes)
        for key in ("group", "having", "qualify", "distinct"):
            self.exprs(node.args.get(key), scope, ctes)
        for w in node.args.get("windows") or []:
            for key in ("partition_by", "order"):
                value = w.args.get(key)
                for item in value if isinstance(value, list) else [value]:
                    self.exprs(item, scope, ctes)
        o = node.args.get("order")
        if o is not None:  # ORDER BY may name output aliases: skip those
            for item in o.expressions:
                target = item.this if isinstance(item, exp.Ordered) else item
                if (
                    isinstance(target, exp.Column)
                    and not target.args.get("table")
                    and _ident(target.this) in aliases
                ):
                    continue
                self.exprs(item, scope, ctes)
        for key in ("limit", "offset"):
            self.exprs(node.args.get(key), scope, ctes)
        self.locks(node, scope)
        tables = [s.table for s in scope.sources if s.table is not None]
        for s in scope.sources:
            tables.extend(s.tables)
        return QueryInfo(tuple(tables), self._output_names(node))

    def locks(self, node: exp.Select, scope: _Scope) -> None:
        """``FOR UPDATE/SHARE [OF x]``: UPDATE on the tables locked, the tables of a subquery
        in FROM included (the server pushes the lock into it)."""
        for lock in node.args.get("locks") or []:
            targets = lock.expressions
            names = {_ident(t.this) if isinstance(t, exp.Table) else _ident(t) for t in targets}
            for s in scope.sources:
                if targets and s.alias not in names:
                    continue
                for table in (s.table,) if s.table is not None else s.tables:
                    if not scope.ghost:
                        self.needs.append(Need("UPDATE", table))

    @staticmethod
    def _output_names(node: exp.Select) -> tuple[str, ...] | None:
        """The select list's column names when each is an alias or a plain column."""
        names = []
        for e in node.expressions:
            if isinstance(e, exp.Alias):
                names.append(_ident(e.args.get("alias")) or "")
            elif isinstance(e, exp.Column) and not isinstance(e.this, exp.Star):
                names.append(_ident(e.this) or "")
            else:
                return None
        return tuple(names)

    def output_list(self, items: list[exp.Expression], scope: _Scope, ctes: frozenset[str]) -> None:
        """A select list or RETURNING list: ``*`` needs every column of every source."""
        for e in items:
            if isinstance(e, exp.Star):
                for s in scope.sources:
                    if s.table is not None and not scope.ghost:
                        self.needs.append(Need("SELECT", s.table, frozenset({ALL})))
            else:
                self.exprs(e, scope, ctes)
