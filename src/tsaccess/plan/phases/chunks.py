"""New chunks as plan steps: closed in the transaction that made them, at no cost otherwise.

A chunk copies its hypertable's ACL and carries no row-level security, and making one fires no
event trigger. A statement trigger ``AFTER INSERT OR UPDATE`` on every policy hypertable
(``tsaccess_chunk_acl()``, the *gate*) sees whether the statement may have made one, and only
then calls ``tsaccess_chunk_fix()`` (``SECURITY DEFINER``, owned by the tables' owner,
executable by the roles that may write a hypertable), which
revokes on every chunk newer than the newest it closed before, per hypertable, every privilege
of the hypertable's sliced roles (its trigger's arguments) and every privilege but SELECT of
everyone else but the owner (a write on a chunk skips the hypertable's audit triggers). The
chunk is not visible to any other session before that transaction commits. No time window: no
chunk is ever looked up by its creation time.

The gate costs two comparisons when the statement made no chunk, whatever the number of chunks:

1. ``pg_stat_get_xact_tuples_inserted`` on TimescaleDB's chunk catalog is 0: this backend
   inserted no chunk row since its statistics were last flushed (this transaction included);
2. else, ``tsaccess.chunk_mark`` is on in this session and the value of TimescaleDB's chunk id
   sequence equals ``currval`` of ``tsaccess_chunk_mark``: no chunk id was handed out anywhere
   since this session last closed every new chunk (the fixer sets the mark; nobody else can:
   ``currval`` is per session and only the owner may ``setval``; a forged setting makes
   ``currval`` fail, and the statement with it).

With the compiled functions (:mod:`tsaccess.native`) the gate is C: test 1 costs a counter
read, and only when it fails does the gate call ``tsaccess_chunk_gate_slow()`` (PL/pgSQL, run
as the writer), which does test 2 and the rest exactly as the PL/pgSQL gate does.

Per hypertable, ``tsaccess_chunk_state`` holds the newest chunk id closed. TimescaleDB makes a
hypertable's chunks under a lock on the hypertable held until the transaction ends, so a chunk id
above the recorded one can only belong to a committed chunk or to this transaction: both are
visible to the fixer. Chunks made without any write through the hypertable (an owner's
``split_chunk``, a superuser's ``create_chunk``) give the sliced roles nothing from their first
moment (their SELECT, INSERT, UPDATE are column privileges, which TimescaleDB never copies:
:mod:`tsaccess.plan.phases.grants`); the writers' copied privileges (and a sliced role's DELETE)
stay on them until the next fixer run in any session or the next ``apply``; see
``docs/timescaledb.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib

from psycopg import sql

from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog.timescale import TimescaleCatalog
from tsaccess.native import GATE_SLOW_FUNCTION, GATE_SYMBOL, c_function
from tsaccess.policy import Policy, Table
from tsaccess.steps import Step, function_grants, grant_steps

__all__ = [
    "CHUNK_ACL_FUNCTION",
    "CHUNK_FIX_FUNCTION",
    "CHUNK_MARK_SEQUENCE",
    "CHUNK_STATE_TABLE",
    "CHUNK_TRIGGER_PREFIX",
    "chunk_fix_body",
    "chunk_gate_body",
    "chunk_steps",
]

CHUNK_ACL_FUNCTION = "tsaccess_chunk_acl"
CHUNK_FIX_FUNCTION = "tsaccess_chunk_fix"
CHUNK_STATE_TABLE = "tsaccess_chunk_state"
CHUNK_MARK_SEQUENCE = "tsaccess_chunk_mark"
CHUNK_TRIGGER_PREFIX = "tsaccess_chunk_acl_"
CHUNK_OBJECT = "chunk trigger"

# No SET search_path (it costs more than the rest): every name and operator is qualified.
_GATE = """
BEGIN
  IF pg_catalog.pg_stat_get_xact_tuples_inserted(
       '_timescaledb_catalog.chunk'::pg_catalog.regclass) OPERATOR(pg_catalog.=) 0
     AND pg_catalog.current_setting('track_counts') OPERATOR(pg_catalog.=) 'on' THEN
    RETURN NULL;  -- this backend made no chunk since its statistics were last flushed
  END IF;{rest}
  RETURN NULL;
