"""Statements that write: INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY, on top of the query
walker (:mod:`~tsaccess.preflight.analysis.walk`)."""

from __future__ import annotations

from sqlglot import exp

from tsaccess.preflight.analysis.scope import Scope as _Scope
from tsaccess.preflight.analysis.scope import Source as _Source
from tsaccess.preflight.analysis.scope import ident as _ident
from tsaccess.preflight.analysis.walk import Defer, QueryWalker
from tsaccess.preflight.model import ALL, Need, Priv, TableRef

__all__ = ["Analyzer", "Defer"]

_Defer = Defer


class Analyzer(QueryWalker):
    """Walks statements, collecting what they need (``needs``)."""

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

    def statement(
        self, node: exp.Expression, ctes: frozenset[str], outer: _Scope | None = None
    ) -> None:
        if isinstance(node, exp.Select | exp.SetOperation | exp.Subquery | exp.Values):
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
                self.condition(c, scope, ctes)
            self.condition(node.args.get("where"), scope, ctes)
            self.returning(node, scope, ctes)
        elif isinstance(node, exp.Delete):
            ctes = self.with_ctes(node, ctes, outer)
            ref, alias, _ = self.target(node.this, ctes)
            scope = _Scope([_Source(alias, ref)], outer)
            for u in node.args.get("using") or []:
                self.add_sources(u, scope, ctes, outer)
            self.needs.append(Need("DELETE", ref))
            self.condition(node.args.get("where"), scope, ctes)
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
        before = len(self.needs)
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
        if not any(isinstance(n, Need) and n.table == ref for n in self.needs[before:]):
            self.needs.append(Need("SELECT", ref))  # only DO NOTHING: measured, SELECT

    def set_clause(
        self, assignments: list[exp.Expression], scope: _Scope, ctes: frozenset[str], what: str
    ) -> frozenset[str]:
        """``SET c = expr`` and ``SET (a, b) = (...)``: the columns assigned; the right-hand
        sides are read."""
        cols = []
        for e in assignments:
            if not isinstance(e, exp.EQ):
                raise _Defer(f"unusual {what}")
            lhs = e.this
            targets = (
                [lhs.this]
                if isinstance(lhs, exp.Paren)
                else lhs.expressions
                if isinstance(lhs, exp.Tuple)
                else [lhs]
            )
            for t in targets:
                if not isinstance(t, exp.Column) or t.args.get("table") is not None:
                    raise _Defer(f"unusual {what}")
                cols.append(_ident(t.this) or "")
            self.exprs(e.expression, scope, ctes)
        return frozenset(cols)

    def insert_need(self, ref: TableRef, cols: list[str], n: int, rows: bool = False) -> None:
        """INSERT on the listed columns, else the first ``n``, else any column."""
        if cols:
            self.needs.append(Need("INSERT", ref, frozenset(cols), rows=rows))
        elif n:
            self.needs.append(Need("INSERT", ref, first_n=n, rows=rows))
        else:
            self.needs.append(Need("INSERT", ref, rows=rows))

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
        rows = src is None or isinstance(src, exp.Values)
        if node.args.get("default") and not cols:
            self.needs.append(Need("INSERT", ref, frozenset(), rows=True))  # DEFAULT VALUES
        else:
            self.insert_need(ref, cols, n, rows)
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
