"""The head of an INSERT, UPDATE or DELETE, for the token scan
(:mod:`~tsaccess.preflight.scan`): which table it writes, which columns, and whether the role
may write them. Only the simple forms are read (a column list for INSERT, no UPDATE ... FROM,
no DELETE ... USING, no ON CONFLICT); any other form goes to the analysis."""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable

from tsaccess.preflight.snapshot import Rel

__all__ = ["DML_WORDS", "WORD_START", "Ref", "Target", "dml_target", "writable"]

WORD_START = frozenset(string.ascii_letters + '_"')

Ref = tuple[str | None, str, int, int, bool]
"""A relation in a statement: schema (None: unqualified), name, the index of the name's token,
the index of the alias's token (-1: none), whether a column alias list follows."""

DML_WORDS = {"insert": {"insert", "into"}, "update": {"update"}, "delete": {"delete"}}
"""The write words a statement of each kind holds once, at its head."""


class Target:
    """The table an INSERT, UPDATE or DELETE writes, as the scan reads it."""

    def __init__(self, kind: str, ref: Ref, columns: list[str], rest: int) -> None:
        self.kind = kind
        self.ref = ref
        self.columns = columns
        """INSERT: the column list; UPDATE: the columns SET."""
        self.rest = rest
        """Where the statement's tail starts (VALUES/SELECT, SET..., WHERE...)."""


def _target_ref(toks: list[str], names: list[str], i: int, follows: tuple[str, ...]) -> Ref | None:
    """``[schema .] name [[AS] alias]`` at ``i``, followed by one of ``follows`` (or the end)."""
    n = len(toks)
    if i >= n or toks[i][0] not in WORD_START:
        return None
    schema, at, j = None, i, i + 1
    if j < n and toks[j] == ".":
        if j + 1 >= n or toks[j + 1][0] not in WORD_START:
            return None
        schema, at, j = names[i], j + 1, j + 2
    alias = -1
    if j < n and toks[j] == "as":
        j += 1
        if j >= n or toks[j][0] not in WORD_START:
            return None
        alias, j = j, j + 1
    elif j < n and toks[j] not in follows and toks[j][0] in WORD_START:
        alias, j = j, j + 1
    if j < n and toks[j] not in follows:
        return None
    return (schema, names[at], at, alias, False)


def dml_target(toks: list[str], names: list[str]) -> Target | None:
    """``INSERT INTO t (cols) VALUES|SELECT ...``, ``UPDATE t SET c = ... [WHERE]``, ``DELETE
    FROM t [WHERE]`` (with RETURNING); None for any other form (the analysis reads it)."""
    kind = toks[0]
    i = 1
    if kind in ("insert", "delete"):
        if toks[1:2] != ["into" if kind == "insert" else "from"]:
            return None
        i = 2
    if toks[i : i + 1] == ["only"]:
        i += 1
    follows = {"insert": ("(",), "update": ("set",), "delete": ("where", "returning")}[kind]
    ref = _target_ref(toks, names, i, follows)
    if ref is None:
        return None
    j = (ref[3] if ref[3] >= 0 else ref[2]) + 1
    columns: list[str] = []
    if kind == "insert":
        if toks[j : j + 1] != ["("]:
            return None  # INSERT INTO t VALUES: the first N columns, the analysis counts
        k = j + 1
        while k < len(toks) and toks[k] != ")":
            if toks[k] != ",":
                if toks[k][0] not in WORD_START:
                    return None
                columns.append(names[k])
            k += 1
        j = k + 1
        if toks[j : j + 1] not in (["values"], ["select"]) or "conflict" in toks:
            return None
    elif kind == "update":
        depth, expect = 0, True
        for k in range(j + 1, len(toks)):
            t = toks[k]
            depth += (t == "(") - (t == ")")
            if depth == 0 and t in ("where", "returning"):
                break
            if depth == 0 and t == "from":
                return None  # UPDATE ... FROM: the analysis joins it
            if expect:
                if t[0] not in WORD_START:
                    return None  # SET (a, b) = ...
                columns.append(names[k])
            expect = depth == 0 and t == ","
    elif "using" in toks[j:]:
        return None  # DELETE ... USING: the analysis joins it
    return Target(kind, ref, columns, j)


def writable(target: Target, rel: Rel, load_columns: Callable[[Iterable[Rel]], None]) -> bool:
    """The role may write what the statement writes: DELETE on the table, INSERT or UPDATE on
    the table or on every column it lists; an INSERT leaves no column whose default calls a
    sequence the role may not use."""
    priv = target.kind.upper()
    if target.kind == "insert" and any(c not in target.columns for c, _, _ in rel.sequences):
        return False
    if rel.table[priv]:
        return True
    if target.kind == "delete" or not rel.any[priv]:
        return False
    load_columns([rel])
    granted = {c for c, p in rel.columns or [] if p[priv]}
    return all(c in granted for c in target.columns)
