"""Function calls whose privileges depend on their arguments: sequences (``nextval('s')``),
settings (``current_setting('x')``, ``set_config``), names cast to ``regclass``.

A constant cast to ``regclass`` (``'s.t'::regclass``, and the argument of ``nextval``) is
looked up when the statement is parsed: a schema named in it needs ``USAGE`` (a ``plan`` need,
``EXPLAIN`` sees it). The sequence or setting privilege is checked when the call runs: a
``run`` need, certain only where the statement evaluates the call whatever the data
(:func:`evaluated_once`: the select list of a query without FROM, ``WHERE``, ``LIMIT``...,
the rows of ``VALUES``).
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from tsaccess.preflight.lexer import parse_name
from tsaccess.preflight.model import OWNER_FUNCTIONS, SESSION_ROLE, Effect, ObjNeed

__all__ = ["call_needs", "evaluated_once", "parse_name", "set_config_effect"]

_SEQ_PRIVS = {
    "nextval": "USAGE",
    "currval": "SELECT",
    "setval": "UPDATE",
    "pg_sequence_last_value": "SELECT",
}
_REG_TYPES = {"REGCLASS", "REGTYPE", "REGPROC", "REGPROCEDURE", "REGOPER", "REGOPERATOR",
              "REGCONFIG", "REGDICTIONARY", "REGCOLLATION"}  # fmt: skip
_TO_REG = {"to_regclass", "to_regtype", "to_regproc", "to_regprocedure", "to_regoper",
           "to_regoperator", "to_regcollation"}  # fmt: skip
_SHORT_CIRCUIT = (exp.Case, exp.If, exp.Coalesce, exp.And, exp.Or, exp.Nullif)


def _literal(node: exp.Expression | None) -> str | None:
    """A string constant (possibly cast to ``regclass``/``text``), else None."""
    while isinstance(node, exp.Cast | exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    return None


def evaluated_once(node: exp.Expression) -> bool:
    """Whether the statement evaluates ``node`` at least once whatever the data: on the way up
    only calls, operators and casts (no ``CASE``, ``AND``, ``COALESCE``...), then the select
    list of a query with no FROM, ``WHERE``, grouping or ``LIMIT``, or a row of ``VALUES``."""
    child: Any = node
    parent: Any = node.parent
    while parent is not None:
        if isinstance(parent, _SHORT_CIRCUIT):
            return False
        if isinstance(parent, exp.Select):
            if child not in parent.expressions or any(
                parent.args.get(k)
                for k in (
                    "from_",
                    "from",
                    "joins",
                    "where",
                    "group",
                    "having",
                    "qualify",
                    "limit",
                    "offset",
                    "fetch",
                    "windows",
                )
            ):
                return False
        elif isinstance(parent, exp.Subquery | exp.CTE | exp.Where | exp.Window | exp.Lateral):
            return False
        elif isinstance(parent, exp.Insert | exp.Values | exp.Tuple | exp.SetOperation):
            pass
        elif isinstance(parent, exp.Update | exp.Delete | exp.Merge | exp.Order | exp.Join):
            return False
        child, parent = parent, parent.parent
    return True


def _reg_needs(name: str) -> list[ObjNeed]:
    parsed = parse_name(name)
    if parsed is None or parsed[0] is None:
        return []
    return [ObjNeed("schema", "USAGE", parsed[0], when="plan")]


def call_needs(node: exp.Expression) -> list[ObjNeed] | None:
    """The needs a call or cast brings besides ``EXECUTE`` (None: a call pre-flight cannot
    judge from its arguments, such as ``nextval`` of a computed name)."""
    if isinstance(node, exp.Cast):
        to = node.args.get("to")
        kind = str(to.this).upper().split(".")[-1] if to is not None else ""
        if kind in _REG_TYPES:
            value = _literal(node.this)
            return _reg_needs(value) if value is not None else []
        return []
    if not isinstance(node, exp.Anonymous):
        return []
    fname = str(node.this).lower()
    args = node.expressions
    once = evaluated_once(node)
    if fname in _SEQ_PRIVS or fname == "lastval":
        value = _literal(args[0]) if args else None
        parsed = parse_name(value) if value is not None else None
        if parsed is None:
            return None  # lastval(), nextval(expression): which sequence is unknown
        out = _reg_needs(value or "")
        priv = _SEQ_PRIVS[fname]
        out.append(ObjNeed("sequence", priv, parsed[1], parsed[0], when="run", certain=once))
        return out
    if fname in OWNER_FUNCTIONS:  # TimescaleDB: the owner of the relation named first
        value = _literal(args[0]) if args else None
        parsed = parse_name(value) if value is not None else None
        if parsed is None:
            return None
        out = _reg_needs(value or "")
        owner = ObjNeed("owner", "rpvmf", parsed[1], parsed[0], when="run", certain=once,
                        target="relation")  # fmt: skip
        return [*out, owner]
    if fname in _TO_REG:
        value = _literal(args[0]) if args else None
        if value is None:
            return None
        parsed = parse_name(value)
        if parsed is None or parsed[0] is None:
            return []
        return [ObjNeed("schema", "USAGE", parsed[0], when="run", certain=once)]
    if fname in ("current_setting", "set_config"):
        value = _literal(args[0]) if args else None
        if value is None:
            return None
        name = value.lower()
        if fname == "current_setting":
            return [ObjNeed("setting", "READ", name, when="run", certain=once)]
        if name == "role":  # as SET ROLE: a member of the role (RESET: none)
            role = _literal(args[1]) if len(args) > 1 else None
            if role is None:
                return None
            if role.lower() == "none":
                return []
            return [ObjNeed("role", "MEMBER", role, when="run", certain=once)]
        if name in ("search_path", "session_authorization"):
            return []
        return [ObjNeed("setting", "SET", name, when="run", certain=once)]
    return []


def set_config_effect(node: exp.Anonymous) -> Effect | None:
    """What ``set_config('role' | 'search_path', value, ...)`` changes for later statements
    (None: it changes neither; an effect with ``replayable`` False: a change pre-flight cannot
    follow, such as a computed name or value)."""
    args = node.expressions
    name = _literal(args[0]) if args else None
    if name is not None and name.lower() not in ("role", "search_path", "session_authorization"):
        return None
    value = _literal(args[1]) if len(args) > 1 else None
    if name is None or value is None or name.lower() == "session_authorization":
        return Effect(opaque=True)
    if name.lower() == "role":
        return Effect(role=SESSION_ROLE if value.lower() == "none" else value)
    return Effect(search_path=value)