END
"""
# test 2 and the fix: the PL/pgSQL gate's rest, and the compiled gate's slow path
_GATE_REST = """
  IF pg_catalog.current_setting('tsaccess.chunk_mark', true) OPERATOR(pg_catalog.=) 'on' THEN
    IF pg_catalog.pg_sequence_last_value('_timescaledb_catalog.chunk_id_seq'::pg_catalog.regclass)
       OPERATOR(pg_catalog.=) pg_catalog.currval({mark}::pg_catalog.regclass) THEN
      RETURN{value};  -- no chunk id handed out anywhere since this session closed every new chunk
    END IF;
  END IF;
  IF {fix}() THEN
    PERFORM pg_catalog.set_config('tsaccess.chunk_mark', 'on', false);
  END IF;"""
_GATE_SLOW = """
BEGIN{rest}
END
"""

_FIX = """
DECLARE
  last bigint := pg_sequence_last_value('_timescaledb_catalog.chunk_id_seq'::regclass);
  t record;
  b bytea;
  p integer;
  roles name[];
  seen integer;
  top integer;
  ch regclass;
  sliced text;
  writers text;
BEGIN
  FOR t IN
    SELECT g.tgrelid AS relid, h.id AS htid, g.tgargs
    FROM pg_trigger g
    JOIN pg_class k ON k.oid = g.tgrelid
    JOIN pg_namespace n ON n.oid = k.relnamespace
    JOIN _timescaledb_catalog.hypertable h ON h.schema_name = n.nspname AND h.table_name = k.relname
    WHERE g.tgfoid = {gate}::regprocedure
      AND EXISTS (SELECT FROM _timescaledb_catalog.chunk c WHERE c.hypertable_id = h.id
                  AND c.id > coalesce((SELECT s.chunk_id FROM {state} s WHERE s.relid = g.tgrelid), 0))
    ORDER BY g.tgrelid
  LOOP
    -- the hypertable's sliced roles: its trigger's arguments (NUL-terminated)
    roles := '{{}}';
    b := t.tgargs;
    LOOP
      p := position('\\x00'::bytea IN b);
      EXIT WHEN p = 0;
      roles := roles || convert_from(substring(b FROM 1 FOR p - 1),
                                     current_setting('server_encoding'))::name;
      b := substring(b FROM p + 1);
    END LOOP;
    INSERT INTO {state} (relid, chunk_id) VALUES (t.relid, 0) ON CONFLICT (relid) DO NOTHING;
    SELECT s.chunk_id INTO seen FROM {state} s WHERE s.relid = t.relid FOR UPDATE;
    SELECT max(c.id) INTO top FROM _timescaledb_catalog.chunk c
    WHERE c.hypertable_id = t.htid AND c.id > seen;
    CONTINUE WHEN top IS NULL;
    FOR ch, sliced, writers IN
      SELECT x.ch, x.sliced, x.writers FROM (
        SELECT k.oid::regclass AS ch,
          (SELECT string_agg(DISTINCT quote_ident(r.rolname), ', ')
           FROM aclexplode(k.relacl) a JOIN pg_roles r ON r.oid = a.grantee
           WHERE r.rolname = ANY (roles)) AS sliced,
          (SELECT string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
             ELSE quote_ident(pg_get_userbyid(a.grantee)) END, ', ')
           FROM aclexplode(k.relacl) a
           WHERE a.grantee <> k.relowner AND a.privilege_type <> 'SELECT') AS writers
        FROM _timescaledb_catalog.chunk c
        JOIN pg_namespace n ON n.nspname = c.schema_name
        JOIN pg_class k ON k.relnamespace = n.oid AND k.relname = c.table_name
        WHERE c.hypertable_id = t.htid AND c.id > seen AND c.id <= top
      ) x
      WHERE x.sliced IS NOT NULL OR x.writers IS NOT NULL
    LOOP
      IF sliced IS NOT NULL THEN
        EXECUTE format('REVOKE ALL ON TABLE %s FROM %s', ch, sliced);
      END IF;
      IF writers IS NOT NULL THEN
        EXECUTE format(
          'REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLE %s FROM %s',
          ch, writers);
      END IF;
    END LOOP;
    UPDATE {state} SET chunk_id = top WHERE relid = t.relid;
  END LOOP;
  IF last IS NULL THEN
    RETURN false;
  END IF;
  PERFORM setval({mark}::regclass, last, true);
  RETURN true;
END
"""


def _lit(policy: Policy, name: str) -> str:
    return sql.Literal(sql.Identifier(policy.schema, name).as_string(None)).as_string(None)


def _gate_rest(policy: Policy, value: str) -> str:
    fix = sql.Identifier(policy.schema, CHUNK_FIX_FUNCTION).as_string(None)
    return _GATE_REST.format(mark=_lit(policy, CHUNK_MARK_SEQUENCE), fix=fix, value=value)


def chunk_gate_body(policy: Policy, native: bool = False) -> str:
    """The exact ``prosrc`` of the gate (compared with the catalog): the PL/pgSQL body, or the
    compiled gate's symbol."""
    return GATE_SYMBOL if native else _GATE.format(rest=_gate_rest(policy, " NULL"))


