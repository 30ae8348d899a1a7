"""Row slices as plan steps: each login user sees only the rows of its slice, by every path.

* The login user's attributes live in ``tsaccess_rls.user_attributes``, a table nobody but its
  owner can read or write; ``tsaccess_rls.attribute(name)`` (``SECURITY DEFINER``, ``STABLE``)
  returns the value for ``session_user``, which ``SET ROLE``, ``set_config`` and
  ``application_name`` cannot change. The sliced table gets row-level security with one policy
  per granted role (``column = (SELECT tsaccess_rls.attribute('...'))`` for sliced roles,
  ``true`` for the others): ``FOR ALL`` for a role granted SELECT, INSERT, UPDATE and DELETE,
  else one policy per granted command (a ``FOR ALL ... USING (true)`` policy of an INSERT-only
  role would widen its members' reads to every row).
* Chunks copy the hypertable's ACL and never carry row-level security: new chunks are closed
  by the chunk trigger (:mod:`tsaccess.plan.phases.chunks`), existing ones by
  :mod:`tsaccess.plan.phases.timescale`.
* Views that read a sliced table with their owner's rights lose the sliced roles' and PUBLIC's
  privileges; users who may INSERT into a sliced table and are in no sliced role get
  ``BYPASSRLS`` (``COPY FROM`` is refused under row-level security).

See ``docs/timescaledb.md``.
"""

from __future__ import annotations

import hashlib

from psycopg import sql

from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog.timescale import (
    ATTRIBUTE_FUNCTION,
    ATTRIBUTE_TABLE,
    SLICE_SCHEMA,
    TimescaleCatalog,
)
from tsaccess.policy import Policy, Table
from tsaccess.steps import Step, function_grants, grant_steps

__all__ = [
    "ATTRIBUTE_BODY",
    "POLICY_PREFIX",
    "slice_steps",
]

POLICY_PREFIX = "tsaccess_"

Grant = tuple[str, str]

_COMMANDS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})

ATTRIBUTE_BODY = (
    "SELECT value FROM tsaccess_rls.user_attributes"
    " WHERE username = pg_catalog.session_user() AND attribute = $1"
)


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _slice_steps(
    policy: Policy, cat: CatalogSnapshot | None, tsc: TimescaleCatalog | None
) -> list[Step]:
    steps: list[Step] = []
    sliced = sorted({r.name for r in policy.roles if r.slices})
    schema = sql.Identifier(SLICE_SCHEMA)
    owner = cat.current_user if cat else None
    if tsc is None or tsc.slice_schema is None:
        steps.append(
            Step(
                sql.SQL("CREATE SCHEMA {}").format(schema),
                f"create schema {SLICE_SCHEMA} (user attributes for row slices, private)",
                "security",
            )
        )
        have_ns: set[Grant] = set()
    else:
        owner = tsc.slice_schema[0]
        have_ns = {g for g in tsc.slice_schema[1] if g[0] != owner}
    steps += grant_steps(
        schema,
        f"schema {SLICE_SCHEMA}",
        "SCHEMA",
        have_ns,
        {(r, "USAGE") for r in sliced},
        "security",
    )
    table = sql.Identifier(SLICE_SCHEMA, ATTRIBUTE_TABLE)
    if tsc is None or not tsc.attribute_table:
        steps.append(
            Step(
                sql.SQL(
                    "CREATE TABLE {} (username text NOT NULL, attribute text NOT NULL,"
                    " value text NOT NULL, PRIMARY KEY (username, attribute))"
                ).format(table),
                f"create {SLICE_SCHEMA}.{ATTRIBUTE_TABLE} (readable by its owner only)",
                "security",
            )
        )
    want = {(u.name, k, v) for u in policy.users for k, v in u.attributes}
    have = set(tsc.attributes) if tsc else set()
    for user, attr, _ in sorted(have - want):
        if (user, attr) in {(w[0], w[1]) for w in want}:
            continue  # updated below
        steps.append(
            Step(
                sql.SQL("DELETE FROM {} WHERE username = {} AND attribute = {}").format(
                    table, sql.Literal(user), sql.Literal(attr)
                ),
                f"remove attribute {attr} of {user}",
                "security",
            )
        )
    for user, attr, value in sorted(want - have):
        steps.append(
            Step(
                sql.SQL(
                    "INSERT INTO {} VALUES ({}, {}, {}) ON CONFLICT (username, attribute)"
                    " DO UPDATE SET value = EXCLUDED.value"
                ).format(table, sql.Literal(user), sql.Literal(attr), sql.Literal(value)),
                f"set attribute {attr} of {user}",
                "security",
            )
        )
    fn = sql.Identifier(SLICE_SCHEMA, ATTRIBUTE_FUNCTION)
    existing = tsc.attribute_function if tsc else None
    if existing is None or existing[0] != ATTRIBUTE_BODY:
        steps.append(
            Step(
                sql.SQL(
                    "CREATE OR REPLACE FUNCTION {}(text) RETURNS text LANGUAGE sql STABLE"
                    " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {}"
                ).format(fn, sql.Literal(ATTRIBUTE_BODY)),
                f"create function {SLICE_SCHEMA}.{ATTRIBUTE_FUNCTION}(text): the login user's "
                "attribute",
                "security",
            )
        )
    have_fn = function_grants(existing[1] if existing is not None else None, owner or "")
    steps += grant_steps(
        sql.SQL("{}(text)").format(fn),
        f"function {SLICE_SCHEMA}.{ATTRIBUTE_FUNCTION}",
        "FUNCTION",
        have_fn,
        {(r, "EXECUTE") for r in sliced},
        "security",
    )
    for t in policy.tables:
        steps += _rls_steps(policy, t, tsc)
    return steps


