"""Pre-flight privilege checks: know before sending — never refuse what the server would allow.

The only module that imports sqlglot. A statement is parsed (postgres dialect), the privileges it
needs are worked out (:func:`analyze`, cached per statement text), and compared with a snapshot
of the session's effective privileges (``has_table_privilege`` & co., which handle inheritance,
PUBLIC and predefined roles). A denial is confirmed with one live ``has_*_privilege`` query
before it is reported, so a stale snapshot never causes a false refusal.

Whenever the analysis is not sure it *defers*: the statement is allowed and marked
``deferred`` with the reason; the server stays the enforcer. Deferred: parse errors, statements
outside the allow-list (SELECT, set operations, INSERT, UPDATE, DELETE, TRUNCATE, COPY), what
function bodies, views' base tables, column defaults, RLS and triggers do, unresolved names
(temporary tables), system columns, ``pg_catalog`` and ``_timescaledb_*`` objects.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
import sqlglot
from psycopg import sql
from psycopg.rows import tuple_row
from sqlglot import exp

from tsaccess._log import get_logger
from tsaccess.errors import MissingPrivilege, PreflightDenied

__all__ = [
    "Analysis",
    "Checker",
    "PreflightConnection",
    "Verdict",
    "analyze",
    "check",
]

log = get_logger("tsaccess.preflight")

_SYSTEM_COLUMNS = {"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid"}
_PLACEHOLDER = re.compile(r"%%|%\(\w+\)[sbt]|%[sbt]")
_INVALIDATES = re.compile(
    r"^\s*(set|reset|grant|revoke|create|alter|drop|comment|security|discard|import|"
    r"reassign|refresh)\b",
    re.IGNORECASE,
)
_TEMP_HINT = re.compile(r"^\s*create\s+(global\s+|local\s+)?(temp|temporary)\b", re.IGNORECASE)

Priv = Literal["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]


# -- analysis ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableRef:
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


@dataclass(frozen=True)
class ColNeed:
    """An unqualified column, attributed at check time to the innermost source that has it."""

    privilege: Priv
    column: str
    levels: tuple[tuple[TableRef | None, ...], ...]
    """Candidate sources per scope level, innermost first; None = a source with unknown
    columns (CTE, subquery, function)."""


@dataclass(frozen=True)
class Analysis:
    needs: tuple[Need | ColNeed, ...] = ()
    deferred: str = ""
    statements: int = 1
    caveats: tuple[str, ...] = ()
    """What the server checks that this analysis does not (function bodies...)."""


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


# -- snapshot ---------------------------------------------------------------------------------

_PRIVS: tuple[Priv, ...] = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
_COLUMN_PRIVS = ("SELECT", "INSERT", "UPDATE")


@dataclass
class _Rel:
    oid: int
    schema: str
    name: str
    usage: bool
    table: dict[str, bool]
    any: dict[str, bool]
    kind: str = "r"
    rls: bool = False
    sequence_default: bool = False
    columns: list[tuple[str, dict[str, bool]]] | None = None

    @property
    def caveats(self) -> tuple[str, ...]:
        out = []
        if self.kind in ("v", "m"):
            out.append("view base tables")
        if self.kind == "f":
            out.append("foreign table")
        if self.rls:
            out.append("row-level security")
        return tuple(out)


@dataclass
class Snapshot:
    """A session's effective privileges on every relation it can name."""

    user: str
    role: str
    search_path: tuple[str, ...]
    rels: dict[tuple[str, str], _Rel]
    usage: dict[str, bool]
    catalog_names: frozenset[str]
    taken: float
    generation: int

    def resolve(self, ref: TableRef) -> _Rel | Literal["system"] | None:
        if ref.schema is not None:
            if (
                ref.schema == "pg_catalog"
                or ref.schema.startswith(("pg_toast", "_timescaledb", "timescaledb_"))
                or ref.schema == "information_schema"
            ):
                return "system"
            return self.rels.get((ref.schema, ref.name))
        for schema in self.search_path:
            if schema == "pg_catalog":
                if ref.name in self.catalog_names:
                    return "system"
                continue
            rel = self.rels.get((schema, ref.name))
            if rel is not None and self.usage.get(schema, True):
                return rel
        return None


