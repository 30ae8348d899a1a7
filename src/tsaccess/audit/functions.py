"""The audit trail's functions as plan steps: ``SECURITY DEFINER`` functions, and what the
compiled trigger functions (:mod:`tsaccess.native`) need.

With the compiled functions, ``tsaccess_audit_stmt()`` is C for every statement trigger of
statement and per-row mode (the DELETE fallback on compressed hypertables stays PL/pgSQL). It
keeps each statement's record (per row: with the changed rows) in backend memory and, before
the transaction commits, calls two kinds of owner-only PL/pgSQL functions, as their owner:

* ``<schema>.tsaccess_audit_flush(...)``: the audit rows, one array per column (ids taken when
  the statements ran, so every audit row keeps its statement's place in the order);
* ``<data_schema>.tsaccess_flush_<digest>(ids, ops, olds, news)`` per table audited per row:
  the changed rows, as the table's row type, into its data table (the same values as the
  PL/pgSQL function's).

A per-row statement of 1,000 rows or more is handed to the table's PL/pgSQL per-row function
(the trigger's fifth argument), which writes it at once, set-based.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from psycopg import sql

from tsaccess.audit.integrity.schema import audit_owned
from tsaccess.audit.templates import qualified, row_value, text
from tsaccess.native import AUDIT_SYMBOL, FLUSH_FUNCTION, c_function
from tsaccess.steps import Step, function_grants, grant_steps

if TYPE_CHECKING:
    from tsaccess.catalog import CatalogSnapshot, FunctionInfo
    from tsaccess.policy import Policy, Table

__all__ = [
    "body_sql",
    "compiled_function_steps",
    "definer_sql",
    "function_steps",
    "rows_flush_name",
    "stmt_function",
    "unused_flush_steps",
    "uses_compiled",
]

_PIN = "search_path=pg_catalog, pg_temp"


def body_sql(body: str) -> sql.Composable:
    # dollar-quoted for readable scripts, unless a (policy-controlled) name could close it
    return (
        sql.SQL("$tsaccess$" + body + "$tsaccess$")
        if "$tsaccess$" not in body
        else sql.Literal(body)
    )


def function_steps(
    policy: Policy,
    ident: sql.Composable,
    label: str,
    create: sql.Composed,
    body: str,
    existing: FunctionInfo | None,
    want_acl: set[tuple[str, str]],
    *,
    pinned: bool = True,
    definer: bool = True,
) -> list[Step]:
    """Create/replace a function when its source or settings (``pinned``: its search_path;
    ``definer``: SECURITY DEFINER) differ, give it to the audit owner, its EXECUTE privileges
    ``want_acl``."""
    steps: list[Step] = []
    ok = (
        existing is not None
        and existing.source == body
        and existing.security_definer == definer
        and existing.config == ((_PIN,) if pinned else ())
    )
    if not ok:
        steps.append(Step(create, f"create or replace audit function {label}", "audit"))
    if existing is None or existing.owner != policy.audit.owner:
        steps.append(audit_owned(policy, "FUNCTION", ident, label))
    have = function_grants(existing.acl if existing else None, policy.audit.owner)
    steps += grant_steps(ident, label, "FUNCTION", have, want_acl, "audit")
    return steps


def definer_sql(
    fq: sql.Composable, signature: str, returns: str, lang: str, body: str, *, pinned: bool = True
) -> sql.Composed:
    """``CREATE OR REPLACE FUNCTION ... SECURITY DEFINER`` (``pinned``: its search_path)."""
    pin = " SET search_path = pg_catalog, pg_temp" if pinned else ""
    head = f"CREATE OR REPLACE FUNCTION {{f}}{signature} RETURNS {returns} LANGUAGE {lang}"
    return sql.SQL(head + " VOLATILE SECURITY DEFINER" + pin + " AS {body}").format(
        f=fq, body=body_sql(body)
    )


def _owner_only_sql(fq: sql.Composable, signature: sql.Composable, body: str) -> sql.Composed:
    """A function the compiled trigger calls as its owner (not a definer: nobody else may
    execute it), its search_path pinned; PL/pgSQL, whose plan is kept for the session (a SQL
    function's would be made again at every commit)."""
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {f}({sig}) RETURNS void LANGUAGE plpgsql VOLATILE"
        " SET search_path = pg_catalog, pg_temp AS {body}"
    ).format(f=fq, sig=signature, body=body_sql(body))


def stmt_function(native: bool, plpgsql_body: str) -> tuple[str, str, bool]:
    """(the ``prosrc``, the ``LANGUAGE ... AS`` clause, SECURITY DEFINER?) of
    ``tsaccess_audit_stmt()``."""
    if native:
        return AUDIT_SYMBOL, c_function(AUDIT_SYMBOL), False
    return plpgsql_body, "", True


def uses_compiled(table: Table) -> bool:
    """Whether the compiled trigger audits ``table`` (a table with a column named
    ``ordinality`` keeps the PL/pgSQL one: its flush function could not tell that column from
    the row number)."""
    return table.audit == "statement" or all(c.name != "ordinality" for c in table.columns)


ROWS_FLUSH_PREFIX = "tsaccess_flush_"