def _rls_steps(policy: Policy, t: Table, tsc: TimescaleCatalog | None) -> list[Step]:
    target = sql.Identifier(policy.schema, t.name)
    sliced = policy.sliced_roles(t.name)
    enabled = bool(tsc and tsc.rls.get(t.name))
    have = {p for p in (tsc.policies.get(t.name, frozenset()) if tsc else ())}
    ours = {p for p in have if p.startswith(POLICY_PREFIX)}
    steps: list[Step] = []
    want: dict[str, sql.Composed] = {}
    if sliced:
        for r in policy.roles:
            if not r.privileges_on(t.name):
                continue
            s = r.slice_of(t.name)
            cond: sql.Composable = sql.SQL("true")
            if s:
                col = t.column(s.column)
                typ = col.type if col else "text"
                cond = sql.SQL("{} = (SELECT {}({})){}").format(
                    sql.Identifier(s.column),
                    sql.Identifier(SLICE_SCHEMA, ATTRIBUTE_FUNCTION),
                    sql.Literal(s.attribute),
                    # the attribute is text; compare in the column's type (validated name)
                    sql.SQL("" if typ == "text" else "::" + typ),
                )
            privs = {str(p) for p in r.privileges_on(t.name)}
            if privs >= _COMMANDS:
                name = POLICY_PREFIX + _digest(r.name, cond.as_string(None))
                want[name] = sql.SQL(
                    "CREATE POLICY {} ON {} FOR ALL TO {} USING ({}) WITH CHECK ({})"
                ).format(sql.Identifier(name), target, sql.Identifier(r.name), cond, cond)
                continue
            # only the commands the role is granted: a FOR ALL policy would also widen the
            # role's members' reads (permissive policies of one command OR together)
            for cmd in sorted(_COMMANDS & privs):
                clause = {
                    "SELECT": "USING ({c})",
                    "DELETE": "USING ({c})",
                    "INSERT": "WITH CHECK ({c})",
                    "UPDATE": "USING ({c}) WITH CHECK ({c})",
                }[cmd]
                name = POLICY_PREFIX + _digest(r.name, cmd, cond.as_string(None))
                want[name] = sql.SQL("CREATE POLICY {} ON {} FOR {} TO {} " + clause).format(
                    sql.Identifier(name),
                    target,
                    sql.SQL(cmd),
                    sql.Identifier(r.name),
                    c=cond,
                )
    for name in sorted(ours - set(want)):
        steps.append(
            Step(
                sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(name), target),
                f"drop outdated row policy {name} on {t.name}",
                "security",
            )
        )
    if sliced and not enabled:
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target),
                f"enable row-level security on {t.name} (slices for {', '.join(sliced)})",
                "security",
            )
        )
    if not sliced and enabled and ours:
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(target),
                f"disable row-level security on {t.name} (no slices left)",
                "security",
            )
        )
    for name in sorted(set(want) - ours):
        steps.append(Step(want[name], f"row policy {name} on {t.name}", "security"))
    return steps


