"""Tokens as the server reads them: statements of a string, words, names, strings, punctuation.

Not a parser: enough to split a multi-statement string where the server does (a top-level
``;``), to skip comments (``--`` to the end of the line, ``/* */`` nested), to tell a name from
a string constant (quotes, ``E'...'`` escapes, ``$tag$...$tag$``, ``U&"..."``) and to read the
commands sqlglot does not model (:mod:`tsaccess.preflight.utility`). Whatever it cannot delimit
with certainty makes :func:`split` return None: the caller then defers to the server.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from tsaccess.preflight.text import decode_unicode_names

__all__ = [
    "CALL_KEYWORDS",
    "NOT_CALLED",
    "Tok",
    "calls",
    "leading_comments_end",
    "parse_name",
    "split",
    "tokens",
]

Kind = Literal["word", "name", "string", "number", "param", "op", "semi"]


class Tok(NamedTuple):
    """One token: ``word`` (unquoted, folded to lower case), ``name`` (a quoted identifier, as
    written), ``string``, ``number``, ``param`` (``$1``), ``op`` (one character, or ``::``),
    ``semi``."""

    kind: Kind
    value: str
    start: int
    end: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.value in words

    @property
    def ident(self) -> str | None:
        """The token as a name (a word or a quoted name), else None."""
        return self.value if self.kind in ("word", "name") else None


_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<line>--[^\n\r]*)
    |(?P<block>/\*)
    |(?P<estr>[eE]'(?:[^'\\]|\\.|'')*')
    |(?P<ustr>[uU]&'(?:[^']|'')*')
    |(?P<pstr>[bBxXnN]'(?:[^']|'')*')
    |(?P<str>'(?:[^']|'')*')
    |(?P<uname>[uU]&"(?:[^"]|"")*")
    |(?P<name>"(?:[^"]|"")*")
    |(?P<dollar>\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$)
    |(?P<param>\$\d+)
    |(?P<word>[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)
    |(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<cast>::)
    |(?P<semi>;)
    |(?P<op>.)""",
    re.VERBOSE | re.DOTALL,
)
_UESCAPE = re.compile(r"\s*[Uu][Ee][Ss][Cc][Aa][Pp][Ee]\s*'(.)'")
_NAMEDATALEN = 63


def _block_end(text: str, i: int) -> int:
    """The index after the (nested) block comment starting at ``i``; -1 if unterminated."""
    depth = 0
    n = len(text)
    while i < n:
        if text.startswith("/*", i):
            depth += 1
            i += 2
        elif text.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return -1


def tokens(text: str) -> list[Tok] | None:
    """The tokens of ``text`` (comments and spaces dropped); None when a quote, a comment or a
    dollar-quoted string does not end, or a name cannot be decoded."""
    out: list[Tok] = []
    i = 0
    n = len(text)
    while i < n:
        m = _TOKEN.match(text, i)
        if m is None:  # pragma: no cover - the last alternative matches any character
            return None
        kind = m.lastgroup
        end = m.end()
        if kind in ("ws", "line"):
            i = end
            continue
        if kind == "block":
            i = _block_end(text, i)
            if i < 0:
                return None
            continue
        value = m.group(0)
        if kind in ("estr", "ustr", "pstr", "str"):
            if kind == "str" and text.startswith("'", end):  # cannot happen: '' is inside
                return None  # pragma: no cover
            out.append(Tok("string", value, i, end))
        elif kind == "dollar":
            close = text.find(value, end)
            if close < 0:
                return None
            out.append(Tok("string", text[end:close], i, close + len(value)))
            end = close + len(value)
        elif kind in ("name", "uname"):
            raw = value
            if kind == "uname":
                u = _UESCAPE.match(text, end)
                if u is not None:
                    raw, end = text[i : u.end()], u.end()
                try:
                    raw = decode_unicode_names(raw)
                except (ValueError, IndexError):
                    return None
            name = raw[1:-1].replace('""', '"')
            out.append(Tok("name", name[:_NAMEDATALEN], i, end))
        elif kind == "word":
            out.append(Tok("word", value.lower()[:_NAMEDATALEN], i, end))
        elif kind == "num":
            out.append(Tok("number", value, i, end))
        elif kind == "param":
            out.append(Tok("param", value, i, end))
        elif kind == "semi":
            out.append(Tok("semi", value, i, end))
        else:
            if value in "'\"":
                return None  # an unterminated quote
            out.append(Tok("op", value, i, end))
        i = end
    return out


