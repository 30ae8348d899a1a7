"""TimescaleDB's routines in the access matrix: may a policy user execute one PUBLIC lost?

One cell per user (object :data:`ROUTINES_OBJECT`, privilege ``EXECUTE``, in the matrix's
``routines`` section, apart from the table cells): expected denied;
the catalog answer is ``has_function_privilege`` on every routine the rule revokes from PUBLIC
(:mod:`tsaccess.catalog.routines`), the actual answer comes from the user's own session, which
plans a call of each of those functions (``EXPLAIN`` checks EXECUTE without running anything)
in one round trip. Procedures cannot be planned, nor functions of pseudo-type arguments: the
catalog answers for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tsaccess.catalog.routines import RoutineInfo, read_routines
from tsaccess.verify.matrix import ROUTINES_OBJECT, Cell

__all__ = ["RoutineProbe", "routine_cell", "routine_probe"]

_PSEUDO = {"internal", "trigger", "event_trigger", "record", '"any"', "cstring", "unknown"}
_NOTICE = "tsaccess-routines:"


@dataclass(frozen=True)
class RoutineProbe:
    """The routines the rule revokes from PUBLIC and who may execute them per the catalog."""

    revoked: tuple[RoutineInfo, ...]
    executable: dict[str, tuple[str, ...]]
    """user -> the revoked routines ``has_function_privilege`` lets the user execute."""


def routine_probe(admin: psycopg.Connection[Any], users: list[str]) -> RoutineProbe | None:
    """The catalog side (None without TimescaleDB)."""
    routines = read_routines(admin)
    revoked = tuple(r for r in routines if r.keep is None)
    if not revoked:
        return None
    rows = admin.execute(
        "SELECT u, pg_catalog.array_agg(f ORDER BY f) FILTER"
        " (WHERE pg_catalog.has_function_privilege(u, f, 'EXECUTE'))"
        " FROM unnest(%s::text[]) u, unnest(%s::text[]) f"
        " WHERE EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = u) GROUP BY u",
        (users, [_regprocedure(r) for r in revoked]),
    ).fetchall()
    return RoutineProbe(revoked, {r[0]: tuple(r[1] or ()) for r in rows})


def _regprocedure(r: RoutineInfo) -> str:
    return (
        sql.SQL("{}({})").format(sql.Identifier(r.schema, r.name), sql.SQL(r.args)).as_string(None)
    )


def _call(r: RoutineInfo) -> str | None:
    """``schema.f(a1, ...) FROM (SELECT NULL::t AS a1, ... OFFSET 0) s`` for a function whose
    argument types are concrete: the arguments are not constants (OFFSET 0 keeps the planner
    from folding a strict function of a NULL constant away, which skips the EXECUTE check)."""
    types = [t for t in r.args.split(", ") if t] if r.args else []
    if r.kind != "f" or any(t in _PSEUDO or t.startswith("any") for t in types):
        return None
    fn = sql.Identifier(r.schema, r.name).as_string(None)
    names = [f"a{i}" for i in range(len(types))]
    cols = ", ".join(f"NULL::{t} AS {n}" for t, n in zip(types, names, strict=True))
    return f"{fn}({', '.join(names)}) FROM (SELECT {cols} OFFSET 0) s"


_TRY = """
DO $tsaccess$
DECLARE f text; allowed text[] := '{}'; untried text[] := '{}';
BEGIN
  FOREACH f IN ARRAY %s::text[] LOOP
    BEGIN
      EXECUTE 'EXPLAIN SELECT ' || f;
      allowed := allowed || f;
    EXCEPTION WHEN insufficient_privilege THEN NULL;
              WHEN OTHERS THEN untried := untried || f;
    END;
  END LOOP;
  RAISE NOTICE '%%', %s || pg_catalog.json_build_array(allowed, untried)::text;
END
$tsaccess$
"""


def _tried(conn: psycopg.Connection[Any], calls: list[str]) -> tuple[list[str], list[str]]:
    """(allowed, untried) calls, planned by the user's session in one round trip."""
    found: list[str] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        msg = diag.message_primary or ""
        if msg.startswith(_NOTICE):
            found.append(msg[len(_NOTICE) :])

    literal = sql.Literal(calls).as_string(conn)
    stmt = _TRY % (literal, sql.Literal(_NOTICE).as_string(conn))
    conn.add_notice_handler(keep)
    try:
        conn.execute(stmt.encode())
    finally:
        conn.remove_notice_handler(keep)
        conn.rollback()
    if not found:
        return [], calls
    allowed, untried = json.loads(found[-1])
    return list(allowed), list(untried)


def routine_cell(
    conn: psycopg.Connection[Any] | None, user: str, probe: RoutineProbe, detail: str
) -> Cell:
    """The user's cell; ``conn`` None: not tried (``detail`` says why)."""
    may = probe.executable.get(user, ())
    actual: bool | None = None
    error = False
    if conn is not None:
        by_call = {c: r.signature for r in probe.revoked if (c := _call(r))}
        calls = list(by_call)
        try:
            tried, _untried = _tried(conn, calls)
            allowed = [by_call.get(c, c) for c in tried]
        except psycopg.Error as exc:
            error = True
            detail = f"{exc.sqlstate or exc.__class__.__name__} {exc.diag.message_primary or exc}"
        else:
            actual = bool(allowed)
            detail = (
                f"may execute {', '.join(allowed[:5])}"
                if allowed
                else f"{len(calls)} function(s) tried, {len(probe.revoked)} checked in the catalog"
            )
    if may:
        detail = f"catalog: may execute {', '.join(may[:5])}; " + detail
    return Cell(user, ROUTINES_OBJECT, "EXECUTE", False, bool(may), actual, detail, error=error)
