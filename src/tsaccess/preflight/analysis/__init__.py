"""Statement analysis: which privileges a SQL text needs — the only package that imports sqlglot.

A text is prepared (:mod:`tsaccess.preflight.text`: ``EXPLAIN`` prefix, Unicode-escaped names,
literal lists collapsed when long), parsed (postgres dialect) and walked scope by scope
(:mod:`~tsaccess.preflight.analysis.walk`); the result is an
:class:`~tsaccess.preflight.model.Analysis` in tsaccess's own types. Whenever the analysis is not
sure it *defers* (the server decides): parse errors, statements outside the allow-list (SELECT,
set operations, INSERT, UPDATE, DELETE, TRUNCATE, COPY, MERGE, and EXPLAIN of them), WINDOW
clauses, column aliases on functions (on tables they are followed by position), ``ON CONFLICT
ON CONSTRAINT``, ``set_config`` followed by more statements (it may change the role they run
with), texts too long to analyse quickly...
"""

from __future__ import annotations

import re

import sqlglot

from tsaccess.preflight.analysis.walk import Analyzer, Defer
from tsaccess.preflight.model import Analysis
from tsaccess.preflight.text import MAX_ANALYSED, decode_unicode_names, shape, strip_explain

__all__ = ["analyze"]

_POSTGRES = sqlglot.Dialect.get_or_raise("postgres")
_PLACEHOLDER = re.compile(r"%%|%\(\w+\)[sbt]|%[sbt]")

_ALLOWED_ROOTS = (
    sqlglot.exp.Select,
    sqlglot.exp.SetOperation,
    sqlglot.exp.Insert,
    sqlglot.exp.Update,
    sqlglot.exp.Delete,
    sqlglot.exp.TruncateTable,
    sqlglot.exp.Copy,
    sqlglot.exp.Subquery,
    sqlglot.exp.Merge,
)

_ANALYSED_START = re.compile(
    r"^\s*(?:--[^\n\r]*[\n\r]\s*|/\*.*?\*/\s*)*(?:\(|select|with|insert|update|delete|truncate|"
    r"copy|values|table|merge)\b",
    re.IGNORECASE | re.DOTALL,
)


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
    text = strip_explain(text)
    if not _ANALYSED_START.match(text):  # commands sqlglot would only half-parse: defer
        first = text.strip().split(None, 1)[0].upper() if text.strip() else "empty"
        return Analysis(deferred=f"{first[:20]} statements are checked by the server")
    try:
        text = decode_unicode_names(text)
        trees = _POSTGRES.parse(_sqlglot_text(text, has_params))
    except Exception as exc:
        return Analysis(deferred=f"not parsed ({exc.__class__.__name__})")
    trees = [t for t in trees if t is not None]
    if not trees:
        return Analysis(deferred="no statement", statements=0)
    a = Analyzer()
    for tree in trees:
        if not isinstance(tree, _ALLOWED_ROOTS):
            return Analysis(
                deferred=f"{type(tree).__name__} statement (checked by the server)",
                statements=len(trees),
            )
        try:
            a.statement(tree, frozenset())
        except Defer as d:
            return Analysis(deferred=str(d), statements=len(trees))
    if a.sets_config and len(trees) > 1:
        return Analysis(
            deferred="set_config() may change the role the later statements run with",
            statements=len(trees),
        )
    return Analysis(tuple(a.needs), "", len(trees), tuple(sorted(a.caveats)))
