"""Commands read from their tokens: what ``SET ROLE``, ``LOCK``, ``PREPARE``, ``DECLARE``,
``SHOW``, ``CALL``... need, and what they change for the statements after them.

sqlglot models queries, not these commands. Each command here is read as far as its first
privilege check, which is what decides whether the server refuses it; anything it does not
recognise is deferred to the server. DDL (``CREATE``, ``ALTER``, ``DROP``, ``COMMENT``...) is
in :mod:`tsaccess.preflight.ddl`. A command carrying a query (``PREPARE``, ``DECLARE``,
``CREATE TABLE ... AS``) names where the query starts (:class:`Inner`); the analysis reads it.
"""

from __future__ import annotations

from dataclasses import replace

from tsaccess.preflight import ddl
from tsaccess.preflight.ddl import Cursor, Inner, command
from tsaccess.preflight.lexer import Tok, parse_name
from tsaccess.preflight.model import (
    OWNER_FUNCTIONS,
    RESET_ROLE,
    SESSION_ROLE,
    Effect,
    ObjNeed,
    Statement,
)

__all__ = ["RESET_PATH", "Inner", "analyze_command"]

RESET_PATH = "\x00"
"""``Effect.search_path``: back to the session's default (``RESET search_path``)."""

_ALLOWED = frozenset(
    {
        "begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release",
        "fetch", "move", "close", "listen", "unlisten", "notify",
    }
)  # fmt: skip
"""Commands that need no privilege."""

_LOCK_MODES = {
    "access share": "SELECT",
    "row exclusive": "INSERT|UPDATE|DELETE|TRUNCATE",
}
_LOCK_OTHER = "UPDATE|DELETE|TRUNCATE"
"""The table privileges that allow each lock mode (measured on PostgreSQL 15: only table-level
privileges count)."""


def analyze_command(text: str, toks: list[Tok]) -> tuple[Statement, Inner | None]:
    """What the command ``text`` (its tokens: ``toks``) needs."""
    c = Cursor(toks)
    first = toks[0].value if toks and toks[0].kind == "word" else ""
    if first in _ALLOWED:
        return command(text), None
    handler = _HANDLERS.get(first)
    if handler is not None:
        return handler(text, c)
    found = ddl.analyze_ddl(text, c)
    if found is not None:
        return found
    word = first.upper() if first else (toks[0].value[:20] if toks else "empty")
    return command(text, deferred=f"{word} statements are checked by the server"), None


