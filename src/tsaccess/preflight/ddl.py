"""DDL read from its tokens: the first privilege check of ``CREATE``, ``ALTER``, ``DROP``,
``COMMENT ON``, ``REINDEX``, ``CLUSTER``, ``REFRESH MATERIALIZED VIEW``.

What decides these commands, measured on PostgreSQL 15: creating an object needs ``CREATE`` on
its schema (the first schema of the ``search_path`` when unqualified), a temporary one
``TEMPORARY`` on the database, a schema ``CREATE`` on the database, a role ``CREATEROLE``;
altering, dropping or commenting an object needs its owner's privileges (``must be owner of
table t``), an index its table's. The rest of a command (types, references, languages) is the
server's: such a command is deferred once its first check passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tsaccess.preflight.lexer import Tok
from tsaccess.preflight.model import Effect, ObjNeed, Statement

__all__ = ["Cursor", "Inner", "analyze_ddl", "command"]

# relation kinds each object word accepts (pg_class.relkind)
_REL_KINDS = {
    "table": "rpf",
    "view": "v",
    "materialized": "m",
    "sequence": "S",
    "index": "iI",
    "foreign": "f",
}
_ALTER_TABLE_KINDS = "rpvmSf"  # ALTER TABLE works on views and sequences too
_CREATE_IN_SCHEMA = frozenset(
    {"type", "domain", "aggregate", "collation", "conversion", "text", "operator", "statistics",
     "function", "procedure", "sequence", "view", "table", "foreign", "materialized"}
)  # fmt: skip
_OPAQUE = frozenset({"do", "security", "import", "reassign"})
_GRANTED_ON = frozenset(
    {"schema", "function", "functions", "sequence", "sequences", "database", "all", "large",
     "foreign", "type", "domain", "language", "tablespace", "procedure", "procedures",
     "routine", "routines", "parameter"}
)  # fmt: skip


@dataclass(frozen=True)
class Inner:
    """A query inside a command, starting at ``start`` (an index into the command's text).

    ``mode``: ``prepare`` (parsed only: schemas named need ``USAGE``, tables nothing yet),
    ``declare`` (planned and started: it needs what it reads), ``create_as`` (planned and run
    as the creator), ``parse`` (parsed only, as ``CREATE VIEW`` or ``... WITH NO DATA``)."""

    start: int
    mode: Literal["prepare", "declare", "create_as", "parse"]


Found = tuple[Statement, Inner | None]


def command(
    text: str,
    *,
    needs: tuple[ObjNeed, ...] = (),
    deferred: str = "",
    effect: Effect | None = None,
    tx_block: bool = False,
    no_tx_block: bool = False,
) -> Statement:
    """A command's :class:`~tsaccess.preflight.model.Statement`."""
    return Statement(
        text,
        needs=needs,
        deferred=deferred,
        effect=effect or Effect(),
        tx_block=tx_block,
        no_tx_block=no_tx_block,
    )


@dataclass
class Cursor:
    """Reads tokens one by one."""

    toks: list[Tok]
    i: int = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> Tok | None:
        t = self.peek()
        if t is not None:
            self.i += 1
        return t

    def word(self, *words: str) -> bool:
        t = self.peek()
        if t is not None and t.kind == "word" and t.value in words:
            self.i += 1
            return True
        return False

    def op(self, value: str) -> bool:
        t = self.peek()
        if t is not None and t.kind == "op" and t.value == value:
            self.i += 1
            return True
        return False

    def qualified(self) -> tuple[str | None, str] | None:
        """``name`` or ``schema.name`` (a three-part name: None)."""
        t = self.take()
        if t is None or t.ident is None:
            return None
        if self.op("."):
            u = self.take()
            if u is None or u.ident is None or self.op("."):
                return None
            return t.ident, u.ident
        return None, t.ident

    def setting_name(self) -> str | None:
        """A setting's name (``work_mem``, ``myapp.x``), folded as the server folds it."""
        t = self.take()
        if t is None or t.ident is None:
            return None
        name = t.ident.lower()
        while self.op("."):
            u = self.take()
            if u is None or u.ident is None:
                return None
            name += "." + u.ident.lower()
        return name

    def skip_parens(self) -> None:
        """Skip to after the ``)`` closing a ``(`` just taken."""
        depth = 1
        while depth and (t := self.take()) is not None:
            if t.kind == "op":
                depth += (t.value == "(") - (t.value == ")")

    def after_word(self, word: str) -> int | None:
        """The text index after the next top-level ``word`` (the cursor moves past it)."""
        depth = 0
        while (t := self.take()) is not None:
            if t.kind == "op":
                depth += (t.value == "(") - (t.value == ")")
            elif depth == 0 and t.kind == "word" and t.value == word:
                return t.end
        return None

    def rest_words(self) -> set[str]:
        return {t.value for t in self.toks[self.i :] if t.kind == "word"}


def _owner(target: str, name: tuple[str | None, str], kinds: str = "") -> ObjNeed:
    return ObjNeed("owner", kinds, name[1], name[0], when="command", target=target)


def analyze_ddl(text: str, c: Cursor) -> Found | None:
    """``CREATE``/``ALTER``/``DROP``/``COMMENT``/...: (statement, inner query or None); None
    for another command."""
    first = c.peek()
    word = first.value if first is not None and first.kind == "word" else ""
    if word in _OPAQUE:
        return command(text, deferred=f"{word.upper()} is checked by the server",
                       effect=Effect(opaque=True)), None  # fmt: skip
    handler = {
        "create": _create,
        "alter": _alter,
        "drop": _drop,
        "comment": _comment,
        "reindex": _reindex,
        "cluster": _cluster,
        "refresh": _refresh,
        "grant": _grant,
        "revoke": _grant,
        "load": _load,
    }.get(word)
    if handler is None:
        return None
    c.take()
    return handler(text, c)


def _object(c: Cursor) -> tuple[str, str]:
    """The object word(s) after CREATE/ALTER/DROP: (word, relation kinds or "")."""
    t = c.take()
    w = t.value if t is not None and t.kind == "word" else ""
    if w == "materialized" or w == "foreign":
        c.word("view", "table", "data", "server")
    elif w == "text":
        c.word("search")
        c.word("configuration", "dictionary", "parser", "template")
    elif w == "event" or w == "access" or w == "user":
        c.word("trigger", "method", "mapping")
    return w, _REL_KINDS.get(w, "")


def _create(text: str, c: Cursor) -> Found:
    if c.word("or"):
        c.word("replace")
    temp = False
    while c.word("global", "local", "temp", "temporary", "unlogged", "unique", "recursive",
                 "trusted", "procedural", "constraint", "default"):  # fmt: skip
        temp = temp or c.toks[c.i - 1].value in ("temp", "temporary")
    kind, _ = _object(c)
    fx = Effect(opaque=True)  # an object created may shadow a name of the next statements
    if kind in ("role", "user", "group"):
        need = ObjNeed("attribute", "CREATEROLE", "", when="command")
        return command(text, needs=(need,), deferred="the rest of CREATE ROLE", effect=fx), None
    if kind == "database":
        need = ObjNeed("attribute", "CREATEDB", "", when="command")
        return command(text, needs=(need,), no_tx_block=True, effect=fx), None
    if kind == "schema":
        need = ObjNeed("database", "CREATE", "", when="command")
        return command(text, needs=(need,), deferred="the rest of CREATE SCHEMA", effect=fx), None
    if kind == "index":
        concurrently = c.word("concurrently")
        on = c.after_word("on")
        c.word("only")
        table = c.qualified() if on is not None else None
        if table is None:
            return command(text, deferred="CREATE INDEX of an unusual form"), None
        # CONCURRENTLY refuses a transaction block first (TimescaleDB checks a hypertable's
        # owner before, measured: deferred then)
        need = _owner("relation", table, "rpm")
        return command(text, needs=(need,), no_tx_block=concurrently,
                       deferred="the rest of CREATE INDEX"), None  # fmt: skip
    if kind not in _CREATE_IN_SCHEMA:
        return command(text, deferred=f"CREATE {kind.upper()} is checked by the server"), None
    if c.word("if"):
        c.word("not")
        c.word("exists")
    name = c.qualified() if kind != "operator" else (None, "")
    if name is None:
        return command(text, deferred="CREATE of an unusual form"), None
    schema = name[0]
    if temp or schema == "pg_temp":
        need = ObjNeed("database", "TEMP", "", when="command")
    else:
        need = ObjNeed("schema", "CREATE", schema or "", when="command")
    inner: Inner | None = None
    deferred = f"the rest of CREATE {kind.upper()}"
    if kind in ("table", "view", "materialized"):
        start = c.after_word("as")
        if start is not None:
            words = {t.value for t in c.toks if t.kind == "word"}
            no_data = "no" in words and "data" in words and c.toks[-1].is_word("data")
            inner = Inner(start, "parse" if kind == "view" or no_data else "create_as")
            deferred = ""
        elif kind == "table" and not c.rest_words() & {"references", "like", "inherits", "of",
                                                       "partition", "tablespace", "using"}:  # fmt: skip
            deferred = ""
    elif kind == "sequence" and "owned" not in c.rest_words():
        deferred = ""
    return command(text, needs=(need,), deferred=deferred, effect=fx), inner


def _alter(text: str, c: Cursor) -> Found:
    kind, kinds = _object(c)
    fx = Effect(opaque=True)
    if kind == "system":
        name = c.after_word("set")
        setting = c.setting_name() if name is not None else None
        if setting is None:
            return command(text, deferred="ALTER SYSTEM of an unusual form", no_tx_block=True), None
        need = ObjNeed("setting", "ALTER SYSTEM", setting, when="command")
        return command(text, needs=(need,), no_tx_block=True), None
    if kind in ("role", "user", "group"):
        t = c.peek()
        if t is None or (t.kind == "word" and t.value in ("all", "current_user", "session_user",
                                                          "current_role")):  # fmt: skip
            return command(text, deferred="ALTER ROLE of oneself or all roles", effect=fx), None
        need = ObjNeed("attribute", "CREATEROLE", t.value, when="command", target="alter")
        return command(text, needs=(need,), deferred="the rest of ALTER ROLE", effect=fx), None
    if kind in ("policy", "trigger", "rule"):
        return _on_table(text, c, f"ALTER {kind.upper()}")
    if c.word("if"):
        c.word("exists")
    if kind == "table":
        if c.word("all"):
            return command(text, deferred="ALTER TABLE ALL IN TABLESPACE", effect=fx), None
        c.word("only")
        kinds = _ALTER_TABLE_KINDS
    owner = _need_for(kind, kinds, c)
    if owner is None:
        return command(text, deferred=f"ALTER {kind.upper()} is checked by the server",
                       effect=fx), None  # fmt: skip
    return command(text, needs=(owner,), effect=fx), None


def _need_for(kind: str, kinds: str, c: Cursor) -> ObjNeed | None:
    """The ownership need of the object named at the cursor."""
    if kinds:
        name = c.qualified()
        return _owner("relation", name, kinds) if name is not None else None
    if kind in ("schema", "database"):
        t = c.take()
        return _owner(kind, (None, t.ident)) if t is not None and t.ident else None
    if kind in ("function", "procedure", "routine", "aggregate"):
        name = c.qualified()
        return _owner("function", name) if name is not None else None
    if kind in ("type", "domain"):
        name = c.qualified()
        return _owner("type", name) if name is not None else None
    return None


def _on_table(text: str, c: Cursor, what: str) -> Found:
    """``... name ON table``: the table's owner."""
    c.take()
    table = c.qualified() if c.word("on") else None
    if table is None:
        return command(text, deferred=f"{what} of an unusual form"), None
    need = _owner("relation", table, "rpvmf")
    return command(text, needs=(need,), effect=Effect(opaque=True)), None


def _drop(text: str, c: Cursor) -> Found:
    kind, kinds = _object(c)
    fx = Effect(opaque=True)
    if kind in ("policy", "trigger", "rule"):
        if c.word("if"):
            c.word("exists")
        return _on_table(text, c, f"DROP {kind.upper()}")
    concurrently = c.word("concurrently")
    if c.word("if"):
        c.word("exists")
    if kind in ("role", "user", "group"):
        need = ObjNeed("attribute", "CREATEROLE", "", when="command")
        return command(text, needs=(need,), deferred="the rest of DROP ROLE", effect=fx), None
    needs: list[ObjNeed] = []
    while True:
        found = _need_for(kind, kinds, c)
        if found is None:
            return command(text, deferred=f"DROP {kind.upper()} is checked by the server",
                           effect=fx), None  # fmt: skip
        needs.append(found)
        if c.op("("):  # DROP FUNCTION f(int)
            c.skip_parens()
        if not c.op(","):
            break
    no_tx = concurrently or kind == "database"
    return command(text, needs=tuple(needs), no_tx_block=no_tx, effect=fx), None


def _comment(text: str, c: Cursor) -> Found:
    if not c.word("on"):
        return command(text, deferred="COMMENT of an unusual form"), None
    kind, kinds = _object(c)
    if kind == "column":
        parts: list[str] = []
        while (t := c.take()) is not None and t.ident is not None:
            parts.append(t.ident)
            if not c.op("."):
                break
        if len(parts) not in (2, 3):  # rel.col or schema.rel.col
            return command(text, deferred="COMMENT ON COLUMN of an unusual form"), None
        rel = (parts[0], parts[1]) if len(parts) == 3 else (None, parts[0])
        need = _owner("relation", rel, "rpvmfc")
        return command(text, needs=(need,)), None
    if kind in ("policy", "trigger", "rule", "constraint"):
        return _on_table(text, c, f"COMMENT ON {kind.upper()}")
    if kind == "role":
        need = ObjNeed("attribute", "CREATEROLE", "", when="command")
        return command(text, needs=(need,), deferred="COMMENT ON ROLE"), None
    owner = _need_for(kind, kinds, c)
    if owner is None:
        return command(text, deferred=f"COMMENT ON {kind.upper()} is checked by the server"), None
    return command(text, needs=(owner,)), None


def _reindex(text: str, c: Cursor) -> Found:
    if c.op("("):
        c.skip_parens()
    kind, _ = _object(c)
    concurrently = c.word("concurrently")
    if kind not in ("table", "index"):
        return command(text, deferred=f"REINDEX {kind.upper()} is checked by the server"), None
    name = c.qualified()
    if name is None:
        return command(text, deferred="REINDEX of an unusual form"), None
    need = _owner("relation", name, "rpm" if kind == "table" else "iI")
    return command(text, needs=(need,), no_tx_block=concurrently), None


def _cluster(text: str, c: Cursor) -> Found:
    if c.op("("):
        c.skip_parens()
    c.word("verbose")
    name = c.qualified()
    if name is None:
        return command(text, deferred="CLUSTER of every table (skips those it may not)"), None
    return command(text, needs=(_owner("relation", name, "rpm"),)), None


def _refresh(text: str, c: Cursor) -> Found:
    if not (c.word("materialized") and c.word("view")):
        return command(text, deferred="REFRESH of an unusual form"), None
    c.word("concurrently")
    name = c.qualified()
    if name is None:
        return command(text, deferred="REFRESH of an unusual form"), None
    return command(text, needs=(_owner("relation", name, "m"),)), None


def _grant(text: str, c: Cursor) -> Found:
    """``GRANT``/``REVOKE`` privileges ``ON [TABLE] t, ...``: a role with no privilege at all
    on a table (and not its owner) is refused; one with some gets a warning."""
    fx = Effect(opaque=True)
    depth = 0
    while (t := c.take()) is not None:
        if t.kind == "op":
            depth += (t.value == "(") - (t.value == ")")
            if t.value == "(":
                return command(text, deferred="GRANT of columns", effect=fx), None
        elif depth == 0 and t.is_word("on"):
            break
    else:
        return command(text, deferred="GRANT of a role", effect=fx), None
    c.word("table")
    first = c.peek()
    if first is not None and first.kind == "word" and first.value in _GRANTED_ON:
        return command(text, deferred=f"GRANT ON {first.value.upper()}", effect=fx), None
    needs: list[ObjNeed] = []
    while True:
        name = c.qualified()
        if name is None:
            return command(text, deferred="GRANT of an unusual form", effect=fx), None
        needs.append(ObjNeed("grant", "", name[1], name[0], when="command"))
        if not c.op(","):
            break
    return command(text, needs=tuple(needs), effect=fx), None


def _load(text: str, c: Cursor) -> Found:
    """``LOAD 'library'``: superusers only, but for ``$libdir/plugins/``."""
    t = c.take()
    if t is None or t.kind != "string" or not t.value.startswith("'"):
        return command(text, deferred="LOAD of an unusual form", effect=Effect(opaque=True)), None
    if t.value[1:].startswith("$libdir/plugins/"):
        return command(text, effect=Effect(opaque=True)), None
    need = ObjNeed("attribute", "SUPERUSER", "", when="command")
    return command(text, needs=(need,), effect=Effect(opaque=True)), None
