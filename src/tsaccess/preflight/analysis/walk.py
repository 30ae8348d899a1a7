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

from typing import Any

from sqlglot import exp

from tsaccess.preflight.analysis.scope import Scope as _Scope
from tsaccess.preflight.analysis.scope import Source as _Source
from tsaccess.preflight.analysis.scope import alias_of as _alias
from tsaccess.preflight.analysis.scope import ident as _ident
from tsaccess.preflight.analysis.scope import used_ctes as _used_ctes
from tsaccess.preflight.model import ALL, ColNeed, JoinNeed, Need, Priv, TableRef

__all__ = ["Analyzer", "Defer"]

# settings that change what later statements may do or which tables their names mean
_SESSION_SETTINGS = {"role", "session_authorization", "search_path"}


class Defer(Exception):
    """The analysis cannot be sure: the server decides."""


_Defer = Defer


class Analyzer:
    """Walks statements, collecting what they need (``needs``)."""

    def __init__(self) -> None:
        self.needs: list[Need | ColNeed | JoinNeed] = []
        self.caveats: set[str] = set()
        self.sets_config = False
        """A ``set_config`` call that may change the role or ``search_path`` for the
        statements after it (a name that is not a string constant, or one of those)."""

    # tables ---------------------------------------------------------------------------------
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
            self.function_source(node.this, _alias(node) or "", scope, ctes)
        elif isinstance(node, exp.Table):
            ref = self.table_ref(node, ctes)
            alias = _alias(node) or _ident(node.this)
            renames: tuple[str, ...] = ()
            if node.args.get("alias") is not None and node.args["alias"].columns:
                if ref is None:
                    raise _Defer("column aliases on a CTE")
                renames = tuple(_ident(c) or "" for c in node.args["alias"].columns)
            scope.sources.append(_Source(alias or node.alias_or_name, ref, renames))
            if ref is not None:
                self.needs.append(Need("SELECT", ref))
            if node.args.get("joins"):  # a parenthesized join tree: its items join the scope
                for j in node.args["joins"]:
                    cond = self.join(j, scope, ctes, parent, len(scope.sources) - 1)
                    if cond is not None:
                        self.exprs(cond, scope, ctes)
        elif isinstance(node, exp.Lateral):
            inner = node.this
            if isinstance(inner, exp.Subquery):
                self.query(inner.this, scope, ctes)  # sees the FROM items before it
                scope.sources.append(_Source(_alias(node) or "", None))
            elif isinstance(inner, exp.Func | exp.Anonymous):
                self.function_source(inner, _alias(node) or _alias(inner) or "", scope, ctes)
            else:
                raise _Defer(f"unsupported LATERAL item {type(inner).__name__}")
        elif isinstance(node, exp.Unnest):
            self.function_source(node, _alias(node) or "", scope, ctes)
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
            self.query(node.this, parent, ctes)
            scope.sources.append(_Source(_alias(node) or "", None))
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

    def function_source(
        self, fn: exp.Func, alias: str, scope: _Scope, ctes: frozenset[str]
    ) -> None:
        """A function in FROM: its arguments are read (it may see the items before it); its
        columns are unknown; its body is the server's to check."""
        if fn.args.get("alias") is not None and fn.args["alias"].columns:
            raise _Defer("column aliases on a function")
        self.caveats.add("function bodies")
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
        if (method == "NATURAL" or using) and any(s.renames for s in (*left, *right)):
            raise _Defer("NATURAL or USING join with renamed columns")
        if method == "NATURAL":
            self.needs.append(
                JoinNeed("SELECT", tuple(s.table for s in left), tuple(s.table for s in right))
            )
        elif using:  # USING (c): c is read from both sides
            self.needs.append(
                JoinNeed(
                    "SELECT",
                    tuple(s.table for s in left),
                    tuple(s.table for s in right),
                    frozenset(using),
                )
            )
        on = j.args.get("on")
        return on if isinstance(on, exp.Expression) else None

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
