"""Statement text before parsing: cache keys with literals normalised, Unicode-escaped names,
the ``EXPLAIN`` prefix. Plain regular expressions (no sqlglot): the checker uses them on every
statement, cached or not.

What a statement needs never depends on the *values* of its literals, except for the setting a
``set_config`` call names (a role change makes the analysis defer the statements after it), so
statements that differ only in constants share one analysis and one verdict. A text calling
``set_config``, or whose literals this module cannot delimit with certainty (escape-string
syntax, dollar quoting, nested comments, backslashes), keeps its exact text as key.
"""

from __future__ import annotations

import re

__all__ = ["MAX_ANALYSED", "MAX_SHAPED", "decode_unicode_names", "shape", "strip_explain"]

MAX_ANALYSED = 16_384
"""Longer texts are analysed in their normalised form (literal lists collapsed), if that is
short enough."""
MAX_SHAPED = 65_536
"""Longer texts are not scanned at all: deferred to the server at once (scanning 1 MB costs
about as much as the server's own parse)."""

_UNSURE = re.compile(r"\\|/\*|\$(?!\d)")
# E'..', U&'..', B'..', X'..' once constants are '' (the quote first: the scan skips faster)
_PREFIXED = re.compile(r"'(?<=[A-Za-z0-9_&]')'")
_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(  # ASCII classes, first character before the look-behind: 4x faster
    r"[0-9.](?<![A-Za-z0-9_$.][0-9.])(?:(?<=[0-9])[0-9]*\.?[0-9]*|(?<=\.)[0-9]+)"
    r"(?:[eE][+-]?[0-9]+)?(?![A-Za-z0-9_$])"
)

_LITERAL = re.compile(
    r"'(?:[^']|'')*'"  # string constant
    r'|"(?:[^"]|"")*"'  # quoted identifier: kept
    r"|--[^\n\r]*"  # comment (the server ends it at \n or \r): a space
    r"|(?<![\w$.])(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w$])"  # number
)
_LIT = r"(?:''|0)"
_IN_LIST = re.compile(r"(?i)(\bin\s*\(\s*|\barray\s*\[\s*)" + _LIT + r"(?:\s*,\s*" + _LIT + r")+")
_ROWS = re.compile(
    r"(?i)(\bvalues\s*)(\(\s*" + _LIT + r"(?:\s*,\s*" + _LIT + r")*\s*\))(?:\s*,\s*\2)+"
)
_QUOTED = re.compile(r'"(?:[^"]|"")*"')


def _literal(m: re.Match[str]) -> str:
    c = m.group(0)[0]
    if c == "'":
        return "''"
    if c == '"':
        return m.group(0)
    if c == "-":
        return " "
    return "0"


def shape(text: str) -> str | None:
    """``text`` with string constants as ``''``, numbers as ``0``, comments as a space, and
    literal lists (``IN (...)``, ``ARRAY[...]``, repeated ``VALUES`` rows) collapsed to one
    element; None when the literals cannot be delimited with certainty.

    The result parses to a statement that needs exactly the privileges ``text`` needs.
    """
    if len(text) > MAX_SHAPED or _UNSURE.search(text) is not None:
        return None
    if "set_config" in text.lower():  # its first constant matters: exact key
        return None
    if text.isascii() and '"' not in text and "--" not in text:
        # the common case, three times as fast: strings, then numbers outside them
        out = _NUMBER.sub("0", _STRING.sub("''", text))
    else:  # quoted names, comments, non-ASCII names: one scan, in order
        out = _LITERAL.sub(_literal, text)
    if _PREFIXED.search(out) is not None:
        return None
    if len(out) > 256 and not (
        '"' in out and any("(" in q or "[" in q for q in _QUOTED.findall(out))
    ):  # long lists: collapse (short texts gain nothing from the extra pass)
        out = _IN_LIST.sub(r"\g<1>0", out)
        out = _ROWS.sub(r"\1\2", out)
    return out


_U_NAME = re.compile(
    r"'(?:[^']|'')*'|--[^\n\r]*"
    r'|[Uu]&("(?:[^"]|"")*"|\'(?:[^\']|\'\')*\')(?:\s*[Uu][Ee][Ss][Cc][Aa][Pp][Ee]\s*\'(.)\')?'
    r'|"(?:[^"]|"")*"'
)


def _decode(body: str, esc: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != esc:
            out.append(ch)
            i += 1
        elif body[i + 1 : i + 2] == esc:
            out.append(esc)
            i += 2
        elif body[i + 1 : i + 2] == "+":
            out.append(chr(int(body[i + 2 : i + 8], 16)))
            i += 8
        else:
            out.append(chr(int(body[i + 1 : i + 5], 16)))
            i += 5
    return "".join(out)


def _unicode(m: re.Match[str]) -> str:
    quoted = m.group(1)
    if quoted is None:
        return m.group(0)  # a plain string, comment or quoted identifier
    if quoted[0] == "'":
        return "''"  # U&'...': a string constant, whose value needs no privilege
    name = _decode(quoted[1:-1].replace('""', '"'), m.group(2) or "\\")
    return '"' + name.replace('"', '""') + '"'


def decode_unicode_names(text: str) -> str:
    """``U&"\\0061mount"`` (with an optional ``UESCAPE``) as the plain quoted ``"amount"``.

    Raises:
        ValueError: a malformed escape (the server refuses the statement too).
    """
    if "&" not in text:
        return text
    return _U_NAME.sub(_unicode, text)


_EXPLAIN = re.compile(
    r"^\s*(?:--[^\n\r]*[\n\r]\s*)*explain\b\s*"
    r"(?:\((?:[^()'\"]|'[^']*')*\)\s*|(?:analy[sz]e|verbose)\b\s*)*",
    re.IGNORECASE,
)


def strip_explain(text: str) -> str:
    """The statement an ``EXPLAIN`` (with or without ``ANALYZE``) plans: it needs the same
    privileges, which the server checks when planning. Other texts unchanged."""
    if text.lstrip()[:1] not in ("e", "E", "-"):
        return text  # the common case, without the regular expression
    m = _EXPLAIN.match(text)
    return text[m.end() :] if m else text
