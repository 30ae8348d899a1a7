"""Table and column needs against a privilege snapshot (the half of
:mod:`~tsaccess.preflight.evaluate` that reads relations): what is missing, what cannot be told.

Pure: no I/O. Columns the snapshot has not loaded raise
:class:`~tsaccess.preflight.snapshot.Fetch`. Each missing privilege comes with the expression
that confirms it live (``has_*_privilege``), so the checker never refuses on a stale snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from psycopg import sql

from tsaccess.errors import MissingPrivilege
from tsaccess.preflight.model import (
    ALL,
    ColNeed,
    Derived,
    JoinNeed,
    Need,
    Renamed,
    SourceRef,
    TableRef,
)
from tsaccess.preflight.snapshot import (
    COLUMN_PRIVS,
    Fetch,
    Rel,
    Snapshot,
    columns_query,
    store_columns,
)

__all__ = ["Item", "Result", "TableChecks"]

When = Literal["plan", "run", "command"]


@dataclass(frozen=True)
class Item:
    """One missing privilege: how it shows (``missing``), when the server checks it, and the
    boolean expression that is true when it is granted after all (live confirmation)."""

    missing: MissingPrivilege
    when: When
    granted: sql.Composable


@dataclass
class Result:
    """What a statement lacks for certain (``items``), and why else it cannot be decided."""

    items: list[Item] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    caveats: set[str] = field(default_factory=set)


class TableChecks:
    """Records what is missing (``r``) for the needs on tables."""

    def __init__(self, snap: Snapshot, result: Result) -> None:
        self.snap = snap
        self.r = result
        role = snap.for_role
        self.who: sql.Composable = (
            sql.SQL("") if role is None else sql.SQL("{}, ").format(sql.Literal(role))
        )

    # recording ---------------------------------------------------------------------------
    def miss(
        self,
        priv: str,
        obj: str,
        granted: sql.Composable,
        cols: Iterable[str] = (),
        kind: str = "",
        when: When = "plan",
    ) -> None:
        self.r.items.append(Item(MissingPrivilege(priv, obj, tuple(cols), kind), when, granted))

    def fn(self, name: str, *args: sql.Composable) -> sql.Composable:
        return sql.SQL("pg_catalog.{}({}{})").format(
            sql.Identifier(name), self.who, sql.SQL(", ").join(args)
        )

    def miss_table(self, priv: str, rel: Rel, cols: Iterable[str] = ()) -> None:
        fq = f"{rel.schema}.{rel.name}"
        oid = sql.Literal(rel.oid)
        cols = list(cols)
        if cols:
            for c in cols:
                check = self.fn("has_column_privilege", oid, sql.Literal(c), sql.Literal(priv))
                self.miss(priv, fq, check, (c,))
            return
        name = "has_any_column_privilege" if priv in COLUMN_PRIVS else "has_table_privilege"
        self.miss(priv, fq, self.fn(name, oid, sql.Literal(priv)))

    def miss_usage(self, schema: str, when: When = "plan") -> None:
        check = self.fn("has_schema_privilege", sql.Literal(schema), sql.Literal("USAGE"))
        self.miss("USAGE", schema, check, when=when)

    # tables ----------------------------------------------------------------------------
    def columns(self, rels: Iterable[Rel]) -> None:
        todo = [r for r in rels if r.columns is None]
        if todo:
            query, params = columns_query([r.oid for r in todo], self.snap.for_role)
            raise Fetch("columns", query, params, lambda rows: store_columns(todo, rows))

    def need(self, need: Need) -> None:
        rel = self.snap.resolve(need.table)
        if rel == "system":
            return
        if rel is None:
            self.r.unresolved.append(str(need.table))
            return
        if need.table.schema is not None and not rel.usage:
            self.miss_usage(rel.schema)
            return
        self.r.caveats.update(rel.caveats)
        if need.privilege == "INSERT" and rel.sequences:
            supplied = self.supplied(need, rel)
            for col, seq_oid, seq in rel.sequences:
                if supplied is not None and col in supplied:
                    continue
                if supplied is None or not need.rows:
                    self.r.uncertain.append(f"the default of {rel.name}.{col} calls nextval()")
                    continue
                oid = sql.Literal(seq_oid)
                check = sql.SQL("({} OR {})").format(
                    self.fn("has_sequence_privilege", oid, sql.Literal("USAGE")),
                    self.fn("has_sequence_privilege", oid, sql.Literal("UPDATE")),
                )
                self.miss("USAGE", seq, check, kind="sequence", when="run")
        self.table_need(need, rel)

    def supplied(self, need: Need, rel: Rel) -> set[str] | None:
        """The columns an INSERT gives values for (None: unknown)."""
        if need.first_n:
            self.columns([rel])
            return set(rel.user_columns()[: need.first_n])
        if need.columns is None:
            return None
        self.columns([rel])
        return set(rel.user_columns()) if ALL in need.columns else set(need.columns)

    def table_need(self, need: Need, rel: Rel) -> None:
        p = need.privilege
        if rel.table.get(p):
            return
        if p in ("DELETE", "TRUNCATE"):
            self.miss_table(p, rel)
            return
        if not rel.any.get(p):  # nothing of that kind: name the columns the statement uses
            self.miss_table(p, rel, sorted(need.columns - {ALL}) if need.columns else ())
            return
        if need.columns is None and not need.first_n:
            return  # some column is granted: enough for "table or any column"
        self.columns([rel])
        cols = rel.columns or []
        if need.first_n:
            wanted = rel.user_columns()[: need.first_n]
        elif need.columns and ALL in need.columns:
            wanted = rel.user_columns()
        else:
            wanted = [c for c in (need.columns or ()) if rel.has_column(c)]
        if need.positions:
            user = rel.user_columns()
            wanted += [user[i] for i in need.positions if i < len(user)]
        privs = dict(cols)
        lacking = [c for c in wanted if not privs[c].get(p)]
        if lacking:
            self.miss_table(p, rel, lacking)

    def source_rel(self, ref: SourceRef) -> Rel | Literal["system", "unknown"] | None:
        if ref is None or isinstance(ref, Derived):
            return "unknown"
        table = ref.table if isinstance(ref, Renamed) else ref
        return self.snap.resolve(table)

    @staticmethod
    def visible(ref: SourceRef, rel: Rel) -> dict[str, str]:
        """The names a table source shows, to the table's columns they read."""
        cols = rel.user_columns()
        if isinstance(ref, Renamed):
            shown = dict(zip(ref.renames, cols, strict=False))
            for c in cols[len(ref.renames) :]:
                shown.setdefault(c, c)
            for c, _ in rel.columns or []:
                if c not in cols:
                    shown.setdefault(c, c)  # system columns keep their names
            return shown
        return {c: c for c, _ in rel.columns or []}

    def col_need(self, need: ColNeed) -> None:
        last = len(need.levels) - 1
        for depth, level in enumerate(need.levels):
            rels: list[tuple[SourceRef, Rel]] = []
            unknown = False
            for ref in level:
                if isinstance(ref, Derived):
                    if need.column in ref.columns:
                        return  # a subquery's output column
                    continue
                r = self.source_rel(ref)
                if r == "system":
                    return
                if r == "unknown":
                    unknown = True
                    continue
                if r is None:
                    self.r.unresolved.append(str(ref.table if isinstance(ref, Renamed) else ref))
                    return
                rels.append((ref, r))
            if (
                depth == last
                and not unknown
                and len(rels) == 1
                and not isinstance(rels[0][0], Renamed)
                and rels[0][1].table.get(need.privilege)
            ):
                return  # the only source in reach, granted in full
            self.columns(r for _, r in rels)
            owners = [(ref, r) for ref, r in rels if need.column in self.visible(ref, r)]
            if len(owners) > 1:
                return  # ambiguous: the server reports it
            if owners:
                if depth < need.ghost:
                    return  # found in a subquery the server folds away
                ref, rel = owners[0]
                column = self.visible(ref, rel)[need.column]
                self.table_need(Need(need.privilege, TableRef(rel.schema, rel.name),
                                     frozenset({column})), rel)  # fmt: skip
                return
            if unknown:
                return  # a source with unknown columns may provide it: do not guess
        # no source has such a column: the name of a source is a whole-row reference
        for depth, (refs, names) in enumerate(zip(need.levels, need.aliases, strict=False)):
            if need.column in names:
                ref = refs[names.index(need.column)]
                r = self.source_rel(ref)
                if isinstance(r, Rel) and depth >= need.ghost:
                    self.table_need(
                        Need(need.privilege, TableRef(r.schema, r.name), frozenset({ALL})), r
                    )
                return
        # else an output alias, a parameter... nothing to require

    def join_need(self, need: JoinNeed) -> None:
        """USING / NATURAL: each join column is read from the side's source that has it."""
        sides: list[list[tuple[SourceRef, Rel]]] = []
        derived: list[frozenset[str] | None] = []
        for refs in (need.left, need.right):
            rels: list[tuple[SourceRef, Rel]] = []
            known: set[str] | None = set()
            for ref in refs:
                if isinstance(ref, Derived):
                    if known is not None:
                        known |= ref.columns
                    continue
                r = self.source_rel(ref)
                if not isinstance(r, Rel):
                    known = None
                    continue
                rels.append((ref, r))
            sides.append(rels)
            derived.append(frozenset(known) if known is not None else None)
        self.columns(r for side in sides for _, r in side)
        shown = [[self.visible(ref, r) for ref, r in side] for side in sides]
        cols = need.columns
        if cols is None:  # NATURAL: the column names both sides have
            left, right = derived
            if left is None or right is None:
                return  # a side with unknown columns: which names are common is unknown
            names = [set(d).union(*shown[k]) for k, d in enumerate((left, right))]
            cols = frozenset(names[0] & names[1])
        for col in cols:
            for k, side in enumerate(sides):
                owners = [(ref, r) for (ref, r), s in zip(side, shown[k], strict=True) if col in s]
                if len(owners) == 1:
                    ref, r = owners[0]
                    column = self.visible(ref, r)[col]
                    self.table_need(
                        Need(need.privilege, TableRef(r.schema, r.name), frozenset({column})), r
                    )