def split(text: str) -> list[tuple[str, list[Tok]]] | None:
    """The statements of ``text`` as the server splits a simple query (at each top-level
    ``;``): each statement's text (from its first token to its last) and its tokens; empty
    statements dropped. None when the text cannot be tokenized, or holds a function body in
    ``BEGIN ATOMIC ... END`` (whose semicolons do not split)."""
    toks = tokens(text)
    if toks is None:
        return None
    out: list[tuple[str, list[Tok]]] = []
    cur: list[Tok] = []

    def close() -> None:
        base = cur[0].start  # positions relative to the statement's own text
        if base:
            out.append((text[base : cur[-1].end], [t._replace(start=t.start - base,
                                                              end=t.end - base) for t in cur]))  # fmt: skip
        else:
            out.append((text[: cur[-1].end], cur))

    for k, t in enumerate(toks):
        if t.kind == "semi":
            if cur:
                close()
            cur = []
            continue
        if t.is_word("atomic") and k and toks[k - 1].is_word("begin"):
            return None
        cur.append(t)
    if cur:
        close()
    return out


def leading_comments_end(text: str) -> int:
    """The index of the first character of ``text`` that is neither space nor comment."""
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("--", i):
            j = i
            while j < n and text[j] not in "\n\r":
                j += 1
            i = j
        elif text.startswith("/*", i):
            j = _block_end(text, i)
            if j < 0:
                return i
            i = j
        else:
            break
    return i


NOT_CALLED = frozenset({"into", "as", "table", "only", "copy", "references", "with", "update"})
"""A name right after one of these, followed by ``(``, is a table and its columns."""
CALL_KEYWORDS = frozenset(
    {
        "all", "and", "any", "array", "as", "between", "by", "case", "check", "copy", "cube",
        "default", "distinct", "do", "else", "exists", "filter", "for", "from", "grouping",
        "groups", "having", "ilike", "in", "insert", "into", "is", "join", "key", "lateral",
        "like", "not", "on", "or", "over", "partition", "range", "returning", "rollup", "row",
        "rows", "select", "set", "sets", "similar", "some", "table", "then", "union", "update",
        "using", "values", "when", "where", "window", "with", "within", "conflict", "except",
        "intersect", "unique", "primary", "references", "only", "ordinality", "lock",
    }
)  # fmt: skip
"""Words before ``(`` that are syntax, not a function's name."""


def calls(toks: list[Tok]) -> list[tuple[str | None, str]]:
    """The functions a statement's tokens call: ``name (`` and ``schema . name (``, as
    (schema, name); a table before its column list (``INSERT INTO t (a)``) is no call."""
    out: list[tuple[str | None, str]] = []
    for k in range(1, len(toks)):
        t = toks[k]
        if t.kind != "op" or t.value != "(":
            continue
        name = toks[k - 1]
        if name.ident is None or (name.kind == "word" and name.value in CALL_KEYWORDS):
            continue
        schema: str | None = None
        before = k - 2
        if before >= 1 and toks[before].kind == "op" and toks[before].value == ".":
            q = toks[before - 1]
            if q.ident is None:
                continue
            schema = q.ident
            before -= 2
        if before >= 0 and toks[before].kind == "word" and toks[before].value in NOT_CALLED:
            continue
        if (schema, name.ident) not in out:
            out.append((schema, name.ident))
    return out


def parse_name(text: str) -> tuple[str | None, str] | None:
    """A name as ``regclass`` input reads it (``s.t``, ``"S"."T"``): (schema, name), or None
    when it is not a one- or two-part name."""
    parts: list[str] = []
    cur = ""
    i = 0
    quoted = False
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and text[i + 1 : i + 2] == '"':
                cur += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(cur)
            cur = ""
        elif quoted:
            cur += ch
        elif ch.isspace():
            pass
        else:
            cur += ch.lower()
        i += 1
    parts.append(cur)
    if quoted or not all(parts) or len(parts) > 2:
        return None
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
