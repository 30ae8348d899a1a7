"""Verdicts: a statement's needs against the session's privileges, with caches.

A :class:`Checker` belongs to one connection: it caches analyses (per statement text), the
privilege snapshot (with a TTL) and allowed verdicts. A denial is confirmed with one live
``has_*_privilege`` query before it is reported, so a stale snapshot never causes a false
refusal; whatever the analysis cannot decide is *deferred* to the server.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from tsaccess.errors import MissingPrivilege
from tsaccess.preflight.model import ALL, Analysis, ColNeed, JoinNeed, Need, TableRef
from tsaccess.preflight.scan import scan_read
from tsaccess.preflight.snapshot import (
    COLUMN_PRIVS,
    Rel,
    Snapshot,
    catalog_rows,
    load_columns,
    take_snapshot,
    take_snapshot_for,
)
from tsaccess.preflight.text import shape

__all__ = ["Checker", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """Pre-flight's answer for one statement text."""

    status: Literal["allowed", "denied", "deferred"]
    """``deferred``: the analysis cannot tell; the statement is sent and the server decides."""
    statement: str
    missing: tuple[MissingPrivilege, ...] = ()
    """For a denied statement: every privilege it lacks (confirmed live)."""
    reason: str = ""
    """For a deferred statement: why."""
    generation: int = -1
    """The snapshot generation the verdict was computed with (cache validity)."""
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
        self,
        conn: psycopg.Connection[Any],
        *,
        ttl: float = 60.0,
        cache_size: int = 2048,
        fast_path: bool = True,
        as_role: str | None = None,
        login: str | None = None,
    ) -> None:
        self._conn = conn
        self.as_role = as_role
        """Check as this role, from ``conn``'s session (``has_*_privilege(role, ...)``: an
        administrator asking "would alice be refused?"); None: as the session itself."""
        self._login = login
        self.ttl = ttl
        self.fast_path = fast_path
        """Try :func:`~tsaccess.preflight.scan.scan_read` before parsing a new query shape
        (False: always parse; the differential tests compare both)."""
        self._cache_size = cache_size
        self._analyses: OrderedDict[tuple[str, bool], Analysis] = OrderedDict()
        self._verdicts: OrderedDict[tuple[str, bool], Verdict] = OrderedDict()
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
            s = self._snapshot = (
                take_snapshot(self._conn, self._generation)
                if self.as_role is None
                else take_snapshot_for(
                    self._conn, self.as_role, self._generation, login=self._login
                )
            )
        return s

    def _columns(self, rels: Iterable[Rel]) -> None:
        load_columns(self._conn, rels, role=self.as_role)

    def analysis(
        self, text: str, has_params: bool, shaped: str | None = None, key: Any = None
    ) -> Analysis:
        """The analysis of ``text``, cached under ``key`` (default: the text)."""
        key = key or (text, has_params)
        a = self._analyses.get(key)
        if a is None:
            from tsaccess.preflight.analysis import analyze  # sqlglot loads on first use

            a = analyze(text, has_params=has_params, shaped=shaped)
            self._analyses[key] = a
            if len(self._analyses) > self._cache_size:
                self._analyses.popitem(last=False)
        return a

    def _cached(self, key: tuple[str, bool]) -> Verdict | None:
        v = self._verdicts.get(key)
        s = self._snapshot
        if (
            v is not None
            and s is not None
            and v.generation == s.generation
            and time.monotonic() - s.taken <= self.ttl
        ):
            return v
        return None

    def _remember(self, key: tuple[str, bool], v: Verdict) -> None:
        self._verdicts[key] = v
        if len(self._verdicts) > self._cache_size:
            self._verdicts.popitem(last=False)

    def cached_verdict(self, text: str, *, has_params: bool = False) -> Verdict | None:
        """The verdict for ``text`` from the caches alone (no I/O), or None: the same text, or
        one differing only in its constants, checked with the current snapshot. (The async
        cursor asks this first and runs :meth:`check` in a thread only on a miss.)"""
        key = (text, has_params)
        v = self._cached(key)
        if v is not None:
            return v
        return self._cached_shape(text, key, shape(text))

    def _cached_shape(self, text: str, key: tuple[str, bool], shaped: str | None) -> Verdict | None:
        skey = (shaped, key[1]) if shaped is not None else key
        if skey == key:
            return None
        v = self._cached(skey)
        if v is None:
            return None
        v = Verdict(v.status, text, v.missing, v.reason, v.generation, v.caveats)
        self._remember(key, v)
        return v

    def check(self, text: str, *, has_params: bool = False) -> Verdict:
        """The verdict for ``text``: answered from the caches when the same text, or a text
        differing only in its constants (:func:`~tsaccess.preflight.text.shape`), was checked
        with the current snapshot."""
        key = (text, has_params)
        v = self._cached(key)
        if v is not None:
            return v
        shaped = shape(text)
        skey = (shaped, has_params) if shaped is not None else key
        v = self._cached_shape(text, key, shaped)
        if v is not None:
            return v
        if self.fast_path and shaped is not None and skey not in self._analyses:
            v = self._scanned(text, shaped)
            if v is not None:
                self._remember(key, v)
                self._remember(skey, v)
                return v
        a = self.analysis(text, has_params, shaped, skey)
        if a.deferred:
            v = Verdict("deferred", text, reason=a.deferred)
        else:
            if self._conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                return Verdict("deferred", text, reason="transaction is aborted")
            v = self._evaluate(text, a)
        # denials are never cached: each one is confirmed live before it is reported
        if v.status != "denied":
            self._remember(key, v)
            if skey != key:
                self._remember(skey, v)
        return v

    def _scanned(self, text: str, shaped: str) -> Verdict | None:
        """The fast path for a new query shape (:func:`~tsaccess.preflight.scan.scan_read`):
        an allowed verdict proven from the tokens, or None (the statement is analysed)."""
        if self._conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            return None
        snap = self.snapshot()
        caveats = scan_read(shaped, snap, self._columns)
        if caveats is None:
            return None
        return Verdict("allowed", text, generation=snap.generation, caveats=caveats)

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
            if isinstance(need, JoinNeed):
                self._join_need(snap, need, miss)
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
            if need.privilege == "INSERT" and rel.sequences:
                supplied = self._supplied(need, rel)
                if supplied is None:
                    caveats.add("sequence defaults")
                for col, seq_oid, seq in rel.sequences:
                    if supplied is not None and col not in supplied:
                        miss("USAGE", seq, oid=seq_oid)  # its default calls nextval()
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

    def _supplied(self, need: Need, rel: Rel) -> set[str] | None:
        """The columns an INSERT gives values for (None: unknown)."""
        if need.first_n:
            self._columns([rel])
            return set(rel.user_columns()[: need.first_n])
        if need.columns is None:
            return None
        return set(rel.user_columns()) if ALL in need.columns else set(need.columns)

    def _table_need(self, need: Need, rel: Rel, miss: Any) -> None:
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
        self._columns([rel])
        cols = rel.columns or []
        if need.first_n:
            wanted = rel.user_columns()[: need.first_n]
        elif need.columns and ALL in need.columns:
            wanted = rel.user_columns()
        else:
            wanted = [c for c in (need.columns or ()) if any(c == n for n, _ in cols)]
        if need.positions:
            user = rel.user_columns()
            wanted += [user[i] for i in need.positions if i < len(user)]
        privs = dict(cols)
        lacking = [c for c in wanted if not privs[c].get(p)]
        if lacking:
            miss(p, fq, lacking, oid=rel.oid)

    def _col_need(self, snap: Snapshot, need: ColNeed, miss: Any, unresolved: list[str]) -> None:
        for level in need.levels:
            rels: list[Rel] = []
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
            self._columns(rels)
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
        # no source has such a column: the name of a source is a whole-row reference
        for refs, names in zip(need.levels, need.aliases, strict=False):
            if need.column in names:
                ref = refs[names.index(need.column)]
                r = snap.resolve(ref) if ref is not None else None
                if isinstance(r, Rel) and ref is not None:
                    self._table_need(Need(need.privilege, ref, frozenset({ALL})), r, miss)
                return
        # else an output alias, a parameter... nothing to require

    def _join_need(self, snap: Snapshot, need: JoinNeed, miss: Any) -> None:
        """USING / NATURAL: each join column is read from the side's source that has it."""
        sides: list[list[Rel]] = []
        for refs in (need.left, need.right):
            rels: list[Rel] = []
            for ref in refs:
                r = snap.resolve(ref) if ref is not None else None
                if not isinstance(r, Rel):
                    return  # a source with unknown columns: cannot tell which side has what
                rels.append(r)
            sides.append(rels)
        self._columns(sides[0] + sides[1])
        names = [[set(r.user_columns()) for r in rels] for rels in sides]
        cols = need.columns
        if cols is None:  # NATURAL: the column names both sides have
            cols = frozenset(set().union(*names[0]) & set().union(*names[1]))
        for col in cols:
            for rels, side_names in zip(sides, names, strict=True):
                owners = [r for r, n in zip(rels, side_names, strict=True) if col in n]
                if len(owners) == 1:
                    o = owners[0]
                    self._table_need(
                        Need(need.privilege, TableRef(o.schema, o.name), frozenset({col})), o, miss
                    )

    def _confirm(self, missing: dict[tuple[str, str, int], set[str]]) -> list[MissingPrivilege]:
        """Re-check every missing privilege live; return those that are really missing."""
        parts: list[sql.Composable] = []
        keys: list[MissingPrivilege] = []
        who = sql.SQL("{}, ").format(sql.Literal(self.as_role)) if self.as_role else sql.SQL("")
        for (priv, obj, oid), cols in sorted(missing.items()):
            # by OID: a name cast (::regclass) would itself need USAGE on the schema
            if priv == "USAGE" and oid:  # a sequence: nextval() takes USAGE or UPDATE
                parts.append(
                    sql.SQL(
                        "(pg_catalog.has_sequence_privilege({1}{0}::oid, 'USAGE')"
                        " OR pg_catalog.has_sequence_privilege({1}{0}::oid, 'UPDATE'))"
                    ).format(sql.Literal(oid), who)
                )
                keys.append(MissingPrivilege(priv, obj, kind="sequence"))
            elif priv == "USAGE":
                parts.append(
                    sql.SQL("pg_catalog.has_schema_privilege({}{}, 'USAGE')").format(
                        who, sql.Literal(obj)
                    )
                )
                keys.append(MissingPrivilege(priv, obj))
            elif cols:
                for c in sorted(cols):
                    parts.append(
                        sql.SQL("pg_catalog.has_column_privilege({}{}::oid, {}, {})").format(
                            who, sql.Literal(oid), sql.Literal(c), sql.Literal(priv)
                        )
                    )
                    keys.append(MissingPrivilege(priv, obj, (c,)))
            else:
                fn = "has_any_column_privilege" if priv in COLUMN_PRIVS else "has_table_privilege"
                parts.append(
                    sql.SQL("pg_catalog.{}({}{}::oid, {})").format(
                        sql.Identifier(fn), who, sql.Literal(oid), sql.Literal(priv)
                    )
                )
                keys.append(MissingPrivilege(priv, obj))
        try:
            rows = catalog_rows(self._conn, sql.SQL("SELECT {}").format(sql.SQL(", ").join(parts)))
            row = rows[0] if rows else None
        except psycopg.Error:
            return []  # cannot confirm: never refuse on an unconfirmed snapshot
        really = [k for k, granted in zip(keys, row or (), strict=False) if not granted]
        if len(really) != len(keys):
            self.invalidate()  # the snapshot was stale
        merged: dict[tuple[str, str, str], list[str]] = {}
        for m in really:
            merged.setdefault((m.privilege, m.object, m.kind), []).extend(m.columns)
        return [MissingPrivilege(p, o, tuple(c), k) for (p, o, k), c in merged.items()]
