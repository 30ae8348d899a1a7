"""Statement analysis: which privileges a SQL text needs — the only package that imports sqlglot.

A text is split into its statements where the server splits it
(:func:`tsaccess.preflight.lexer.split`). Each query (SELECT, set operations, VALUES, INSERT,
UPDATE, DELETE, MERGE, TRUNCATE, COPY, and EXPLAIN of them) is parsed (postgres dialect) and
walked scope by scope (:mod:`~tsaccess.preflight.analysis.walk`,
:mod:`~tsaccess.preflight.analysis.statements`); every other command is read from its tokens
(:mod:`tsaccess.preflight.utility`), the query it carries (``PREPARE``, ``DECLARE``,
``CREATE TABLE ... AS``) parsed as above. The functions a statement calls come from its tokens.
The result is an :class:`~tsaccess.preflight.model.Analysis` in tsaccess's own types.

Whenever the analysis is not sure it *defers* (the server decides): a query sqlglot cannot
parse, or a form the walker does not model, keeps the needs its tokens show for certain (the
relations it names: a relation the session has no privilege on at all refuses it), commands
it does not know, texts too long to analyse quickly...
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import sqlglot
from sqlglot import exp

from tsaccess.preflight.analysis.statements import Analyzer, Defer
from tsaccess.preflight.lexer import (
    CALL_KEYWORDS,
    NOT_CALLED,
    Tok,
    calls,
    leading_comments_end,
    split,
    tokens,
)
from tsaccess.preflight.model import (
    Analysis,
    ColNeed,
    Effect,
    JoinNeed,
    Need,
    ObjNeed,
    Priv,
    Statement,
    TableRef,
)
from tsaccess.preflight.text import MAX_ANALYSED, decode_unicode_names, explain_prefix, shape
from tsaccess.preflight.utility import Inner, analyze_command

__all__ = ["analyze"]

_POSTGRES = sqlglot.Dialect.get_or_raise("postgres")
_L_PAREN = sqlglot.TokenType.L_PAREN
_DOT = sqlglot.TokenType.DOT
_QUOTED = sqlglot.TokenType.IDENTIFIER
_PLACEHOLDER = re.compile(r"%%|%\(\w+\)[sbt]|%[sbt]")

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
    exp.Values,
)
_EXPLAINABLE = (exp.Select, exp.SetOperation, exp.Insert, exp.Update, exp.Delete, exp.Merge,
                exp.Subquery, exp.Values)  # fmt: skip
_QUERY_WORDS = frozenset(
    {"select", "with", "values", "table", "insert", "update", "delete", "merge", "truncate", "copy"}
)


_FIRST = re.compile(r"[A-Za-z_]+|\(")
_WORDLIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def _sqlglot_text(text: str, has_params: bool) -> str:
    if not has_params:
        return text
    return _PLACEHOLDER.sub(lambda m: "%" if m.group(0) == "%%" else "%s", text)


def analyze(text: str, *, has_params: bool = False, shaped: str | None = None) -> Analysis:
    """The privileges ``text`` needs (every statement in it), or why it is deferred.

    ``shaped``: :func:`tsaccess.preflight.text.shape` of ``text`` if the caller has it. Never
    raises: anything unexpected is a deferral.
    """
    try:
        return _analyze(text, has_params, shaped)
    except Exception as exc:  # the promise: a deferral, never an exception
        return Analysis(deferred=f"analysis failed ({exc.__class__.__name__})")


def _analyze(text: str, has_params: bool, shaped: str | None) -> Analysis:
    if len(text) > MAX_ANALYSED:
        short = shaped if shaped is not None else shape(text)
        if short is None or len(short) > MAX_ANALYSED:
            return Analysis(
                deferred=f"statement of {len(text)} characters: too long to analyse before "
                f"sending (limit {MAX_ANALYSED}, after collapsing literal lists)"
            )
        text = short  # needs exactly what the text needs, in far fewer characters
    found = [(text, None)] if ";" not in text else split(text)  # one statement: no split
    if found is None:
        return Analysis(deferred="not split into statements (an unterminated quote or comment)")
    pieces: list[tuple[str, list[Tok] | None]] = list(found)
    if not pieces:
        return Analysis(deferred="no statement", statements=0)
    parts = tuple(statement(piece, toks, has_params) for piece, toks in pieces)
    needs: list[Need | ColNeed | JoinNeed | ObjNeed] = []
    caveats: set[str] = set()
    for p in parts:
        needs.extend(p.needs)
        caveats.update(p.caveats)
    deferred = next((p.deferred for p in parts if p.deferred), "")
    return Analysis(tuple(needs), deferred, len(parts), tuple(sorted(caveats)), parts)


def statement(text: str, toks: list[Tok] | None = None, has_params: bool = False) -> Statement:
    """What one statement needs (``toks``: its tokens, when already read)."""
    m = _FIRST.match(text, leading_comments_end(text))
    first = m.group(0).lower() if m else ""
    if first == "explain":
        return _explain(text, has_params)
    if first in _QUERY_WORDS or first == "(":
        return _query(text, toks, has_params)
    toks = toks if toks is not None else tokens(text)
    if not toks:
        return Statement(text, deferred="not read (an unterminated quote or comment)")
    found, inner = analyze_command(text, toks)
    if inner is None:
        return found
    return _with_inner(found, inner, has_params)


def _explain(text: str, has_params: bool) -> Statement:
    prefix = explain_prefix(text)
    inner_text = text[prefix[0] :] if prefix else ""
    if prefix is None or not inner_text.strip():
        return Statement(text, deferred="EXPLAIN of an unusual form")
    inner = statement(inner_text, None, has_params)
    if inner.explain is None:
        return Statement(text, deferred="EXPLAIN of a statement it cannot take")
    analyze_it = prefix[1]
    needs = tuple(
        n
        for n in inner.needs
        if analyze_it
        or not isinstance(n, ObjNeed)
        or n.when == "plan"
        or (n.kind == "database" and n.privilege == "TEMP")
    )
    explain = inner.explain if inner.explain.startswith("EXPLAIN") else "EXPLAIN " + inner_text
    effect = inner.effect if analyze_it else Effect()
    return replace(inner, text=text, needs=needs, explain=explain, effect=effect, tx_block=False)


def _rewrite(text: str, toks: list[Tok]) -> str:
    """The forms sqlglot cannot parse, without what does not change privileges:
    ``OVERRIDING {SYSTEM|USER} VALUE``, ``ORDER BY x USING <op>``."""
    cut: list[tuple[int, int]] = []
    for k, t in enumerate(toks):
        if t.is_word("overriding") and k + 2 < len(toks) and toks[k + 2].is_word("value"):
            cut.append((t.start, toks[k + 2].end))
        elif t.is_word("using") and k + 1 < len(toks) and toks[k + 1].kind == "op":
            j = k + 1
            while j < len(toks) and toks[j].kind == "op" and toks[j].value not in "(),;":
                j += 1
            if j > k + 1:
                cut.append((t.start, toks[j - 1].end))
    if not cut:
        return text
    out, at = [], 0
    for start, end in cut:
        out.append(text[at:start])
        at = end
    out.append(text[at:])
    return " ".join(out)


def _call_needs(toks: list[Tok]) -> list[ObjNeed]:
    return [ObjNeed("function", "EXECUTE", name, schema) for schema, name in calls(toks)]


def _sqlglot_calls(raw: list[Any]) -> list[ObjNeed]:
    """The functions sqlglot's tokens show a call of: ``name (`` and ``schema . name (`` (a
    table before its column list is no call), as :func:`tsaccess.preflight.lexer.calls`."""
    out: list[ObjNeed] = []
    for k in range(1, len(raw)):
        if raw[k].token_type != _L_PAREN:
            continue
        before, schema = k - 2, None
        name = _token_name(raw[k - 1])
        if name is None or (name in CALL_KEYWORDS and raw[k - 1].token_type != _QUOTED):
            continue
        if before >= 1 and raw[before].token_type == _DOT:
            schema = _token_name(raw[before - 1])
            if schema is None:
                continue
            before -= 2
        if before >= 0 and str(raw[before].text).lower() in NOT_CALLED:
            continue
        need = ObjNeed("function", "EXECUTE", name, schema)
        if need not in out:
            out.append(need)
    return out


def _token_name(tok: Any) -> str | None:
    if tok.token_type == _QUOTED:
        return str(tok.text)
    text = str(tok.text)
    return text.lower() if _WORDLIKE.fullmatch(text) else None


def _query(text: str, toks: list[Tok] | None, has_params: bool) -> Statement:
    lower = text.lower()
    if "overriding" in lower or "using" in lower:
        toks = toks if toks is not None else tokens(text) or []
        source = _rewrite(text, toks)
    else:
        source = text
    try:
        sqltext = decode_unicode_names(_sqlglot_text(source, has_params))
        raw = _POSTGRES.tokenize(sqltext)
        trees = [t for t in _POSTGRES.parser().parse(raw, sqltext) if t is not None]
    except Exception as exc:
        return _fallback(text, toks, f"not parsed ({exc.__class__.__name__})")
    if len(trees) != 1 or not isinstance(trees[0], _ALLOWED_ROOTS):
        kind = type(trees[0]).__name__ if trees else "empty"
        return _fallback(text, toks, f"{kind} statement (checked by the server)")
    tree = trees[0]
    a = Analyzer()
    try:
        a.statement(tree, frozenset())
    except Defer as d:
        return _fallback(text, toks, str(d))
    needs: list[Need | ColNeed | JoinNeed | ObjNeed] = [*a.needs, *_sqlglot_calls(raw)]
    effect = a.effect or Effect()
    deferred = ""
    if a.opaque_calls:
        deferred = "a sequence, setting or name given as a computed value"
    explain: str | None = "EXPLAIN " + text if isinstance(tree, _EXPLAINABLE) else None
    into = tree.args.get("into") if isinstance(tree, exp.Select) else None
    if into is not None:  # SELECT ... INTO t: CREATE TABLE t AS
        table = into.this if isinstance(into.this, exp.Table) else None
        schema = table.args.get("db") if table is not None else None
        if into.args.get("temporary"):
            needs.append(ObjNeed("database", "TEMP", "", when="command"))
        else:
            name = schema.name if schema is not None else ""
            needs.append(ObjNeed("schema", "CREATE", name, when="command"))
        effect = Effect(opaque=True)
    if isinstance(tree, exp.Copy):
        toks = toks if toks is not None else tokens(text) or []
        needs.extend(_copy_files(toks))
        explain = _copy_query(text, toks)
    if effect.role is not None or effect.search_path is not None:
        effect = replace(effect, replayable=_only_set_config(tree))
    return Statement(text, tuple(needs), deferred, tuple(sorted(a.caveats)), explain, effect)


def _only_set_config(tree: exp.Expression) -> bool:
    """``SELECT set_config('role', 'x', false)`` and nothing else: a probe may replay it."""
    if not isinstance(tree, exp.Select) or len(tree.expressions) != 1:
        return False
    if any(tree.args.get(k) for k in ("from_", "from", "where", "joins", "with_", "into")):
        return False
    e = tree.expressions[0]
    e = e.this if isinstance(e, exp.Alias) else e
    return (
        isinstance(e, exp.Anonymous)
        and str(e.this).lower() == "set_config"
        and all(isinstance(x, exp.Literal | exp.Boolean) for x in e.expressions)
    )


def _copy_files(toks: list[Tok]) -> list[ObjNeed]:
    """``COPY ... TO 'file'`` / ``FROM 'file'`` / ``PROGRAM``: the server's files and programs
    (checked before anything else)."""
    depth = 0
    for k, t in enumerate(toks):
        if t.kind == "op":
            depth += (t.value == "(") - (t.value == ")")
        if depth or t.kind != "word" or t.value not in ("to", "from") or k + 1 >= len(toks):
            continue
        nxt = toks[k + 1]
        if nxt.is_word("program"):
            role = "pg_execute_server_program"
        elif nxt.kind == "string":
            role = "pg_write_server_files" if t.value == "to" else "pg_read_server_files"
        else:
            return []
        return [ObjNeed("predefined", "USAGE", role, when="command")]
    return []


def _copy_query(text: str, toks: list[Tok]) -> str | None:
    """``COPY (query) TO ...``: ``EXPLAIN query``."""
    if len(toks) < 2 or not (toks[1].kind == "op" and toks[1].value == "("):
        return None
    depth = 0
    for t in toks[1:]:
        if t.kind == "op":
            depth += (t.value == "(") - (t.value == ")")
            if depth == 0:
                return "EXPLAIN " + text[toks[1].end : t.start]
    return None


def _fallback(text: str, toks: list[Tok] | None, reason: str) -> Statement:
    """A query the walker cannot model: deferred, with what its tokens show for certain —
    each relation named after FROM, JOIN, INTO, UPDATE needs some privilege of its kind."""
    toks = toks if toks is not None else tokens(text)
    if not toks:
        return Statement(text, deferred=reason)
    ctes = {
        toks[k].ident
        for k in range(len(toks) - 2)
        if toks[k].ident is not None
        and toks[k + 1].is_word("as")
        and (toks[k + 2].kind == "op" or toks[k + 2].is_word("materialized", "not"))
    }
    first = toks[0].value if toks[0].kind == "word" else "("
    needs: list[Need | ColNeed | JoinNeed | ObjNeed] = []
    for k, t in enumerate(toks[:-1]):
        prev = toks[k - 1] if k else None
        priv: Priv
        if t.is_word("from"):
            priv = "DELETE" if prev is not None and prev.is_word("delete") else "SELECT"
        elif t.is_word("join", "only"):
            priv = "SELECT"
        elif t.is_word("into") and first in ("insert", "merge", "with"):
            priv = "INSERT"
        elif t.is_word("update") and (prev is None or (prev.kind == "op" and prev.value == ")")):
            priv = "UPDATE"
        elif t.is_word("table") and (prev is None or prev.kind == "op" or prev.is_word("truncate")):
            priv = "TRUNCATE" if prev is not None and prev.is_word("truncate") else "SELECT"
        else:
            continue
        name, j = _name_at(toks, k + 1)
        if name is None or (j < len(toks) and toks[j].kind == "op" and toks[j].value == "("
                            and priv != "INSERT"):  # fmt: skip
            continue  # a function call
        if name.schema is None and name.name in ctes:
            continue
        needs.append(Need(priv, name))
    needs.extend(_call_needs(toks))
    explainable = first in _QUERY_WORDS - {"truncate", "copy"} or first == "("
    return Statement(text, tuple(needs), reason, (), "EXPLAIN " + text if explainable else None)


def _name_at(toks: list[Tok], k: int) -> tuple[TableRef | None, int]:
    if k >= len(toks) or toks[k].ident is None or (toks[k].kind == "word" and toks[k].value in (
        "lateral", "select", "only", "values", "rows", "set", "of", "nowait", "skip", "with"
    )):  # fmt: skip
        return None, k
    first = toks[k].ident
    assert first is not None
    if k + 2 < len(toks) and toks[k + 1].kind == "op" and toks[k + 1].value == ".":
        second = toks[k + 2].ident
        if second is None:
            return None, k
        return TableRef(first, second), k + 3
    return TableRef(None, first), k + 1


def _with_inner(found: Statement, inner: Inner, has_params: bool) -> Statement:
    """A command carrying a query: what the query needs where the command runs it."""
    inner_text = found.text[inner.start :]
    if not inner_text.strip():
        return replace(found, deferred=found.deferred or "no query where one belongs")
    query = statement(inner_text, None, has_params)
    if inner.mode in ("prepare", "parse"):
        needs = _parse_time(query.needs)
        return replace(found, needs=found.needs + needs)
    explain = "EXPLAIN " + (inner_text if inner.mode == "declare" else found.text)
    return replace(
        found,
        needs=found.needs + query.needs,
        deferred=found.deferred or query.deferred,
        caveats=query.caveats,
        explain=explain,
    )


def _parse_time(needs: tuple[Need | ColNeed | JoinNeed | ObjNeed, ...]) -> tuple[ObjNeed, ...]:
    """What parsing a query checks: ``USAGE`` on the schemas it names."""
    out: list[ObjNeed] = []
    for n in needs:
        schema = None
        if isinstance(n, Need):
            schema = n.table.schema
        elif isinstance(n, ObjNeed) and n.kind == "function":
            schema = n.schema
        elif isinstance(n, ObjNeed) and n.kind == "schema" and n.privilege == "USAGE":
            schema = n.name if n.when != "run" else None
        if schema:
            need = ObjNeed("schema", "USAGE", schema, when="command")
            if need not in out:
                out.append(need)
    return tuple(out)
