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

__all__ = [
    "MAX_ANALYSED",
    "MAX_SHAPED",
    "decode_unicode_names",
    "explain_prefix",
    "server_placeholders",
    "shape",
    "strip_explain",
]

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

# constants that name what a statement needs (a sequence, a setting, a relation as regclass),
# statements that are no query (SET ROLE 'x', COPY ... TO 'file'), several statements
_LITERAL_NAMES = (
    "nextval",
    "setval",
    "currval",
    "current_setting",
    "set_config",
    "to_reg",
    "relation_filepath",
)
"""Names whose constant arguments name what a statement needs: searched as plain substrings
of the lower-cased text (a regular expression with alternatives costs ten times more)."""
_REG_TYPE = re.compile(
    r"\breg(?:class|type|proc|procedure|oper|operator|config|dictionary|collation)\b"
)
_SIZE = re.compile(r"_size\s*\(")
_QUERY_START = (
    "select",
    "with",
    "insert",
    "update",
    "delete",
    "merge",
    "values",
    "table",
    "explain",
)
_NOT_A_QUERY = re.compile(r";\s*\S")

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
    if len(text) > MAX_SHAPED or "\\" in text or "/*" in text:
        return None
    if "$" in text and _UNSURE.search(text) is not None:
        return None
    lower = text.lower()
    if (
        any(w in lower for w in _LITERAL_NAMES)
        or ("reg" in lower and _REG_TYPE.search(lower) is not None)
        or ("_size" in lower and _SIZE.search(lower) is not None)
    ):
        return None  # a constant names what is needed (a sequence, a setting, a relation)
    if text.isascii() and '"' not in text and "--" not in text:
        # the common case, three times as fast: strings, then numbers outside them
        out = _NUMBER.sub("0", _STRING.sub("''", text))
    else:  # quoted names, comments, non-ASCII names: one scan, in order
        out = _LITERAL.sub(_literal, text)
    if "''" in out and _PREFIXED.search(out) is not None:
        return None
    if ";" in out and _NOT_A_QUERY.search(out) is not None:
        return None  # several statements: each constant may matter (SET ROLE 'x'...)
    head = out.lstrip()
    if head[:1] != "(" and not head[:7].lower().startswith(_QUERY_START):
        return None  # a command: its constants may name what it needs
    if (
        len(out) > 256
        and ("0," in out or "''," in out or "0 ," in out or "'' ," in out)
        and not ('"' in out and any("(" in q or "[" in q for q in _QUOTED.findall(out)))
    ):  # long lists of constants: collapse (short texts gain nothing from the extra pass)
        out = _IN_LIST.sub(r"\g<1>0", out)
        if "), (" in out or "),(" in out:
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
    r"explain\b\s*((?:\((?:[^()'\"]|'[^']*')*\)\s*|(?:analy[sz]e|verbose)\b\s*)*)",
    re.IGNORECASE,
)
_ANALYZE = re.compile(r"(?i)\banaly[sz]e\b(?!\s+(?:false|off|0)\b)")


def _after_comments(text: str) -> int:
    i = 0
    n = len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            while i < n and text[i] not in "\n\r":
                i += 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                return 0
        else:
            break
    return i


def explain_prefix(text: str) -> tuple[int, bool] | None:
    """Where the statement an ``EXPLAIN`` plans starts, and whether it is ``EXPLAIN ANALYZE``
    (which runs it); None when ``text`` is no ``EXPLAIN``. Comments before it are skipped."""
    i = _after_comments(text)
    m = _EXPLAIN.match(text, i)
    if m is None:
        return None
    return m.end(), _ANALYZE.search(m.group(1)) is not None


def strip_explain(text: str) -> str:
    """The statement an ``EXPLAIN`` (with or without ``ANALYZE``) plans: it needs the same
    privileges, which the server checks when planning. Other texts unchanged."""
    if text.lstrip()[:1] not in ("e", "E", "-", "/"):
        return text  # the common case, without the regular expression
    found = explain_prefix(text)
    return text[found[0] :] if found else text


_CLIENT_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|%%|%\((\w+)\)[sbt]|%[sbt]")
_SERVER_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\$(\d+)")


def server_placeholders(text: str, client: bool) -> tuple[str, int]:
    """``text`` with psycopg's placeholders (``%s``, ``%(name)s``; ``client``) as the server's
    (``$1``...), and how many parameters it takes (the highest ``$n``)."""
    names: dict[str, int] = {}
    count = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal count
        found = m.group(0)
        if found[0] == "'":
            return found
        if found == "%%":
            return "%"
        if m.group(1) is not None:
            if m.group(1) not in names:
                count += 1
                names[m.group(1)] = count
            return f"${names[m.group(1)]}"
        count += 1
        return f"${count}"

    if client:
        text = _CLIENT_PLACEHOLDER.sub(sub, text)
        return text, count
    found = [int(m.group(1)) for m in _SERVER_PLACEHOLDER.finditer(text) if m.group(1)]
    return text, max(found, default=0)
