"""A small SQL tokenizer, as PostgreSQL reads a statement: comments, quoted identifiers, strings.

Enough to find what a statement names without being fooled by how it is written: comments
(``--`` to the end of the line, nested ``/* */``), quoted identifiers (``"x"``, ``U&"d\\0061ta"``
with ``UESCAPE``), strings (``'...'``, ``E'\\x41'``, ``U&'...'``, ``$tag$...$tag$``), numbers,
parameters (``$1``) and operators. Every character of the input belongs to exactly one token
(``"".join(t.text for t in tokenize(s)) == s``). Used by the pool to find the custom settings a
statement may create (:func:`tsaccess.client.reset.custom_names_in`); it has no other import.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal, NamedTuple

__all__ = ["Token", "significant", "tokenize"]

Kind = Literal["space", "comment", "ident", "quoted", "string", "number", "param", "op"]


class Token(NamedTuple):
    kind: Kind
    text: str
    """The token as written."""
    value: str
    """An identifier lower-cased, a quoted identifier or a string decoded; else ``text``."""


_UESCAPE = re.compile(r"(\s*)(UESCAPE)(\s*)'([^'])'", re.I)


def _quoted(s: str, i: int, q: str) -> int:
    """The end of a ``q``-quoted run starting at ``s[i] == q`` (doubled quotes inside)."""
    j = i + 1
    while True:
        k = s.find(q, j)
        if k < 0:
            return len(s)
        if k + 1 < len(s) and s[k + 1] == q:
            j = k + 2
            continue
        return k + 1


def _estring_end(s: str, i: int) -> int:
    """The end of an ``E'...'`` string whose quote is at ``s[i]`` (backslash escapes)."""
    j = i + 1
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
        elif c == "'":
            if j + 1 < len(s) and s[j + 1] == "'":
                j += 2
            else:
                return j + 1
        else:
            j += 1
    return len(s)


_E_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_E_ESCAPE = re.compile(
    r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|"
    r"U([0-9A-Fa-f]{8})|(.))",
    re.S,
)


def _e_value(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        octal, hx, u4, u8, other = m.groups()
        if octal:
            return chr(int(octal, 8) & 0xFF)
        if hx:
            return chr(int(hx, 16))
        if u4 or u8:
            return chr(int(u4 or u8, 16))
        return _E_ESCAPES.get(other, other)

    return _E_ESCAPE.sub(one, body.replace("''", "'"))


def _u_value(body: str, esc: str) -> str:
    """Decode ``U&`` escapes: ``<esc>XXXX``, ``<esc>+XXXXXX``, ``<esc><esc>``."""
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != esc:
            out.append(c)
            i += 1
        elif body[i + 1 : i + 2] == esc:
            out.append(esc)
            i += 2
        elif body[i + 1 : i + 2] == "+" and re.fullmatch(r"[0-9A-Fa-f]{6}", body[i + 2 : i + 8]):
            out.append(chr(int(body[i + 2 : i + 8], 16)))
            i += 8
        elif re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 1 : i + 5]):
            out.append(chr(int(body[i + 1 : i + 5], 16)))
            i += 5
        else:  # invalid: the server refuses the statement; keep the text
            out.append(c)
            i += 1
    return "".join(out)


def _uescape(s: str, j: int) -> tuple[str, int]:
    """A ``UESCAPE 'c'`` clause after a ``U&`` token ending at ``j``: (escape char, new end)."""
    m = _UESCAPE.match(s, j)
    return (m.group(4), m.end()) if m else ("\\", j)


def _comment_end(s: str, i: int) -> int:
    """The end of a nested ``/* */`` comment starting at ``i``."""
    depth, j = 0, i
    while j < len(s):
        if s.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif s.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(s)


_MASTER = re.compile(
    r"(?P<space>[ \t\n\r\f\v]+)"
    r"|(?P<line>--[^\n\r]*)"
    r"|(?P<block>/\*)"
    r"|(?P<ustart>[Uu]&['\"])"
    r"|(?P<estr>[Ee]')"
    r"|(?P<bstr>[BbXxNn]')"
    r"|(?P<sq>')"
    r"|(?P<dq>\")"
    r"|(?P<dollar>\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$)"
    r"|(?P<param>\$\d+)"
    r"|(?P<ident>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)"
    r"|(?P<number>0[xXoObB][0-9A-Fa-f_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<op>(?:[+*<>=~!@#%^&|`?]|-(?!-)|/(?!\*))+)"
    r"|(?P<other>.)",
    re.S,
)


def tokenize(s: str) -> Iterator[Token]:
    """The tokens of ``s`` in order (whitespace and comments included)."""
    i, n = 0, len(s)
    match = _MASTER.match
    while i < n:
        m = match(s, i)
        assert m is not None  # "other" matches any character
        kind, j = m.lastgroup, m.end()
        if kind == "space":
            yield Token("space", m.group(), m.group())
        elif kind == "line":
            yield Token("comment", m.group(), "")
        elif kind == "block":
            j = _comment_end(s, i)
            yield Token("comment", s[i:j], "")
        elif kind == "ident":
            yield Token("ident", m.group(), m.group().lower())
        elif kind == "ustart":
            q = s[i + 2]
            k = _quoted(s, i + 2, q)
            esc, j = _uescape(s, k)
            value = _u_value(s[i + 3 : k - 1].replace(q + q, q), esc)
            yield Token("quoted" if q == '"' else "string", s[i:j], value)
        elif kind == "estr":
            j = _estring_end(s, i + 1)
            yield Token("string", s[i:j], _e_value(s[i + 2 : j - 1]))
        elif kind == "bstr":
            j = _quoted(s, i + 1, "'")
            yield Token("string", s[i:j], s[i + 2 : j - 1].replace("''", "'"))
        elif kind == "sq":
            j = _quoted(s, i, "'")
            yield Token("string", s[i:j], s[i + 1 : j - 1].replace("''", "'"))
        elif kind == "dq":
            j = _quoted(s, i, '"')
            yield Token("quoted", s[i:j], s[i + 1 : j - 1].replace('""', '"'))
        elif kind == "dollar":
            tag = m.group()
            k = s.find(tag, j)
            yield Token("string", s[i : n if k < 0 else k + len(tag)], s[j : n if k < 0 else k])
            j = n if k < 0 else k + len(tag)
        elif kind == "param":
            yield Token("param", m.group(), m.group())
        elif kind == "number":
            yield Token("number", m.group(), m.group())
        else:  # operators; ( ) , ; . [ ] : and anything else, one character at a time
            yield Token("op", m.group(), m.group())
        i = j


# Whole tokens in one pattern (for a text without block comments or UESCAPE, which need the
# loop above): strings, quoted identifiers and dollar quotes matched to their end.
_WHOLE = re.compile(
    r"(?P<space>[ \t\n\r\f\v]+)"
    r"|(?P<line>--[^\n\r]*)"
    r"|(?P<u>[Uu]&(?:'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"))"
    r"|(?P<e>[Ee]'(?:[^'\\]|\\.|'')*')"
    r"|(?P<b>[BbXxNn]'(?:[^']|'')*')"
    r"|(?P<sq>'(?:[^']|'')*')"
    r"|(?P<dq>\"(?:[^\"]|\"\")*\")"
    r"|(?P<dollar>(?P<tag>\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$)"
    r".*?(?P=tag))"
    r"|(?P<param>\$\d+)"
    r"|(?P<ident>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)"
    r"|(?P<number>0[xXoObB][0-9A-Fa-f_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<op>(?:[+*<>=~!@#%^&|`?]|-(?!-)|/(?!\*))+)"
    r"|(?P<rest>['\"$].*)"
    r"|(?P<other>.)",
    re.S,
)
_KINDS: dict[str, Kind] = {
    "u": "string",
    "e": "string",
    "b": "string",
    "sq": "string",
    "dq": "quoted",
    "dollar": "string",
    "param": "param",
    "ident": "ident",
    "number": "number",
}


def _slow(s: str) -> list[tuple[Kind, str]]:
    return [(t.kind, t.value) for t in tokenize(s) if t.kind not in ("space", "comment")]


def significant(s: str) -> list[tuple[Kind, str]]:
    """(kind, value) of every token of ``s`` but whitespace and comments: what
    :func:`tokenize` gives, in one pass of one pattern when ``s`` has no block comment and no
    ``UESCAPE`` (else through :func:`tokenize`)."""
    if "/*" in s or "escape" in s or "ESCAPE" in s or "Escape" in s:
        return _slow(s)
    out: list[tuple[Kind, str]] = []
    append = out.append
    for m in _WHOLE.finditer(s):
        g = m.lastgroup
        if g == "space" or g == "line":
            continue
        if g == "ident":
            append(("ident", m.group().lower()))
        elif g == "sq":
            append(("string", m.group()[1:-1].replace("''", "'")))
        elif g == "rest":  # an unterminated quote: as the server would see it
            return _slow(s)
        elif g == "dq":
            append(("quoted", m.group()[1:-1].replace('""', '"')))
        elif g in ("u", "e", "b", "dollar"):
            tok = next(tokenize(m.group()))
            append((tok.kind, tok.value))
        else:
            append((_KINDS.get(g or "", "op"), m.group()))
    return out