_SNAPSHOT_SQL = """
SELECT n.nspname, c.relname, c.oid::bigint, pg_catalog.has_schema_privilege(n.oid, 'USAGE'),
       pg_catalog.has_table_privilege(c.oid, 'SELECT'), pg_catalog.has_table_privilege(c.oid, 'INSERT'),
       pg_catalog.has_table_privilege(c.oid, 'UPDATE'), pg_catalog.has_table_privilege(c.oid, 'DELETE'),
       pg_catalog.has_table_privilege(c.oid, 'TRUNCATE'),
       pg_catalog.has_any_column_privilege(c.oid, 'SELECT'),
       pg_catalog.has_any_column_privilege(c.oid, 'INSERT'),
       pg_catalog.has_any_column_privilege(c.oid, 'UPDATE'),
       NULL::text[], NULL::text, NULL::text,
       c.relkind::text, c.relrowsecurity,
       EXISTS (SELECT FROM pg_catalog.pg_attrdef d WHERE d.adrelid = c.oid
                AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) ~ 'nextval')
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND ((n.nspname !~ '^pg_' AND n.nspname !~ '^_timescaledb' AND n.nspname <> 'information_schema')
        OR n.oid = pg_catalog.pg_my_temp_schema())
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       pg_catalog.current_schemas(true)::text[], current_user::text,
       (SELECT pg_catalog.string_agg(relname, ',') FROM pg_catalog.pg_class
         WHERE relnamespace = 'pg_catalog'::regnamespace), NULL, NULL, NULL
"""