def _bypass_steps(policy: Policy, tsc: TimescaleCatalog | None) -> list[Step]:
    """COPY FROM is refused on a table with row-level security for anyone subject to it:
    users in no sliced role who may INSERT into a sliced table get BYPASSRLS; the policy's
    other users never have it (it would bypass every row-level security policy)."""
    sliced_tables = {s.table for r in policy.roles for s in r.slices}
    steps: list[Step] = []
    for u in policy.users:
        roles = [policy.role(r) for r in u.roles]
        in_slice = any(r is not None and r.slices for r in roles)
        writes = any(
            r is not None and "INSERT" in r.privileges_on(t) for r in roles for t in sliced_tables
        )
        want = writes and not in_slice
        have = bool(tsc and tsc.bypassrls.get(u.name))
        if tsc is not None and u.name not in tsc.bypassrls and not want:
            continue  # created by this plan without BYPASSRLS
        if have != want:
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} {}").format(
                        sql.Identifier(u.name), sql.SQL("BYPASSRLS" if want else "NOBYPASSRLS")
                    ),
                    f"{u.name}: {'BYPASSRLS (COPY into sliced tables)' if want else 'NOBYPASSRLS'}",
                    "security",
                )
            )
    return steps


def _leaking_views(policy: Policy, tsc: TimescaleCatalog) -> dict[str, set[str]]:
    """Views (and aggregates outside the policy) that read a sliced table with their owner's
    rights somewhere on the way (not ``security_invoker``): view -> the sliced tables."""
    sliced = {s.table for r in policy.roles for s in r.slices}
    memo: dict[str, set[tuple[str, bool]]] = {}

    def reach(view: str, seen: frozenset[str]) -> set[tuple[str, bool]]:
        if view in memo:
            return memo[view]
        invoker, sources = tsc.view_sources[view]
        out: set[tuple[str, bool]] = set()
        for src in sources:
            if src in sliced:
                out.add((src, not invoker))
            elif src in tsc.view_sources and src not in seen:
                out |= {(t, d or not invoker) for t, d in reach(src, seen | {view})}
        memo[view] = out
        return out

    leaks: dict[str, set[str]] = {}
    for view in sorted(tsc.view_sources):
        if policy.aggregate(view) is not None or view == policy.audit.rows_view:
            continue
        tables = {t for t, definer in reach(view, frozenset()) if definer}
        if tables:
            leaks[view] = tables
    return leaks


def _view_steps(
    policy: Policy, cat: CatalogSnapshot | None, tsc: TimescaleCatalog, warnings: list[str]
) -> list[Step]:
    steps: list[Step] = []
    for view, tables in _leaking_views(policy, tsc).items():
        roles = {r for t in tables for r in policy.sliced_roles(t)} | {"PUBLIC"}
        info = cat.tables.get(view) if cat else None
        have = {g for g in (info.acl if info else ()) if info and g[0] != info.owner}
        warnings.append(
            f"view {view} reads {', '.join(sorted(tables))} with its owner's rights (not "
            "security_invoker), around the row slices: the sliced roles and PUBLIC get no "
            f"privilege on it (ALTER VIEW {view} SET (security_invoker = true) lets readers "
            "see their slice through it)"
        )
        steps += grant_steps(
            sql.Identifier(policy.schema, view),
            f"view {view} (reads sliced {', '.join(sorted(tables))} as its owner)",
            "TABLE",
            have,
            {g for g in have if g[0] not in roles},
            "security",
        )
    return steps


