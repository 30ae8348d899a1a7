"""Verdicts: a statement's needs against the session's privileges, confirmed by the server.

A :class:`Checker` belongs to one connection: it caches analyses (per statement text), the
privilege snapshot (with a TTL) and allowed verdicts. Its decision is the generator
:meth:`Checker.steps`, which yields what it needs from the server
(:mod:`~tsaccess.preflight.drive`: catalog queries, probes): :meth:`Checker.check` answers them
on a synchronous connection; an asynchronous one answers the same requests
(:mod:`~tsaccess.preflight.drive_async`) after :meth:`Checker.quick` found no answer without I/O.

Never a false refusal: a statement is refused only when the server confirms, without running
it, that it would refuse it. Missing privileges are first checked live (``has_*_privilege``:
a stale snapshot never refuses); those the server checks when planning are then confirmed with
``EXPLAIN`` of the statement (which runs the same permission checks without executing it); those
of a command ``EXPLAIN`` cannot take (ownership, ``SET ROLE``, ``COPY`` to a file...) are the
command's first check, confirmed by the live privilege functions. When ``EXPLAIN`` runs
although the analysis found something missing, the statement is let through and the
disagreement is counted (:attr:`Checker.disagreements`) and logged (``preflight
disagreement``) so it can be fixed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from tsaccess._log import get_logger
from tsaccess.preflight.drive import Binding, Probe, ProbeResult, Query, Request, drive
from tsaccess.preflight.evaluate import Item, Result, evaluate
from tsaccess.preflight.lookups import session_facts
from tsaccess.preflight.model import RESET_ROLE, SESSION_ROLE, Analysis, Statement
from tsaccess.preflight.paths import path_for
from tsaccess.preflight.scan import scan_read
from tsaccess.preflight.snapshot import (
    Fetch,
    Rel,
    Snapshot,
    build_snapshot,
    columns_query,
    snapshot_query,
    store_columns,
)
from tsaccess.preflight.text import server_placeholders, shape
from tsaccess.preflight.utility import RESET_PATH
from tsaccess.preflight.verdict import Verdict, merge

__all__ = ["Checker", "Verdict"]

log = get_logger("tsaccess.preflight")

Steps = Generator[Request, Any, "Verdict"]


class Checker:
    """Pre-flight state of one connection: analysis cache, snapshot (TTL) and verdict cache.

    ``role``: check for another role than the session's (its privileges through
    ``has_*_privilege(role, ...)``, its refusals confirmed under ``SET ROLE role`` inside the
    probe's rolled-back transaction): an administrator's connection checking a user's
    statement, no password of the user's (``tsaccess check --user U``). ``login``: the login
    user whose sessions are checked (default: ``role``), scoped to ``role``: its search path
    (``ALTER ROLE ... SET search_path``, :func:`~tsaccess.preflight.snapshot.take_snapshot`)
    and its memberships (``SET ROLE``).
    """

    def __init__(
        self,
        conn: psycopg.BaseConnection[Any],
        *,
        ttl: float = 60.0,
        cache_size: int = 2048,
        fast_path: bool = True,
        role: str | None = None,
        login: str | None = None,
    ) -> None:
        self._conn = conn
        self.ttl = ttl
        self.fast_path = fast_path
        """Try :func:`~tsaccess.preflight.scan.scan_read` before parsing a new query shape
        (False: always parse; the differential tests compare both)."""
        self.role = role
        self.login = (login or role) if role is not None else None
        self._cache_size = cache_size
        self._analyses: OrderedDict[tuple[str, bool], Analysis] = OrderedDict()
        self._verdicts: OrderedDict[tuple[str, bool], Verdict] = OrderedDict()
        self._snapshot: Snapshot | None = None
        self._roles: dict[str, Snapshot] = {}
        self._generation = 0
        self.session_changed = False
        """Set when a statement may have changed role or settings (a pool reset then drops
        the snapshot, since the reset restores the pool's own role and settings)."""
        self.prepared: dict[str, tuple[str, tuple[str, ...]]] = {}
        """Statements prepared on the session with ``PREPARE``: name -> (text, search_path)."""
        self.disagreements = 0
        """Refusals the analysis predicted and the server's ``EXPLAIN`` did not confirm (the
        statements were let through)."""
        self.confirmations = 0
        """Round trips spent confirming refusals (live privilege checks and probes)."""

    # caches ------------------------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget the privilege snapshot (after SET ROLE, GRANT, DDL, a server refusal...)."""
        self._snapshot = None
        self._roles.clear()
        self._verdicts.clear()
        self._generation += 1

    def snapshot(self) -> Snapshot:
        """The current snapshot (taken now if there is none or it is older than ``ttl``)."""
        return drive(self._sync(), self._snapshot_steps())

    def _fresh(self, s: Snapshot | None) -> bool:
        return s is not None and time.monotonic() - s.taken <= self.ttl

    def _snapshot_steps(self) -> Generator[Request, Any, Snapshot]:
        s = self._snapshot
        if s is None or not self._fresh(s):
            self._verdicts.clear()
            self._roles.clear()
            self._generation += 1
            rows = yield Query(snapshot_query(self.role, self.login))
            user = self.login or self._conn.info.user
            s = build_snapshot(rows, user, self._generation, self.role, login=self.login)
            self._snapshot = s
        return s

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
        if v is not None and s is not None and v.generation == s.generation and self._fresh(s):
            return v
        return None

    def _remember(self, key: tuple[str, bool], v: Verdict) -> None:
        self._verdicts[key] = v
        if len(self._verdicts) > self._cache_size:
            self._verdicts.popitem(last=False)

    # the decision --------------------------------------------------------------------------
    def check(
        self,
        text: str,
        *,
        has_params: bool = False,
        params: Any = None,
        binding: Binding = "server",
    ) -> Verdict:
        """The verdict for ``text`` (``params``: the values the statement will be sent with,
        bound as ``binding`` binds them; a refusal is confirmed with them). Answered from the
        caches when the same text, or a text differing only in its constants
        (:func:`~tsaccess.preflight.text.shape`), was checked with the current snapshot."""
        v = self.quick(text, has_params)
        if v is not None:
            return v
        steps = self.steps(text, has_params, params is not None)
        return drive(self._sync(), steps, params, binding)

    def quick(self, text: str, has_params: bool = False) -> Verdict | None:
        """The verdict when it needs no I/O: cached for the text or its shape, or proven by the
        token scan with what the snapshot holds; None otherwise (:meth:`steps` decides). The
        common case of a new query shape, without the generators' overhead (an asynchronous
        connection asks it on the event loop, and drives :meth:`steps` only when it is None)."""
        v = self._cached((text, has_params))
        if v is not None:
            return v
        s = self._snapshot
        if (
            s is None
            or not self.fast_path
            or time.monotonic() - s.taken > self.ttl
            or self._conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.INERROR
        ):
            return None
        shaped = shape(text)
        if shaped is None:
            return None
        skey = (shaped, has_params)
        v = self._verdicts.get(skey)
        if v is not None and v.generation == s.generation:
            v = replace(v, statement=text)
        elif skey in self._analyses:
            return None
        else:
            try:
                caveats = scan_read(shaped, s, lambda rels: _need_columns(rels, s))
            except Fetch:
                return None
            if caveats is None:
                return None
            v = Verdict("allowed", text, generation=s.generation, caveats=caveats)
            self._remember(skey, v)
        self._remember((text, has_params), v)
        return v

    def _sync(self) -> psycopg.Connection[Any]:
        if not isinstance(self._conn, psycopg.Connection):
            raise TypeError(
                "Checker.check() and snapshot() run on a synchronous connection; drive "
                "Checker.steps() with the asynchronous connection's own I/O instead"
            )
        return self._conn

    def steps(self, text: str, has_params: bool = False, bound: bool | None = None) -> Steps:
        """The decision for ``text`` as a generator of requests (see the module docstring);
        ``bound``: the caller can bind the statement's parameters to a probe (default: when
        it has none)."""
        key = (text, has_params)
        v = self._cached(key)
        if v is not None:
            return v
        shaped = shape(text)
        skey = (shaped, has_params) if shaped is not None else key
        if skey != key:
            v = self._cached(skey)
            if v is not None:
                v = replace(v, statement=text)
                self._remember(key, v)
                return v
        if self._conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            return Verdict("deferred", text, reason="transaction is aborted")
        if self.fast_path and shaped is not None and skey not in self._analyses:
            v = yield from self._scanned(text, shaped)
            if v is not None:
                self._remember(key, v)
                self._remember(skey, v)
                return v
        a = self.analysis(text, has_params, shaped, skey)
        exact = [False]
        v = yield from self._decide(text, a, has_params, not has_params or bool(bound), exact)
        # denials are never cached: each one is confirmed before it is reported
        if v.status != "denied":
            self._remember(key, v)
            if skey != key and not exact[0]:
                self._remember(skey, v)
        return v

    def _fetching(self, fn: Any, *args: Any) -> Generator[Request, Any, Any]:
        """Call ``fn`` until it stops asking for catalog facts (:class:`Fetch`)."""
        for _ in range(32):
            try:
                return fn(*args)
            except Fetch as f:
                rows = yield Query(f.query, f.params)
                if f.store is not None:
                    f.store(rows)
        raise RuntimeError("pre-flight: facts requested without end")  # pragma: no cover

    def _scanned(self, text: str, shaped: str) -> Generator[Request, Any, Verdict | None]:
        """The fast path for a new query shape (:func:`~tsaccess.preflight.scan.scan_read`):
        an allowed verdict proven from the tokens, or None (the statement is analysed)."""
        snap = yield from self._snapshot_steps()
        caveats = yield from self._fetching(
            scan_read, shaped, snap, lambda rels: _need_columns(rels, snap)
        )
        if caveats is None:
            return None
        return Verdict("allowed", text, generation=snap.generation, caveats=caveats)

    def _role_snapshot(self, snap: Snapshot, role: str) -> Generator[Request, Any, Snapshot]:
        if role in (RESET_ROLE, SESSION_ROLE):
            if role == SESSION_ROLE:
                role = snap.session_user
            else:
                facts = yield from self._fetching(session_facts, snap)
                role = facts["reset_role"] if facts["reset_role"] != "none" else snap.session_user
        if role == snap.role:
            return snap
        found = self._roles.get(role)
        if found is None:
            rows = yield Query(snapshot_query(role, self.login))
            user = self.login or self._conn.info.user
            found = build_snapshot(rows, user, snap.generation, role, login=self.login)
            self._roles[role] = found
        if found.path_setting == snap.path_setting:
            return found
        # SET ROLE keeps the search_path setting (the login's, or one set earlier)
        path = path_for(snap.path_setting, role, found.usage, found.temp_schema)
        return replace(found, search_path=path, path_setting=snap.path_setting, _resolved={})

    def _with_path(self, snap: Snapshot, value: str) -> Generator[Request, Any, Snapshot]:
        if value == RESET_PATH:
            facts = yield from self._fetching(session_facts, snap)
            value = facts["reset_path"]
        path = path_for(value, snap.role, snap.usage, snap.temp_schema)
        return replace(snap, search_path=path, path_setting=value, _resolved={}, extra=snap.extra)

    def _decide(
        self, text: str, a: Analysis, has_params: bool, bound: bool, exact: list[bool]
    ) -> Steps:
        if not a.parts:
            return Verdict("deferred", text, reason=a.deferred or "nothing to check")
        snap = yield from self._snapshot_steps()
        base = snap
        status = self._conn.pgconn.transaction_status
        outside = self._conn.autocommit and status == psycopg.pq.TransactionStatus.IDLE
        several = len(a.parts) > 1
        replay: list[str] = []
        prepared = dict(self.prepared)
        reasons: list[str] = []
        caveats: set[str] = set()
        for k, part in enumerate(a.parts):
            st = part
            if st.executes is not None:
                found = prepared.get(st.executes)
                if found is None or found[1] != snap.search_path:
                    reasons.append(f"EXECUTE {st.executes}: not prepared by this connection")
                    continue
                inner = self.analysis(found[0], False)
                if len(inner.parts) != 1:
                    reasons.append(f"EXECUTE {st.executes}: its statement is not analysed")
                    continue
                explain = st.explain
                if st.executes not in self.prepared:  # prepared earlier in this string
                    explain = inner.parts[0].explain
                st = replace(inner.parts[0], text=st.text, explain=explain, effect=st.effect)
            if st.tx_block and outside and not several:
                reasons.append("the server refuses this command outside a transaction block")
                continue
            if st.no_tx_block and (not outside or several):
                reasons.append("the server refuses this command inside a transaction block")
                continue
            res: Result = yield from self._fetching(evaluate, st, snap)
            if res.items:
                self.confirmations += 1
                outcome = yield from self._confirm(
                    text, k, st, res, replay, has_params and k == 0, bound
                )
                if isinstance(outcome, Verdict):
                    return replace(outcome, generation=base.generation)
                if outcome is not None:
                    reasons.append(outcome)
                exact[0] = True
            reasons += res.uncertain + [f"unresolved name {u}" for u in res.unresolved]
            if st.deferred:
                reasons.append(st.deferred)
            caveats |= res.caveats
            effect = st.effect
            if effect.prepared is not None:
                prepared[effect.prepared[0]] = (effect.prepared[1], snap.search_path)
            if effect.opaque or (
                (effect.role is not None or effect.search_path is not None)
                and not effect.replayable
            ):
                if k + 1 < len(a.parts):
                    reasons.append("an earlier statement of the string changes what the next see")
                break
            if effect.role is not None:
                snap = yield from self._role_snapshot(snap, effect.role)
            if effect.search_path is not None:
                snap = yield from self._with_path(snap, effect.search_path)
            if effect.replayable:
                replay.append(st.text)
        if reasons:
            return Verdict("deferred", text, reason="; ".join(dict.fromkeys(reasons)),
                           generation=base.generation)  # fmt: skip
        return Verdict("allowed", text, generation=base.generation, caveats=tuple(sorted(caveats)))

    def _confirm(
        self,
        text: str,
        k: int,
        st: Statement,
        res: Result,
        replay: list[str],
        has_params: bool,
        bound: bool,
    ) -> Generator[Request, Any, Verdict | str | None]:
        """Confirm the missing privileges of the ``k``-th statement: a Verdict (denied), None
        (nothing is missing after all) or why the server must decide (str). One probe: the
        privileges live, then (if a privilege checked when planning is still missing)
        ``EXPLAIN`` of the statement."""
        items = res.items
        checks = sql.SQL("SELECT {}").format(sql.SQL(", ").join(i.granted for i in items))
        # EXPLAIN confirms what planning checks, and that nothing else stops the statement
        # before it runs (a run-time check is reached only by a statement that plans)
        planned_at = tuple(n for n, i in enumerate(items) if i.when in ("plan", "run"))
        setup = tuple(replay)
        if self.role is not None:  # as the role, with its login's search_path
            path = self._snapshot.path_setting if self._snapshot else ""
            scope = (
                sql.SQL("SET ROLE {}").format(sql.Identifier(self.role)),
                sql.SQL("SELECT pg_catalog.set_config('search_path', {}, true)").format(
                    sql.Literal(path)
                ),
            )
            setup = (*(q.as_string(self._conn) for q in scope), *setup)
        probe = Probe(None, setup, checks=checks)
        if planned_at and st.explain is not None:
            query_text = st.explain[len("EXPLAIN ") :]
            _, dollars = server_placeholders(query_text, client=False)
            if has_params and bound:
                probe = Probe(st.explain, setup, True, checks=checks, explain_if=planned_at)
            elif has_params or dollars:  # parameters without values: PREPARE infers their types
                generic, n = server_placeholders(query_text, client=has_params)
                probe = Probe(
                    generic, setup, generic=max(n, dollars), checks=checks, explain_if=planned_at
                )
            else:
                probe = Probe(st.explain, setup, checks=checks, explain_if=planned_at)
        result: ProbeResult = yield probe
        if result.setup or not result.checks:
            return f"the privileges could not be confirmed ({result.message})"
        really = [i for i, granted in zip(items, result.checks, strict=False) if not granted]
        if len(really) != len(items):
            self.invalidate()  # the snapshot was stale
        if not really:
            return None
        planned = [i for i in really if i.when == "plan"]
        reason = ""
        if st.explain is not None and any(i.when in ("plan", "run") for i in really):
            if result.sqlstate is not None and result.sqlstate != "42501":
                return f"the server refuses it for another reason ({result.message})"
            if result.sqlstate is None and planned:
                self._disagree(text, planned)
                really = [i for i in really if i.when != "plan"]
                if not really:
                    return None
            elif result.sqlstate is not None:
                reason = result.message
        return Verdict("denied", text, merge(really), reason=reason)

    def _disagree(self, text: str, items: list[Item]) -> None:
        self.disagreements += 1
        shown = shape(text)
        log.warning(
            "preflight disagreement",
            statement=(shown or text.split(None, 1)[0] if text.strip() else "")[:200],
            missing=[str(i.missing) for i in items],
            server="planned it (EXPLAIN ran)",
            disagreements=self.disagreements,
        )


def _need_columns(rels: Any, snap: Snapshot) -> None:
    todo = [r for r in rels if isinstance(r, Rel) and r.columns is None]
    if todo:
        query, params = columns_query([r.oid for r in todo], snap.for_role)
        raise Fetch("columns", query, params, lambda rows: store_columns(todo, rows))