def chunk_gate_slow_body(policy: Policy) -> str:
    """The exact ``prosrc`` of the compiled gate's slow path."""
    return _GATE_SLOW.format(rest=_gate_rest(policy, ""))


def chunk_fix_body(policy: Policy) -> str:
    """The exact ``prosrc`` of the fixer."""
    return _FIX.format(
        gate=sql.Literal(
            sql.Identifier(policy.schema, CHUNK_ACL_FUNCTION).as_string(None) + "()"
        ).as_string(None),
        state=sql.Identifier(policy.schema, CHUNK_STATE_TABLE).as_string(None),
        mark=_lit(policy, CHUNK_MARK_SEQUENCE),
    )


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _writers(policy: Policy) -> set[tuple[str, str]]:
    """EXECUTE on the fixer for the roles that may write a hypertable (the gate runs as the
    writer; a reader has no business holding the fixer's locks)."""
    return {
        (r.name, "EXECUTE")
        for r in policy.roles
        for t in policy.tables
        if t.hypertable and {"INSERT", "UPDATE"} & {str(p) for p in r.privileges_on(t.name)}
    }


def _function_steps(policy: Policy, cat: CatalogSnapshot | None, native: bool) -> list[Step]:
    steps: list[Step] = []
    functions: list[tuple[str, str, str, bool, set[tuple[str, str]], str]] = [
        (
            CHUNK_FIX_FUNCTION,
            "FUNCTION {}() RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER"
            " SET search_path = pg_catalog, pg_temp AS {}",
            chunk_fix_body(policy),
            True,
            _writers(policy),
            "close every new chunk of the policy's hypertables (as their owner)",
        ),
    ]
    if native:
        functions += [
            (
                GATE_SLOW_FUNCTION,
                "FUNCTION {}() RETURNS void LANGUAGE plpgsql VOLATILE AS {}",
                chunk_gate_slow_body(policy),
                False,
                _writers(policy),
                "the compiled chunk trigger's work after a statement that may have made a chunk",
            ),
            (
                CHUNK_ACL_FUNCTION,
                "FUNCTION {}() RETURNS trigger " + c_function(GATE_SYMBOL) + "{}",
                chunk_gate_body(policy, native=True),
                False,
                set(),
                "the chunk trigger (compiled): one comparison unless the statement made a chunk",
            ),
        ]
    else:
        functions.append(
            (
                CHUNK_ACL_FUNCTION,
                "FUNCTION {}() RETURNS trigger LANGUAGE plpgsql VOLATILE AS {}",
                chunk_gate_body(policy),
                False,
                set(),
                "the chunk trigger: two comparisons unless the statement made a chunk",
            )
        )
    for name, head, body, definer, want, summary in functions:
        fq = sql.Identifier(policy.schema, name)
        info = cat.functions.get(name) if cat else None
        if (
            info is None
            or info.source != body
            or info.security_definer != definer
            or bool(info.config) != definer
        ):
            literal = sql.SQL("") if body == GATE_SYMBOL else sql.Literal(body)
            steps.append(
                Step(
                    sql.SQL("CREATE OR REPLACE " + head).format(fq, literal),
                    f"create function {name}(): {summary}",
                    "security",
                )
            )
        have = function_grants(info.acl if info else None, info.owner if info else "")
        steps += grant_steps(
            sql.SQL("{}()").format(fq), f"function {name}", "FUNCTION", have, want, "security"
        )
    return steps


def _storage_steps(
    policy: Policy, cat: CatalogSnapshot | None, tsc: TimescaleCatalog | None
) -> tuple[list[Step], bool]:
    """The state table and the mark sequence; True when the table is created here."""
    steps: list[Step] = []
    table = sql.Identifier(policy.schema, CHUNK_STATE_TABLE)
    info = cat.tables.get(CHUNK_STATE_TABLE) if cat else None
    if info is None:
        steps.append(
            Step(
                sql.SQL(
                    "CREATE TABLE {} (relid oid PRIMARY KEY, chunk_id integer NOT NULL)"
                ).format(table),
                f"create table {CHUNK_STATE_TABLE}: the newest chunk closed per hypertable "
                "(its owner's only)",
                "security",
            )
        )
    born = set(cat.default_acl) if cat else set()  # a new table gets the default privileges
    have = born if info is None else {g for g in info.acl if g[0] != info.owner}
    steps += grant_steps(table, CHUNK_STATE_TABLE, "TABLE", have, set(), "security")
    seq = sql.Identifier(policy.schema, CHUNK_MARK_SEQUENCE)
    mark = tsc.chunk_mark if tsc else None
    if mark is None:
        steps.append(
            Step(
                sql.SQL("CREATE SEQUENCE {} AS bigint MINVALUE 0").format(seq),
                f"create sequence {CHUNK_MARK_SEQUENCE}: each session's mark of the chunks "
                "it closed (currval)",
                "security",
            )
        )
    have_seq = {g for g in (mark[1] if mark else ()) if mark and g[0] != mark[0]}
    if mark is None:
        have_seq = set()
    steps += grant_steps(
        seq, CHUNK_MARK_SEQUENCE, "SEQUENCE", have_seq, {("PUBLIC", "SELECT")}, "security"
    )
    return steps, info is None


