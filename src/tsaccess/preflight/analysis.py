"""Statement analysis: which privileges a SQL text needs — the only module that imports sqlglot.

A statement is parsed (postgres dialect) and walked scope by scope; the result is an
:class:`~tsaccess.preflight.model.Analysis` in tsaccess's own types. Whenever the analysis is not
sure it *defers* (the server decides): parse errors, statements outside the allow-list (SELECT,
set operations, INSERT, UPDATE, DELETE, TRUNCATE, COPY, MERGE), LATERAL, NATURAL JOIN, WINDOW
clauses, column aliases on tables, ``ON CONFLICT ON CONSTRAINT``...

Scopes are resolved here rather than with ``sqlglot.optimizer.scope`` / ``qualify_columns``
(measured with sqlglot 30.30): without a schema of every table, ``qualify`` raises
``OptimizeError`` on ``SELECT a FROM t JOIN u ON t.id = u.id`` ("could not be resolved") and on
a correlated subquery ("missing source schemas"), and ``build_scope`` lists the sources but
leaves the same unqualified columns to attribute. Pre-flight loads column privileges only for
the tables a check needs, so an unqualified column becomes a
:class:`~tsaccess.preflight.model.ColNeed` that the checker attributes against the live catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from tsaccess.preflight.model import ALL, Analysis, ColNeed, Need, Priv, TableRef

__all__ = ["analyze"]

_SYSTEM_COLUMNS = {"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid"}
_PLACEHOLDER = re.compile(r"%%|%\(\w+\)[sbt]|%[sbt]")


class _Defer(Exception):
    pass


def _ident(node: exp.Expression | str | None) -> str | None:
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
class _Source:
    alias: str
    table: TableRef | None  # None: CTE / subquery / function: columns unknown


@dataclass
class _Scope:
    sources: list[_Source] = field(default_factory=list)
    parent: _Scope | None = None

    def find(self, alias: str) -> _Source | None:
        scope: _Scope | None = self
        while scope is not None:
            for s in scope.sources:
                if s.alias == alias:
                    return s
            scope = scope.parent
        return None

    def levels(self) -> tuple[tuple[TableRef | None, ...], ...]:
        out = []
        scope: _Scope | None = self
        while scope is not None:
            out.append(tuple(s.table for s in scope.sources))
            scope = scope.parent
        return tuple(out)


class _Analyzer:
    def __init__(self) -> None:
        self.needs: list[Need | ColNeed] = []
        self.caveats: set[str] = set()

    # tables ---------------------------------------------------------------------------------
    def table_ref(self, t: exp.Table, ctes: frozenset[str]) -> TableRef | None:
        """Resolve a FROM item to a physical table reference (None for a CTE)."""
        if not isinstance(t.this, exp.Identifier):
            raise _Defer("table function or unusual FROM item")
        if t.args.get("catalog") is not None:
            raise _Defer("three-part name")
        name = _ident(t.this) or ""
        schema = _ident(t.args.get("db")) if t.args.get("db") is not None else None
        if schema is None and name in ctes:
            return None
        return TableRef(schema, name)

    def add_sources(
        self, node: exp.Expression, scope: _Scope, ctes: frozenset[str], parent: _Scope | None
    ) -> None:
        """Add FROM / JOIN items of ``node`` to ``scope`` (subqueries analysed with ``parent``)."""
        if isinstance(node, exp.Table):
            ref = self.table_ref(node, ctes)
            alias = (
                _ident(node.args["alias"].this)
                if node.args.get("alias") and node.args["alias"].this
                else _ident(node.this)
            )
            scope.sources.append(_Source(alias or node.alias_or_name, ref))
            if ref is not None:
                self.needs.append(Need("SELECT", ref))
            if node.args.get("alias") is not None and node.args["alias"].columns:
                raise _Defer("column aliases on a table")
        elif isinstance(node, exp.Subquery):
            if node.args.get("lateral") or isinstance(node.parent, exp.Lateral):
                raise _Defer("LATERAL subquery")
            self.query(node.this, parent, ctes)
            scope.sources.append(
                _Source(
                    (_ident(node.args["alias"].this) or "")
                    if node.args.get("alias") and node.args["alias"].this
                    else "",
                    None,
                )
            )
        elif isinstance(node, exp.Values):
            scope.sources.append(_Source(node.alias_or_name.lower(), None))
            for e in node.expressions:
                self.exprs(e, parent or _Scope(), ctes)
        else:
            raise _Defer(f"unsupported FROM item {type(node).__name__}")

    def from_joins(
        self, node: exp.Expression, scope: _Scope, ctes: frozenset[str], outer: _Scope | None
    ) -> list[exp.Expression]:
        """Sources of FROM and JOINs; returns the join conditions to analyse in ``scope``."""
        conds: list[exp.Expression] = []
        frm = node.args.get("from_") or node.args.get("from")
        if frm is not None:
            for item in [frm.this, *frm.expressions]:
                self.add_sources(item, scope, ctes, outer)
        for j in node.args.get("joins") or []:
            if (
                j.args.get("method")
                or (j.args.get("kind") or "").upper() == "NATURAL"
                or "NATURAL" in str(j.args.get("method") or "").upper()
            ):
                raise _Defer("NATURAL JOIN")
            self.add_sources(j.this, scope, ctes, outer)
            if j.args.get("on") is not None:
                conds.append(j.args["on"])
            for u in j.args.get("using") or []:
                col = _ident(u)
                if col:  # USING (c): c is read from both sides
                    for s in scope.sources[-2:]:
                        if s.table is not None:
                            self.needs.append(Need("SELECT", s.table, frozenset({col})))
        return conds

    # expressions ----------------------------------------------------------------------------
    def column(self, col: exp.Column, scope: _Scope, priv: Priv = "SELECT") -> None:
        name = _ident(col.this)
        if name is None:
            return
        if name in _SYSTEM_COLUMNS:
            self.caveats.add("system columns")
            return
        if col.args.get("db") is not None or col.args.get("catalog") is not None:
            raise _Defer("schema-qualified column reference")
        qualifier = _ident(col.args.get("table")) if col.args.get("table") is not None else None
        if qualifier:
            src = scope.find(qualifier)
            if src is None:
                raise _Defer(f"unknown qualifier {qualifier}")
            if src.table is not None:
                self.needs.append(Need(priv, src.table, frozenset({name})))
            return
        self.needs.append(ColNeed(priv, name, scope.levels()))

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
                    src = scope.find(q) if q else None
                    if src is None:
                        raise _Defer("unknown qualifier for .*")
                    if src.table is not None:
                        self.needs.append(Need("SELECT", src.table, frozenset({ALL})))
                else:
                    self.column(n, scope)
                continue
            if isinstance(n, exp.Placeholder | exp.Parameter):
                continue
            if isinstance(n, exp.Anonymous):
                # a function sqlglot does not know (user-defined, extension): EXECUTE and
                # what its body reads are left to the server; its arguments are still read here
                self.caveats.add("function bodies")
            stack.extend(v for v in n.iter_expressions())

    # statements -----------------------------------------------------------------------------
    def with_ctes(
        self, node: exp.Expression, ctes: frozenset[str], outer: _Scope | None
    ) -> frozenset[str]:
        w = node.args.get("with_") or node.args.get("with")
        if w is None:
            return ctes
        recursive = bool(w.args.get("recursive"))
        names = set(ctes)
        for cte in w.expressions:
            cname = _ident(cte.args["alias"].this) if cte.args.get("alias") else None
            if recursive and cname:
                names.add(cname)
            self.statement(cte.this, frozenset(names), outer)
            if cname:
                names.add(cname)
        return frozenset(names)

    def query(self, node: exp.Expression, outer: _Scope | None, ctes: frozenset[str]) -> None:
        if isinstance(node, exp.Subquery):
            self.query(node.this, outer, ctes)
            return
        if isinstance(node, exp.SetOperation):
            ctes = self.with_ctes(node, ctes, outer)
            self.query(node.this, outer, ctes)
            self.query(node.expression, outer, ctes)
            return  # ORDER BY of a set operation names output columns
        if isinstance(node, exp.Values):
            for e in node.expressions:
                self.exprs(e, outer or _Scope(), ctes)
            return
        if not isinstance(node, exp.Select):
            raise _Defer(f"unsupported query {type(node).__name__}")
        ctes = self.with_ctes(node, ctes, outer)
        scope = _Scope(parent=outer)
        conds = self.from_joins(node, scope, ctes, outer)
        aliases = {
            _ident(e.args["alias"])
            for e in node.expressions
            if isinstance(e, exp.Alias) and e.args.get("alias") is not None
        }
        self.output_list(node.expressions, scope, ctes)
        for c in conds:
            self.exprs(c, scope, ctes)
        for key in ("where", "group", "having", "qualify", "distinct"):
            self.exprs(node.args.get(key), scope, ctes)
        for key in ("order",):
            o = node.args.get(key)
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
        for lock in node.args.get("locks") or []:
            if lock.args.get("update") is not None or True:
                targets = lock.expressions
                names = {_ident(t.this) if isinstance(t, exp.Table) else _ident(t) for t in targets}
                for s in scope.sources:
                    if s.table is not None and (not targets or s.alias in names):
                        self.needs.append(Need("UPDATE", s.table))
        if node.args.get("windows"):
            raise _Defer("WINDOW clause")

    def target(self, node: exp.Expression, ctes: frozenset[str]) -> tuple[TableRef, str, list[str]]:
        cols: list[str] = []
        if isinstance(node, exp.Schema):
            cols = [_ident(c) or "" for c in node.expressions]
            node = node.this
        if not isinstance(node, exp.Table):
            raise _Defer("unusual DML target")
        ref = self.table_ref(node, frozenset())  # DML targets are never CTEs
        assert ref is not None
        alias = (
            _ident(node.args["alias"].this)
            if node.args.get("alias") and node.args["alias"].this
            else None
        )
        return ref, alias or ref.name, cols

    def returning(self, node: exp.Expression, scope: _Scope, ctes: frozenset[str]) -> None:
        ret = node.args.get("returning")
        if ret is not None:
            self.output_list(ret.expressions, scope, ctes)

    def output_list(self, items: list[exp.Expression], scope: _Scope, ctes: frozenset[str]) -> None:
        """A select list or RETURNING list: ``*`` needs every column of every source."""
        for e in items:
            if isinstance(e, exp.Star):
                for s in scope.sources:
                    if s.table is not None:
                        self.needs.append(Need("SELECT", s.table, frozenset({ALL})))
            else:
                self.exprs(e, scope, ctes)

    def statement(
        self, node: exp.Expression, ctes: frozenset[str], outer: _Scope | None = None
    ) -> None:
        if isinstance(node, exp.Select | exp.SetOperation | exp.Subquery):
            self.query(node, outer, ctes)
        elif isinstance(node, exp.Insert):
            self.insert(node, ctes, outer)
        elif isinstance(node, exp.Update):
            ctes = self.with_ctes(node, ctes, outer)
            ref, alias, _ = self.target(node.this, ctes)
            scope = _Scope([_Source(alias, ref)], outer)
            conds = self.from_joins(node, scope, ctes, outer)
            set_cols = self.set_clause(node.expressions, scope, ctes, "SET clause")
            self.needs.append(Need("UPDATE", ref, set_cols))
            for c in conds:
                self.exprs(c, scope, ctes)
            self.exprs(node.args.get("where"), scope, ctes)
            self.returning(node, scope, ctes)
        elif isinstance(node, exp.Delete):
            ctes = self.with_ctes(node, ctes, outer)
            ref, alias, _ = self.target(node.this, ctes)
            scope = _Scope([_Source(alias, ref)], outer)
            for u in node.args.get("using") or []:
                self.add_sources(u, scope, ctes, outer)
            self.needs.append(Need("DELETE", ref))
            self.exprs(node.args.get("where"), scope, ctes)
            self.returning(node, scope, ctes)
        elif isinstance(node, exp.TruncateTable):
            if node.args.get("option") or "CASCADE" in node.sql("postgres").upper():
                raise _Defer("TRUNCATE ... CASCADE")
            for t in node.expressions:
                tref = self.table_ref(t, frozenset())
                assert tref is not None
                self.needs.append(Need("TRUNCATE", tref))
        elif isinstance(node, exp.Copy):
            target = node.this
            if isinstance(target, exp.Subquery | exp.Select):
                self.query(target, outer, ctes)
                return
            ref, _, cols = self.target(target, ctes)
            priv: Priv = "INSERT" if node.args.get("kind") else "SELECT"
            self.needs.append(Need(priv, ref, frozenset(cols) if cols else frozenset({ALL})))
        elif isinstance(node, exp.Merge):
            self.merge(node, ctes, outer)
        else:
            raise _Defer(f"{type(node).__name__} statements are not analysed")

    def merge(self, node: exp.Merge, ctes: frozenset[str], outer: _Scope | None) -> None:
        """MERGE: SELECT on the source and on target columns read; per action UPDATE (SET
        columns), INSERT (listed or first N columns) or DELETE on the target."""
        ctes = self.with_ctes(node, ctes, outer)
        ref, alias, _ = self.target(node.this, ctes)
        scope = _Scope([_Source(alias, ref)], outer)
        using = node.args.get("using")
        if using is None:
            raise _Defer("MERGE without USING")
        self.add_sources(using, scope, ctes, outer)
        self.exprs(node.args.get("on"), scope, ctes)
        whens = node.args.get("whens")
        for when in whens.expressions if whens is not None else []:
            self.exprs(when.args.get("condition"), scope, ctes)
            then = when.args.get("then")
            if isinstance(then, exp.Update):
                set_cols = self.set_clause(then.expressions, scope, ctes, "MERGE ... UPDATE SET")
                self.needs.append(Need("UPDATE", ref, set_cols))
            elif isinstance(then, exp.Insert):
                target_cols = then.this.expressions if isinstance(then.this, exp.Tuple) else []
                names = [
                    _ident(c.this if isinstance(c, exp.Column) else c) or "" for c in target_cols
                ]
                values = then.expression
                n = len(values.expressions) if isinstance(values, exp.Tuple) else 0
                if values is not None:
                    self.exprs(values, scope, ctes)
                self.insert_need(ref, names, n)
            elif isinstance(then, exp.Var) and then.name.upper() == "DELETE":
                self.needs.append(Need("DELETE", ref))
            elif not (isinstance(then, exp.Var) and then.name.upper() == "DO NOTHING"):
                raise _Defer("unusual MERGE action")

    def set_clause(
        self, assignments: list[exp.Expression], scope: _Scope, ctes: frozenset[str], what: str
    ) -> frozenset[str]:
        """``SET c = expr, ...``: the columns assigned; the right-hand sides are read."""
        cols = []
        for e in assignments:
            if not isinstance(e, exp.EQ) or not isinstance(e.this, exp.Column):
                raise _Defer(f"unusual {what}")
            cols.append(_ident(e.this.this) or "")
            self.exprs(e.expression, scope, ctes)
        return frozenset(cols)

    def insert_need(self, ref: TableRef, cols: list[str], n: int) -> None:
        """INSERT on the listed columns, else the first ``n``, else any column."""
        if cols:
            self.needs.append(Need("INSERT", ref, frozenset(cols)))
        elif n:
            self.needs.append(Need("INSERT", ref, first_n=n))
        else:
            self.needs.append(Need("INSERT", ref))

    def insert(self, node: exp.Insert, ctes: frozenset[str], outer: _Scope | None) -> None:
        ctes = self.with_ctes(node, ctes, outer)
        ref, alias, cols = self.target(node.this, ctes)
        src = node.expression
        n = 0
        if isinstance(src, exp.Values):
            n = max((len(t.expressions) for t in src.expressions), default=0)
            for t in src.expressions:
                self.exprs(t, _Scope(parent=outer), ctes)
        elif isinstance(src, exp.Select):
            if not any(isinstance(e, exp.Star) for e in src.expressions):
                n = len(src.expressions)
            self.query(src, outer, ctes)
        elif src is not None:
            self.query(src, outer, ctes)
        self.insert_need(ref, cols, n)
        scope = _Scope([_Source(alias, ref)], outer)
        conflict = node.args.get("conflict")
        if conflict is not None:
            for k in conflict.args.get("conflict_keys") or []:
                key = k.this if isinstance(k, exp.Ordered) else k
                if not isinstance(key, exp.Column | exp.Identifier):
                    raise _Defer("ON CONFLICT on an expression")
                name = _ident(key.this if isinstance(key, exp.Column) else key)
                if name:
                    self.needs.append(Need("SELECT", ref, frozenset({name})))
            if conflict.args.get("constraint") is not None:
                raise _Defer("ON CONFLICT ON CONSTRAINT")
            action = str(conflict.args.get("action") or "").upper()
            if "UPDATE" in action:
                excluded = _Scope([_Source(alias, ref), _Source("excluded", ref)], outer)
                set_cols = self.set_clause(conflict.expressions, excluded, ctes, "DO UPDATE SET")
                self.needs.append(Need("UPDATE", ref, set_cols))
                self.exprs(conflict.args.get("where"), excluded, ctes)
        self.returning(node, scope, ctes)


_ALLOWED_ROOTS = (
    exp.Select,
    exp.SetOperation,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.TruncateTable,
    exp.Copy,
    exp.Subquery,
    exp.Merge,
)


def _sqlglot_text(text: str, has_params: bool) -> str:
    if not has_params:
        return text
    return _PLACEHOLDER.sub(lambda m: "%" if m.group(0) == "%%" else "%s", text)


_ANALYSED_START = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(?:\(|select|with|insert|update|delete|truncate|"
    r"copy|values|table|merge)\b",
    re.IGNORECASE | re.DOTALL,
)


def analyze(text: str, *, has_params: bool = False) -> Analysis:
    """The privileges ``text`` needs (every statement in it), or why it is deferred.

    Never raises: anything unexpected is a deferral.
    """
    if not _ANALYSED_START.match(text):  # commands sqlglot would only half-parse: defer
        first = text.strip().split(None, 1)[0].upper() if text.strip() else "empty"
        return Analysis(deferred=f"{first[:20]} statements are checked by the server")
    try:
        trees = sqlglot.parse(_sqlglot_text(text, has_params), read="postgres")
    except Exception as exc:
        return Analysis(deferred=f"not parsed ({exc.__class__.__name__})")
    trees = [t for t in trees if t is not None]
    if not trees:
        return Analysis(deferred="no statement", statements=0)
    a = _Analyzer()
    for tree in trees:
        if not isinstance(tree, _ALLOWED_ROOTS):
            return Analysis(
                deferred=f"{type(tree).__name__} statement (checked by the server)",
                statements=len(trees),
            )
        try:
            a.statement(tree, frozenset())
        except _Defer as d:
            return Analysis(deferred=str(d), statements=len(trees))
        except Exception as exc:
            return Analysis(
                deferred=f"analysis failed ({exc.__class__.__name__})", statements=len(trees)
            )
    return Analysis(tuple(a.needs), "", len(trees), tuple(sorted(a.caveats)))