def _raw(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> list[tuple[Any, ...]]:
    """Run a catalog query past the pre-flight cursor, leaving the transaction state as found."""
    was_idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with psycopg.Cursor(conn, row_factory=tuple_row) as cur:
        rows = cur.execute(query, params).fetchall()
    if was_idle and not conn.autocommit:
        conn.rollback()
    return rows


def take_snapshot(conn: psycopg.Connection[Any], generation: int = 0) -> Snapshot:
    """One set-based catalog query: every relation the session could name, with privileges."""
    rows = _raw(conn, _SNAPSHOT_SQL)
    rels: dict[tuple[str, str], _Rel] = {}
    usage: dict[str, bool] = {}
    path: tuple[str, ...] = ()
    role, names = "", ""
    for r in rows:
        if r[0] is None:
            path, role, names = tuple(r[12] or ()), r[13], r[14] or ""
            continue
        usage[r[0]] = bool(r[3])
        rels[(r[0], r[1])] = _Rel(
            r[2],
            r[0],
            r[1],
            bool(r[3]),
            dict(zip(_PRIVS, map(bool, r[4:9]), strict=True)),
            dict(zip(_COLUMN_PRIVS, map(bool, r[9:12]), strict=True)),
            kind=r[15],
            rls=bool(r[16]),
            sequence_default=bool(r[17]),
        )
    # the implicit temp schema (pg_temp_N) shows in current_schemas only once it exists
    return Snapshot(
        conn.info.user,
        role,
        path,
        rels,
        usage,
        frozenset(names.split(",")),
        time.monotonic(),
        generation,
    )


def _load_columns(conn: psycopg.Connection[Any], rels: Iterable[_Rel]) -> None:
    todo = {r.oid: r for r in rels if r.columns is None}
    if not todo:
        return
    rows = _raw(
        conn,
        "SELECT attrelid::bigint, attname, pg_catalog.has_column_privilege(attrelid, attnum, 'SELECT'),"
        " pg_catalog.has_column_privilege(attrelid, attnum, 'INSERT'),"
        " pg_catalog.has_column_privilege(attrelid, attnum, 'UPDATE')"
        " FROM pg_catalog.pg_attribute WHERE attrelid = ANY(%s::oid[]) AND attnum > 0"
        " AND NOT attisdropped ORDER BY attrelid, attnum",
        (list(todo),),
    )
    for rel in todo.values():
        rel.columns = []
    for oid, name, s, i, u in rows:
        cols = todo[oid].columns
        assert cols is not None
        cols.append((name, {"SELECT": s, "INSERT": i, "UPDATE": u}))


# -- verdicts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    status: Literal["allowed", "denied", "deferred"]
    statement: str
    missing: tuple[MissingPrivilege, ...] = ()
    reason: str = ""
    generation: int = -1
    caveats: tuple[str, ...] = ()
    """For an allowed statement: what the server still checks on its own (view base tables,
    row-level security, function bodies, sequence defaults)."""

    @property
    def allowed(self) -> bool:
        return self.status != "denied"

    def __str__(self) -> str:
        if self.status == "allowed":
            extra = f" (the server still checks: {', '.join(self.caveats)})" if self.caveats else ""
            return "allowed: the session has every privilege this statement needs" + extra
        if self.status == "deferred":
            return f"undecided (deferred to the server): {self.reason}"
        return "denied: missing " + "; ".join(str(m) for m in self.missing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "caveats": list(self.caveats),
            "missing": [
                {"privilege": m.privilege, "object": m.object, "columns": list(m.columns)}
                for m in self.missing
            ],
        }


class Checker:
    """Pre-flight state of one connection: analysis cache, snapshot (TTL) and verdict cache."""

    def __init__(
        self, conn: psycopg.Connection[Any], *, ttl: float = 60.0, cache_size: int = 2048
    ) -> None:
        self._conn = conn
        self.ttl = ttl
        self._cache_size = cache_size
        self._analyses: OrderedDict[tuple[str, bool], Analysis] = OrderedDict()
        self._verdicts: dict[tuple[str, bool], Verdict] = {}
        self._snapshot: Snapshot | None = None
        self._generation = 0
        self.session_changed = False
        """Set when a statement may have changed role or settings (a pool reset then drops
        the snapshot, since the reset restores the pool's own role and settings)."""

    def invalidate(self) -> None:
        """Forget the privilege snapshot (after SET ROLE, GRANT, DDL, a server refusal...)."""
        self._snapshot = None
        self._verdicts.clear()
        self._generation += 1

    def snapshot(self) -> Snapshot:
        s = self._snapshot
        if s is None or time.monotonic() - s.taken > self.ttl:
            self._verdicts.clear()
            self._generation += 1
            s = self._snapshot = take_snapshot(self._conn, self._generation)
        return s

    def analysis(self, text: str, has_params: bool) -> Analysis:
        key = (text, has_params)
        a = self._analyses.get(key)
        if a is None:
            a = analyze(text, has_params=has_params)
            self._analyses[key] = a
            if len(self._analyses) > self._cache_size:
                self._analyses.popitem(last=False)
        return a

    def check(self, text: str, *, has_params: bool = False) -> Verdict:
        key = (text, has_params)
        v = self._verdicts.get(key)
        s = self._snapshot
        if (
            v is not None
            and s is not None
            and v.generation == s.generation
            and time.monotonic() - s.taken <= self.ttl
        ):
            return v
        a = self.analysis(text, has_params)
        if a.deferred:
            v = Verdict("deferred", text, reason=a.deferred)
        else:
            if self._conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                return Verdict("deferred", text, reason="transaction is aborted")
            v = self._evaluate(text, a)
        # denials are never cached: each one is confirmed live before it is reported
        if v.status != "denied" and len(self._verdicts) < self._cache_size:
            self._verdicts[key] = v
        return v

    def _evaluate(self, text: str, a: Analysis) -> Verdict:
        snap = self.snapshot()
        missing: dict[tuple[str, str, int], set[str]] = {}
        unresolved: list[str] = []
        caveats = set(a.caveats)

        def miss(priv: str, rel_name: str, cols: Iterable[str] = (), oid: int = 0) -> None:
            missing.setdefault((priv, rel_name, oid), set()).update(cols)

        for need in a.needs:
            if isinstance(need, ColNeed):
                self._col_need(snap, need, miss, unresolved)
                continue
            rel = snap.resolve(need.table)
            if rel == "system":
                continue
            if rel is None:
                unresolved.append(str(need.table))
                continue
            if need.table.schema is not None and not rel.usage:
                miss("USAGE", rel.schema)
                continue
            caveats.update(rel.caveats)
            if need.privilege == "INSERT" and rel.sequence_default:
                caveats.add("sequence defaults")
            self._table_need(need, rel, miss)
        if missing:
            confirmed = self._confirm(missing)
            if confirmed:
                return Verdict("denied", text, tuple(confirmed), generation=snap.generation)
        if unresolved:
            return Verdict(
                "deferred",
                text,
                reason="unresolved name(s) "
                f"{', '.join(sorted(set(unresolved)))} (temporary table or missing)",
                generation=snap.generation,
            )
        return Verdict("allowed", text, generation=snap.generation, caveats=tuple(sorted(caveats)))

    def _table_need(self, need: Need, rel: _Rel, miss: Any) -> None:
        p = need.privilege
        fq = f"{rel.schema}.{rel.name}"
        if rel.table.get(p):
            return
        if p in ("DELETE", "TRUNCATE"):
            miss(p, fq, oid=rel.oid)
            return
        if not rel.any.get(p):  # nothing of that kind: name the columns the statement uses
            named = sorted(need.columns - {ALL}) if need.columns else []
            miss(p, fq, named, oid=rel.oid)
            return
        if need.columns is None and not need.first_n:
            return  # some column is granted: enough for "table or any column"
        _load_columns(self._conn, [rel])
        cols = rel.columns or []
        if need.first_n:
            wanted = [c for c, _ in cols[: need.first_n]]
        elif need.columns and ALL in need.columns:
            wanted = [c for c, _ in cols]
        else:
            wanted = [c for c in (need.columns or ()) if any(c == n for n, _ in cols)]
        privs = dict(cols)
        lacking = [c for c in wanted if not privs[c].get(p)]
        if lacking:
            miss(p, fq, lacking, oid=rel.oid)

    def _col_need(self, snap: Snapshot, need: ColNeed, miss: Any, unresolved: list[str]) -> None:
        for level in need.levels:
            rels: list[_Rel] = []
            for ref in level:
                if ref is None:
                    return  # a source with unknown columns might provide it: do not guess
                r = snap.resolve(ref)
                if r == "system":
                    return
                if r is None:
                    unresolved.append(str(ref))
                    return
                rels.append(r)
            if len(rels) == 1 and rels[0].table.get(need.privilege):
                return  # whoever provides it, the privilege is there for this level's table
            _load_columns(self._conn, rels)
            owners = [r for r in rels if any(c == need.column for c, _ in (r.columns or []))]
            if len(owners) == 1:
                self._table_need(
                    Need(
                        need.privilege,
                        TableRef(owners[0].schema, owners[0].name),
                        frozenset({need.column}),
                    ),
                    owners[0],
                    miss,
                )
                return
            if len(owners) > 1:
                return  # ambiguous: the server reports it
        # not a column of any source: an output alias, a parameter... nothing to require

    def _confirm(self, missing: dict[tuple[str, str, int], set[str]]) -> list[MissingPrivilege]:
        """Re-check every missing privilege live; return those that are really missing."""
        parts: list[sql.Composable] = []
        keys: list[MissingPrivilege] = []
        for (priv, obj, oid), cols in sorted(missing.items()):
            # by OID: a name cast (::regclass) would itself need USAGE on the schema
            if priv == "USAGE":
                parts.append(
                    sql.SQL("pg_catalog.has_schema_privilege({}, 'USAGE')").format(sql.Literal(obj))
                )
                keys.append(MissingPrivilege(priv, obj))
            elif cols:
                for c in sorted(cols):
                    parts.append(
                        sql.SQL("pg_catalog.has_column_privilege({}::oid, {}, {})").format(
                            sql.Literal(oid), sql.Literal(c), sql.Literal(priv)
                        )
                    )
                    keys.append(MissingPrivilege(priv, obj, (c,)))
            else:
                fn = "has_any_column_privilege" if priv in _COLUMN_PRIVS else "has_table_privilege"
                parts.append(
                    sql.SQL("pg_catalog.{}({}::oid, {})").format(
                        sql.Identifier(fn), sql.Literal(oid), sql.Literal(priv)
                    )
                )
                keys.append(MissingPrivilege(priv, obj))
        try:
            rows = _raw(self._conn, sql.SQL("SELECT {}").format(sql.SQL(", ").join(parts)))
            row = rows[0] if rows else None
        except psycopg.Error:
            return []  # cannot confirm: never refuse on an unconfirmed snapshot
        really = [k for k, granted in zip(keys, row or (), strict=False) if not granted]
        if len(really) != len(keys):
            self.invalidate()  # the snapshot was stale
        merged: dict[tuple[str, str], list[str]] = {}
        for m in really:
            merged.setdefault((m.privilege, m.object), []).extend(m.columns)
        return [MissingPrivilege(p, o, tuple(c)) for (p, o), c in merged.items()]


def check(conn: psycopg.Connection[Any], statement: str) -> Verdict:
    """Pre-flight ``statement`` on ``conn`` (as its session's user and role) without running it."""
    checker = getattr(conn, "preflight", None)
    if not isinstance(checker, Checker):
        checker = Checker(conn)
    return checker.check(statement)


# -- the connection class ---------------------------------------------------------------------


def _text(conn: psycopg.Connection[Any], query: Any) -> str | None:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode(conn.info.encoding, errors="replace")
    if isinstance(query, sql.Composable):
        return query.as_string(conn)
    return None


class PreflightCursor(psycopg.Cursor[Any]):
    """A cursor that checks every statement before sending it (see :class:`PreflightConnection`)."""

    def _preflight(self, query: Any, has_params: bool) -> str | None:
        conn = self.connection
        checker: Checker | None = getattr(conn, "preflight", None)
        if checker is None or not getattr(conn, "_tsaccess_preflight", False):
            return None
        text = _text(conn, query)
        if text is None:
            return None
        verdict = checker.check(text, has_params=has_params)
        if verdict.status == "denied":
            user = conn.info.user
            role = getattr(conn, "_tsaccess_role", None)
            log.warning(
                "preflight denied",
                db_user=user,
                role=role,
                missing=[str(m) for m in verdict.missing],
            )
            hook = getattr(conn, "on_denied", None)
            if hook is not None:
                hook(text, verdict)
            raise PreflightDenied(text, verdict.missing, user=user, role=role)
        return text

    def _after(self, text: str | None) -> None:
        if text is not None and _INVALIDATES.match(text):
            checker: Checker | None = getattr(self.connection, "preflight", None)
            if checker is not None:
                checker.invalidate()
                checker.session_changed = True

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = self._preflight(query, params is not None)
        try:
            result = super().execute(query, params, **kwargs)
        except psycopg.errors.InsufficientPrivilege:
            checker = getattr(self.connection, "preflight", None)
            if checker is not None:
                checker.invalidate()  # the server refused what pre-flight allowed
            raise
        self._after(text)
        return result

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        self._preflight(query, True)
        super().executemany(query, params_seq, **kwargs)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        self._preflight(statement, params is not None)
        return super().copy(statement, params, **kwargs)

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        self._preflight(query, params is not None)
        return super().stream(query, params, **kwargs)


class PreflightConnection(psycopg.Connection[Any]):
    """A ``psycopg.Connection`` whose cursors pre-flight every statement.

    Created by ``tsaccess.connect(..., preflight=True)`` / ``create_pool(..., preflight=True)``.
    ``conn.preflight`` is the :class:`Checker`; set ``conn.on_denied`` to a callable
    ``(statement, verdict)`` to act on refusals (e.g. record a DENIED audit event).
    """

    preflight: Checker
    on_denied: Any = None

    def _tsaccess_setup(self, secure: Any, role: str | None, preflight: bool) -> None:
        self._tsaccess_preflight = preflight
        self.preflight = Checker(self)
        self.cursor_factory = PreflightCursor

    def _tsaccess_reset(self) -> None:
        # the pool reset restores role and settings: the snapshot stays valid unless the
        # borrower changed them (then it was taken for another role or search_path)
        if self.preflight.session_changed:
            self.preflight.invalidate()
            self.preflight.session_changed = False
        self.on_denied = None