def rows_flush_name(table: str) -> str:
    """The per-row flush function of ``table`` (a digest: any table name fits)."""
    return ROWS_FLUSH_PREFIX + hashlib.sha256(table.encode()).hexdigest()[:16]


def unused_flush_steps(policy: Policy, cat: CatalogSnapshot | None, native: bool) -> list[Step]:
    """Drop the per-row flush functions no table uses any more (audited otherwise, out of the
    policy, or back to the PL/pgSQL functions): each takes its table's row type, so it would
    keep the table from being dropped."""
    data = cat.audit_data if cat else None
    wanted = {rows_flush_name(t.name) for t in policy.row_audited if native and uses_compiled(t)}
    ds = policy.audit.data_schema
    return [
        Step(
            sql.SQL("DROP FUNCTION {}").format(sql.Identifier(ds, name)),
            f"drop {ds}.{name} (no table is audited per row through it)",
            "audit",
        )
        for name in sorted(data.functions if data else ())
        if name.startswith(ROWS_FLUSH_PREFIX) and name not in wanted
    ]


_FLUSH_SIGNATURE = (
    "ids bigint[], ops text[], tables text[], descriptions text[], counts bigint[],"
    " logins oid[], roles text[], apps text[], actors text[], requests text[]"
)

_FLUSH = """
BEGIN
INSERT INTO {audit} (id, username, operation, table_name, description, effective_role, txid,
                     client_addr, application_name, actor, request_id, row_count,
                     client_asserted)
OVERRIDING SYSTEM VALUE
SELECT u.id, pg_catalog.pg_get_userbyid(u.login), u.op, u.tbl, u.descr,
       COALESCE(u.role, pg_catalog.pg_get_userbyid(u.login)::pg_catalog.text),
       pg_catalog.txid_current(), pg_catalog.inet_client_addr(), u.app, u.act, u.req, u.n,
       (u.act IS NOT NULL OR u.req IS NOT NULL OR u.app IS NOT NULL)
FROM ROWS FROM (pg_catalog.unnest(ids), pg_catalog.unnest(ops), pg_catalog.unnest(tables),
               pg_catalog.unnest(descriptions), pg_catalog.unnest(counts),
               pg_catalog.unnest(logins), pg_catalog.unnest(roles), pg_catalog.unnest(apps),
               pg_catalog.unnest(actors), pg_catalog.unnest(requests))
     AS u(id, op, tbl, descr, n, login, role, app, act, req);
END
"""

_ROWS_FLUSH = """
BEGIN
INSERT INTO {data} (audit_id, event_time, old_data, new_data)
SELECT u.id, pg_catalog.now(),
       CASE WHEN u.op OPERATOR(pg_catalog.<>) 'INSERT' THEN {old} END,
       CASE WHEN u.op OPERATOR(pg_catalog.<>) 'DELETE' THEN {new} END
FROM ROWS FROM (pg_catalog.unnest(ids), pg_catalog.unnest(ops)) WITH ORDINALITY AS u(id, op, i)
JOIN pg_catalog.unnest(olds) WITH ORDINALITY AS o ON o.ordinality OPERATOR(pg_catalog.=) u.i
JOIN pg_catalog.unnest(news) WITH ORDINALITY AS n ON n.ordinality OPERATOR(pg_catalog.=) u.i;
END
"""


def compiled_function_steps(
    policy: Policy, cat: CatalogSnapshot | None, attrs: dict[str, tuple[str, ...]]
) -> list[Step]:
    """The flush functions of the compiled trigger: the audit rows', and per table audited per
    row (``attrs``: its row type's attributes, by table name) the changed rows'."""
    fq = qualified(policy, FLUSH_FUNCTION)
    body = _FLUSH.format(audit=text(qualified(policy, policy.audit.table)))
    ident = sql.SQL("{}({})").format(
        fq, sql.SQL(", ").join(sql.SQL(p.split()[1]) for p in _FLUSH_SIGNATURE.split(", "))
    )
    steps = function_steps(
        policy,
        ident,
        FLUSH_FUNCTION,
        _owner_only_sql(fq, sql.SQL(_FLUSH_SIGNATURE), body),
        body,
        cat.functions.get(FLUSH_FUNCTION) if cat else None,
        set(),
        definer=False,
    )
    data = cat.audit_data if cat else None
    ds = policy.audit.data_schema
    for table in policy.row_audited:
        if not uses_compiled(table):
            continue
        name = rows_flush_name(table.name)
        fq = sql.Identifier(ds, name)
        rowtype = qualified(policy, table.name)
        body = _ROWS_FLUSH.format(
            data=text(sql.Identifier(ds, table.name)),
            old=row_value(policy, table, attrs[table.name], "o"),
            new=row_value(policy, table, attrs[table.name], "n"),
        )
        steps += function_steps(
            policy,
            sql.SQL("{}(bigint[], text[], {}[], {}[])").format(fq, rowtype, rowtype),
            f"{ds}.{name} (per-row flush of {table.name})",
            _owner_only_sql(
                fq,
                sql.SQL("ids bigint[], ops text[], olds {}[], news {}[]").format(rowtype, rowtype),
                body,
            ),
            body,
            data.functions.get(name) if data else None,
            set(),
            definer=False,
        )
    return steps