_CLEAR_STATISTICS = """
DECLARE r record;
BEGIN
  -- compressed chunks keep their own statistics target (1000 on segment-by columns)
  FOR r IN
    SELECT k.oid::pg_catalog.regclass AS rel, a.attname
    FROM _timescaledb_catalog.hypertable h
    JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = h.compressed_hypertable_id
    JOIN pg_catalog.pg_namespace n ON n.nspname = c.schema_name
    JOIN pg_catalog.pg_class k ON k.relnamespace = n.oid AND k.relname = c.table_name
    JOIN pg_catalog.pg_attribute a ON a.attrelid = k.oid AND a.attnum > 0
         AND NOT a.attisdropped AND a.attstattarget <> 0
    WHERE h.schema_name = {schema} AND h.table_name = {table}
  LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS 0', r.rel, r.attname);
  END LOOP;
  DELETE FROM pg_catalog.pg_statistic s
  WHERE s.starelid = {relation}::pg_catalog.regclass
     OR s.starelid IN (
       SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', c.schema_name, c.table_name))
       FROM _timescaledb_catalog.hypertable h
       JOIN _timescaledb_catalog.chunk c
         ON c.hypertable_id = h.id OR c.hypertable_id = h.compressed_hypertable_id
       WHERE h.schema_name = {schema} AND h.table_name = {table});
END
"""

_CLEAR_PLAIN = "DELETE FROM pg_catalog.pg_statistic WHERE starelid = {}::pg_catalog.regclass"


def _statistics_steps(
    policy: Policy, cat: CatalogSnapshot | None, timescaledb: bool, warnings: list[str]
) -> list[Step]:
    """``statistics = false``: every column's statistics target 0 (TimescaleDB copies it to
    every chunk, also to chunks made later), and the statistics gathered so far deleted (the
    table's, its chunks', its compressed chunks'; a superuser's privilege)."""
    steps: list[Step] = []
    for t in policy.tables:
        if t.statistics:
            continue
        info = cat.tables.get(t.name) if cat else None
        have = {c.name: c.statistics for c in info.columns} if info else {}
        todo = [c.name for c in t.columns if have.get(c.name, -1) != 0]
        if not todo:
            continue
        target = sql.Identifier(policy.schema, t.name)
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} {}").format(
                    target,
                    sql.SQL(", ").join(
                        sql.SQL("ALTER COLUMN {} SET STATISTICS 0").format(sql.Identifier(c))
                        for c in todo
                    ),
                ),
                f"no planner statistics on {t.name} ({', '.join(todo)}): estimates tell sliced "
                "readers nothing about rows outside their slice",
                "security",
                action="revoke",
                object=f"table {t.name}",
            )
        )
        if cat is not None and not cat.superuser:
            warnings.append(
                f"not a superuser: statistics already gathered on {t.name} stay until a "
                "superuser deletes them (tsaccess apply as a superuser does)"
            )
            continue
        literal = sql.Literal(target.as_string(None))
        clear = (
            sql.SQL("DO {}").format(
                sql.Literal(
                    _CLEAR_STATISTICS.format(
                        schema=sql.Literal(policy.schema).as_string(None),
                        table=sql.Literal(t.name).as_string(None),
                        relation=literal.as_string(None),
                    )
                )
            )
            if t.hypertable and timescaledb
            else sql.SQL(_CLEAR_PLAIN).format(literal)
        )
        steps.append(
            Step(
                clear,
                f"delete the statistics gathered on {t.name} and its chunks",
                "security",
                action="revoke",
                object=f"table {t.name}",
                internal=True,
            )
        )
    return steps


def slice_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    tsc: TimescaleCatalog | None,
    timescaledb: bool,
    warnings: list[str],
) -> list[Step]:
    """Steps for the row slices (``tsc`` None: an empty database)."""
    steps: list[Step] = []
    if any(r.slices for r in policy.roles) or (tsc and tsc.slice_schema is not None):
        steps += _slice_steps(policy, cat, tsc)
    if tsc is not None:
        steps += _view_steps(policy, cat, tsc, warnings)
    for t in policy.tables:
        others = sorted(
            p
            for p in (tsc.policies.get(t.name, ()) if tsc else ())
            if not p.startswith(POLICY_PREFIX)
        )
        if others:
            warnings.append(
                f"table {t.name} has row policies tsaccess does not manage: {', '.join(others)}"
                " (permissive policies widen every slice; left alone)"
            )
    steps += _bypass_steps(policy, tsc)
    steps += _statistics_steps(policy, cat, timescaledb, warnings)
    return steps