def _trigger_steps(
    policy: Policy, t: Table, cat: CatalogSnapshot | None, timescaledb: bool
) -> list[Step]:
    target = sql.Identifier(policy.schema, t.name)
    sliced = policy.sliced_roles(t.name)
    have = {
        n
        for (tn, n) in (cat.triggers if cat else {})
        if tn == t.name and n.startswith(CHUNK_TRIGGER_PREFIX)
    }
    want: dict[str, sql.Composed] = {}
    if t.hypertable and timescaledb and policy.chunk_privileges != "copied":
        name = CHUNK_TRIGGER_PREFIX + _digest(*sliced)
        want[name] = sql.SQL(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE ON {} FOR EACH STATEMENT"
            " EXECUTE FUNCTION {}({})"
        ).format(
            sql.Identifier(name),
            target,
            sql.Identifier(policy.schema, CHUNK_ACL_FUNCTION),
            sql.SQL(", ").join(sql.Literal(r) for r in sliced),
        )
    steps = [
        Step(
            sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), target),
            f"drop outdated chunk ACL trigger {name} on {t.name}",
            "security",
        )
        for name in sorted(have - set(want))
    ]
    steps += [
        Step(
            want[name],
            f"new chunks of {t.name}: no writes by anyone but the owner"
            + (f", nothing for {', '.join(sliced)}" if sliced else ""),
            "security",
        )
        for name in sorted(set(want) - have)
    ]
    return steps


def _state_step(policy: Policy, t: Table) -> Step:
    """Record the newest chunk of ``t`` as closed (the plan closed every one before)."""
    return Step(
        sql.SQL(
            "INSERT INTO {} (relid, chunk_id) SELECT {}::regclass, coalesce(max(c.id), 0)"
            " FROM _timescaledb_catalog.hypertable h"
            " LEFT JOIN _timescaledb_catalog.chunk c ON c.hypertable_id = h.id"
            " WHERE h.schema_name = {} AND h.table_name = {}"
            " ON CONFLICT (relid) DO UPDATE SET chunk_id = EXCLUDED.chunk_id"
        ).format(
            sql.Identifier(policy.schema, CHUNK_STATE_TABLE),
            sql.Literal(sql.Identifier(policy.schema, t.name).as_string(None)),
            sql.Literal(policy.schema),
            sql.Literal(t.name),
        ),
        f"chunks of {t.name} closed up to the newest one (the chunk trigger starts there)",
        "security",
        object=f"table {t.name}",
        internal=True,
    )


def chunk_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    tsc: TimescaleCatalog | None,
    timescaledb: bool,
    changed: frozenset[str],
    native: bool = False,
) -> list[Step]:
    """The gate, the fixer, their state and the trigger on every policy hypertable (``native``:
    the compiled gate, see :mod:`tsaccess.native`).

    ``changed``: the tables whose chunks' ACLs this plan repairs (their state is advanced after
    the repair). Runs after the TimescaleDB phase."""
    hypertables = [t for t in policy.tables if t.hypertable and timescaledb]
    if policy.chunk_privileges == "copied":  # chunks keep what TimescaleDB copies (adoption)
        hypertables = []
    steps: list[Step] = []
    if hypertables:
        storage, created = _storage_steps(policy, cat, tsc)
        steps += [
            dataclasses.replace(s, object=CHUNK_OBJECT)
            for s in [*storage, *_function_steps(policy, cat, native)]
        ]
    else:
        created = False
    for t in policy.tables:
        trig = _trigger_steps(policy, t, cat, timescaledb)
        steps += trig
        new_trigger = any(s.statement.as_string(None).startswith("CREATE TRIGGER") for s in trig)
        if t in hypertables and (created or new_trigger or t.name in changed):
            steps.append(_state_step(policy, t))
    return steps