def _set(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("set")
    c.word("session", "local")
    if c.word("session") or (c.peek() is not None and c.peek().is_word("authorization")):  # type: ignore[union-attr]
        c.word("authorization")
        t = c.take()
        if t is None or c.peek() is not None or t.is_word("default"):
            return command(text, effect=Effect(opaque=True)), None
        who = t.value[1:-1].replace("''", "'") if t.kind == "string" else t.value
        need = ObjNeed("attribute", "SESSION AUTHORIZATION", who, when="command")
        return command(text, needs=(need,), effect=Effect(opaque=True)), None
    if c.word("role"):
        return _set_role(text, c)
    if c.word("time", "transaction", "constraints"):
        return command(text), None
    if c.word("schema"):
        return command(text, effect=Effect(search_path=_path_value(c), replayable=True)), None
    name = c.setting_name()
    if name is None:
        return command(text, deferred="SET of an unusual form"), None
    if name == "search_path":
        c.word("to") or c.op("=")
        value = RESET_PATH if c.word("default") else _path_value(c)
        return command(text, effect=Effect(search_path=value, replayable=True)), None
    if name in ("role", "session_authorization"):  # SET "role" = ...: as SET ROLE
        return command(text, deferred="SET role as a setting", effect=Effect(opaque=True)), None
    return command(text, needs=(ObjNeed("setting", "SET", name, when="command"),)), None


def _set_role(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    t = c.take()
    if t is None or c.peek() is not None:
        return command(text, deferred="SET ROLE of an unusual form"), None
    if t.kind == "word" and t.value == "none":
        return command(text, effect=Effect(role=SESSION_ROLE, replayable=True)), None
    if t.kind == "string":
        role = _string(t.value)
    elif t.kind in ("word", "name"):
        role = t.value
    else:
        return command(text, deferred="SET ROLE of an unusual form"), None
    need = ObjNeed("role", "MEMBER", role, when="command")
    return command(text, needs=(need,), effect=Effect(role=role, replayable=True)), None


def _reset(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("reset")
    if c.word("role"):
        return command(text, effect=Effect(role=RESET_ROLE, replayable=True)), None
    if c.word("session"):
        return command(
            text, deferred="RESET SESSION AUTHORIZATION", effect=Effect(opaque=True)
        ), None
    if c.word("all"):  # role and session_authorization are kept; search_path is reset
        return command(text, effect=Effect(search_path=RESET_PATH)), None
    name = c.setting_name()
    if name is None:
        return command(text, deferred="RESET of an unusual form"), None
    if name == "search_path":
        return command(text, effect=Effect(search_path=RESET_PATH, replayable=True)), None
    return command(text, needs=(ObjNeed("setting", "SET", name, when="command"),)), None


def _show(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("show")
    if c.word("all"):
        return command(text), None
    name = c.setting_name()
    if name is None or c.peek() is not None:
        return command(text, deferred="SHOW of an unusual form"), None
    return command(text, needs=(ObjNeed("setting", "READ", name, when="command"),)), None


def _lock(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("lock")
    c.word("table")
    names: list[tuple[str | None, str]] = []
    while True:
        c.word("only")
        name = c.qualified()
        if name is None:
            return command(text, deferred="LOCK of an unusual form", tx_block=True), None
        names.append(name)
        c.op("*")
        if not c.op(","):
            break
    privs = "UPDATE|DELETE|TRUNCATE"  # ACCESS EXCLUSIVE, the default
    if c.word("in"):
        words = []
        while (t := c.peek()) is not None and t.kind == "word" and t.value not in ("mode",):
            words.append(t.value)
            c.take()
        if not c.word("mode"):
            return command(text, deferred="LOCK of an unusual form", tx_block=True), None
        privs = _LOCK_MODES.get(" ".join(words), _LOCK_OTHER)
    c.word("nowait")
    if c.peek() is not None:
        return command(text, deferred="LOCK of an unusual form", tx_block=True), None
    needs = tuple(ObjNeed("lock", privs, n, s, when="command") for s, n in names)
    return command(text, needs=needs, tx_block=True), None


def _prepare(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("prepare")
    if c.word("transaction"):
        return command(text, deferred="PREPARE TRANSACTION"), None
    name = c.take()
    if name is None or name.ident is None:
        return command(text, deferred="PREPARE of an unusual form"), None
    if c.op("("):
        c.skip_parens()
    start = c.after_word("as")
    if start is None:
        return command(text, deferred="PREPARE of an unusual form"), None
    effect = Effect(prepared=(name.ident, text[start:]))
    return command(text, effect=effect), Inner(start, "prepare")


def _execute(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("execute")
    name = c.take()
    if name is None or name.ident is None:
        return command(text, deferred="EXECUTE of an unusual form"), None
    if c.op("("):
        c.skip_parens()
    if c.peek() is not None:
        return command(text, deferred="EXECUTE of an unusual form"), None
    statement = command(text)
    return replace(statement, executes=name.ident, explain="EXPLAIN " + text), None


def _deallocate(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("deallocate")
    c.word("prepare")
    t = c.take()
    if t is None or t.ident is None:
        return command(text, deferred="DEALLOCATE of an unusual form"), None
    name = "*" if t.kind == "word" and t.value == "all" else t.ident
    return command(text, effect=Effect(deallocated=name)), None


def _discard(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("discard")
    if c.word("all"):  # also RESET ALL and SET SESSION AUTHORIZATION DEFAULT
        effect = Effect(deallocated="*", opaque=True)
        return command(text, effect=effect, no_tx_block=True), None
    return command(text), None


def _declare(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("declare")
    if c.take() is None:
        return command(text, deferred="DECLARE of an unusual form"), None
    hold = False
    while (t := c.peek()) is not None and t.kind == "word" and t.value != "for":
        if t.value == "with" and c.peek(1) is not None and c.peek(1).is_word("hold"):  # type: ignore[union-attr]
            hold = True
        c.take()
    start = c.after_word("for")
    if start is None:
        return command(text, deferred="DECLARE of an unusual form"), None
    return command(text, tx_block=not hold), Inner(start, "declare")


def _call(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    c.word("call")
    name = c.qualified()
    if name is None or not c.op("("):
        return command(text, deferred="CALL of an unusual form"), None
    needs = [ObjNeed("function", "EXECUTE", name[1], name[0], when="command")]
    first = c.peek()
    if name[1] in OWNER_FUNCTIONS and first is not None and first.kind == "string":
        target = parse_name(_string(first.value))
        if target is not None:
            needs.append(ObjNeed("owner", "rpvmf", target[1], target[0], when="command",
                                 target="relation"))  # fmt: skip
    return command(text, needs=tuple(needs), effect=Effect(opaque=True)), None


def _vacuum(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    """``VACUUM`` / ``ANALYZE``: a table the role may not vacuum is skipped with a warning; a
    schema named without ``USAGE`` is refused."""
    c.take()
    if c.op("("):
        c.skip_parens()
    needs: list[ObjNeed] = []
    while (t := c.peek()) is not None:
        if t.kind == "word" and t.value in ("full", "freeze", "verbose", "analyze", "analyse"):
            c.take()
            continue
        name = c.qualified()
        if name is None:
            return command(text, deferred="VACUUM of an unusual form"), None
        if name[0] is not None:
            needs.append(ObjNeed("schema", "USAGE", name[0], when="command"))
        if c.op("("):
            c.skip_parens()
        if not c.op(","):
            break
    return command(text, needs=tuple(needs)), None


def _checkpoint(text: str, c: Cursor) -> tuple[Statement, Inner | None]:
    need = ObjNeed("predefined", "USAGE", "pg_checkpoint", when="command")
    return command(text, needs=(need,)), None


def _path_value(c: Cursor) -> str:
    """The value of ``SET search_path TO a, "B", 'c'`` as the setting holds it."""
    parts: list[str] = []
    while (t := c.take()) is not None:
        if t.kind == "string":
            parts.append(_string(t.value))
        elif t.kind == "name":
            parts.append('"' + t.value.replace('"', '""') + '"')
        elif t.kind == "word":
            parts.append(t.value)
        elif not (t.kind == "op" and t.value == ","):
            return "\x01"  # not understood: a path no schema matches
    return ", ".join(parts)


def _string(value: str) -> str:
    """The value of a plain string constant token (``'a''b'`` -> ``a'b``)."""
    if value[:1] in ("'",):
        return value[1:-1].replace("''", "'")
    return value  # dollar-quoted: already the body


_HANDLERS = {
    "set": _set,
    "reset": _reset,
    "show": _show,
    "lock": _lock,
    "prepare": _prepare,
    "execute": _execute,
    "deallocate": _deallocate,
    "discard": _discard,
    "declare": _declare,
    "call": _call,
    "checkpoint": _checkpoint,
    "vacuum": _vacuum,
    "analyze": _vacuum,
    "analyse": _vacuum,
}
