"""The scope walker: a parsed statement's privileges, in tsaccess's own types.

Scopes are resolved here rather than with ``sqlglot.optimizer.scope`` / ``qualify_columns``
(measured with sqlglot 30.30): without a schema of every table, ``qualify`` raises
``OptimizeError`` on ``SELECT a FROM t JOIN u ON t.id = u.id`` ("could not be resolved") and on
a correlated subquery ("missing source schemas"), and ``build_scope`` lists the sources but
leaves the same unqualified columns to attribute. Pre-flight loads column privileges only for
the tables a check needs, so an unqualified column becomes a
:class:`~tsaccess.preflight.model.ColNeed`, and ``USING`` / ``NATURAL`` a
:class:`~tsaccess.preflight.model.JoinNeed`, that the checker attributes against the catalog.
"""

from __future__ import annotations

from sqlglot import exp

from tsaccess.preflight.analysis.scope import Scope as _Scope
from tsaccess.preflight.analysis.scope import Source as _Source
from tsaccess.preflight.analysis.scope import ident as _ident
from tsaccess.preflight.analysis.scope import used_ctes as _used_ctes
from tsaccess.preflight.analysis.sources import Defer, SourceWalker
from tsaccess.preflight.model import ALL, ColNeed, Need, Priv, TableRef

__all__ = ["Analyzer", "Defer"]

_Defer = Defer

# settings that change what later statements may do or which tables their names mean
_SESSION_SETTINGS = {"role", "session_authorization", "search_path"}


class Analyzer(SourceWalker):
    """Walks statements, collecting what they need (``needs``)."""

    def __init__(self) -> None:
        super().__init__()
        self.sets_config = False
        """A ``set_config`` call that may change the role or ``search_path`` for the
        statements after it (a name that is not a string constant, or one of those)."""

    # expressions ----------------------------------------------------------------------------
    def column(self, col: exp.Column, scope: _Scope, priv: Priv = "SELECT") -> None:
        name = _ident(col.this)
        if name is None:
            return
        if col.args.get("catalog") is not None:
            raise _Defer("three-part column reference")
        qualifier = _ident(col.args.get("table")) if col.args.get("table") is not None else None
        if col.args.get("db") is not None:  # schema.table.column: the source of that table
            ref = TableRef(_ident(col.args["db"]), qualifier or "")
            src = scope.find_table(ref)
            if src is None:
                raise _Defer("schema-qualified column reference")
        elif qualifier:
            src = scope.find(qualifier)
            if src is None:
                raise _Defer(f"unknown qualifier {qualifier}")
        else:
            if scope.renamed():
                raise _Defer("unqualified column beside renamed columns")
            self.needs.append(ColNeed(priv, name, scope.levels(name), scope.aliases(name)))
            return
        if src.table is None:
            return
        if name in src.renames:  # t AS x(a, b): x.b is the table's second column
            self.needs.append(
                Need(priv, src.table, frozenset(), positions=(src.renames.index(name),))
            )
        else:
            self.needs.append(Need(priv, src.table, frozenset({name})))

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
                if str(n.this).lower() == "set_config":
                    first = n.expressions[0] if n.expressions else None
                    if not (
                        isinstance(first, exp.Literal)
                        and first.is_string
                        and first.name.lower() not in _SESSION_SETTINGS
                    ):
                        self.sets_config = True
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
        used = _used_ctes(node, w)
        for cte in w.expressions:
            cname = _ident(cte.args["alias"].this) if cte.args.get("alias") else None
            if recursive and cname:
                names.add(cname)
            if cname in used or not isinstance(cte.this, exp.Select | exp.SetOperation):
                # the server plans no SELECT CTE nothing refers to, nor checks what it reads
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
            if not all(isinstance(c, exp.Identifier | exp.Column) for c in node.expressions):
                raise _Defer("a target column list with something other than names")
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
        if node.args.get("default") and not cols:
            self.needs.append(Need("INSERT", ref, frozenset()))  # DEFAULT VALUES: no column
        else:
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
