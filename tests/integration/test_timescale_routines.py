"""TimescaleDB's routines after ``apply``: the sweep of issue 21, run on the TimescaleDB we build.

For examples/timescale.toml and examples/company.toml, on one database each (seeded: rows in
every hypertable, compressed and partial chunks, a frozen chunk, the aggregate refreshed, jobs
unscheduled so nothing moves under the sweep):

1. PUBLIC's defaults are put back (as an ``ALTER EXTENSION ... UPDATE`` or a reinstall would):
   the plan shows the repair, and the sweep calls every function of the surface as a superuser,
   then every one that changed something as every policy user: each one a policy user could
   change anything with is revoked by the rule. Then apply.
2. Every routine of the surface (procedures too) as every policy user: the revoked ones are
   refused, the others change nothing; row counts and chunk status are the same afterwards.
3. Normal use keeps working: time_bucket, real-time aggregates, chunk exclusion, the size
   API, DML on compressed chunks, owners' jobs and retention.

The sweep's table (routine, mutates?, checks itself?, revoked?) is written to the file named by
``TSACCESS_SWEEP_TABLE`` when set. Dangerous procedures (``policy_recompression`` crashes the
server when PUBLIC may call it) are only called after apply, where they are refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests import routine_sweep as sw
from tests.fix_server import fresh_db
from tests.helpers import Company, apply_company
from tsaccess.catalog.routines import INTERNAL_SCHEMAS, UNCHECKED_API, read_routines
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import load_policy

pytestmark = pytest.mark.timescaledb

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POST_SETS = 4  # argument sets per routine a user may execute
PRE_SETS = 4  # per function as a superuser (stops at the first change)
USER_SETS = 12  # per mutating function as a policy user (stops at the first change)


@dataclass
class Swept:
    company: Company
    targets: sw.Targets
    surface: list[sw.Routine]
    repair: str = ""
    table: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """routine -> (mutates?, checks itself?, revoked?)."""
    found: dict[str, list[str]] = field(default_factory=dict)
    """routine -> the policy users that changed something through it before apply."""


def _value(typ: str) -> str:
    t = typ.lower()
    if "int" in t or "numeric" in t or "double" in t or "real" in t:
        return "1"
    if "bool" in t:
        return "true"
    return "'x'"


def _seed(conn: psycopg.Connection[Any], company: Company) -> tuple[str, str]:
    """Rows in every hypertable of the policy (as the owner: audited), compressed and partial
    chunks, one frozen chunk, the aggregate refreshed, every job unscheduled. Returns the plain
    and the compressed hypertable (``schema.name``)."""
    policy = company.policy
    conn.autocommit = True  # no job moves anything under the sweep (the scheduler stops)
    conn.execute("SELECT _timescaledb_functions.stop_background_workers()")
    conn.autocommit = False
    plain = compressed = ""
    for t in policy.tables:
        if not t.hypertable:
            continue
        cols = [c for c in t.columns if c.name != t.time_column and not c.nullable]
        names = sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(c.name)) for c in cols)
        values = sql.SQL("").join(sql.SQL(", " + _value(c.type)) for c in cols)
        target = sql.Identifier(policy.schema, t.name)
        conn.execute(
            sql.SQL(
                "INSERT INTO {} ({}{}) SELECT g{} FROM generate_series(now() - interval"
                " '40 days', now(), interval '6 hours') g"
            ).format(target, sql.Identifier(t.time_column), names, values)
        )
        qualified = f"{policy.schema}.{t.name}"
        if t.compression is not None and not compressed:
            compressed = qualified
        elif not plain:
            plain = qualified
    conn.commit()
    if compressed:
        conn.execute(
            "SELECT compress_chunk(c) FROM show_chunks(%s::regclass, older_than => interval"
            " '10 days') c",
            (compressed,),
        )
        ht = next(t for t in policy.tables if f"{policy.schema}.{t.name}" == compressed)
        cols = [c for c in ht.columns if c.name != ht.time_column and not c.nullable]
        conn.execute(
            sql.SQL("INSERT INTO {} ({}{}) VALUES (now() - interval '20 days'{})").format(
                sql.Identifier(policy.schema, ht.name),
                sql.Identifier(ht.time_column),
                sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(c.name)) for c in cols),
                sql.SQL("").join(sql.SQL(", " + _value(c.type)) for c in cols),
            )
        )  # a partial chunk
    conn.execute(
        "SELECT _timescaledb_functions.freeze_chunk(c) FROM show_chunks(%s::regclass) c"
        " ORDER BY c::text LIMIT 1",
        (plain,),
    )
    conn.execute("SELECT alter_job(id, scheduled => false) FROM _timescaledb_config.bgw_job")
    conn.commit()
    conn.autocommit = True
    for a in policy.aggregates:
        conn.execute(
            sql.SQL("CALL refresh_continuous_aggregate({}, NULL, now() - interval '1 day')").format(
                sql.Literal(f"{policy.schema}.{a.name}")
            )
        )
    conn.autocommit = False
    return plain, compressed


@pytest.fixture(scope="module", params=["timescale.toml", "company.toml"])
def swept(request: pytest.FixtureRequest, pg_server: Any, template_db: str) -> Iterator[Swept]:
    with fresh_db(pg_server, template_db, "routines") as db:
        company = apply_company(db, load_policy(EXAMPLES / request.param))
        with db.admin() as conn:
            plain, compressed = _seed(conn, company)
            audit = f"{company.policy.schema}.{company.policy.audit.table}"
            conn.autocommit = True
            targets = sw.discover(conn, plain, compressed or plain, audit)
            yield Swept(company, targets, sw.surface(conn))


def _policy_users(s: Swept) -> list[str]:
    return [u.name for u in s.company.policy.users]


def _sweep(
    conn: psycopg.Connection[Any], s: Swept, r: sw.Routine, role: str, limit: int
) -> list[sw.Outcome]:
    sets = sw.argument_sets(s.targets, r, limit)
    if isinstance(sets, str):
        return []
    outcomes = []
    for args in sets:
        outcomes.append(sw.trial(conn, role, sw.call_sql(r, args)))
        if outcomes[-1].outcome == "changed":
            break
    return outcomes


def _state(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Every chunk (compressed ones too): its hypertable, status and row count (what the
    sweep must leave alone), and the jobs."""
    chunks = conn.execute(
        "SELECT id, hypertable_id, status, format('%I.%I', schema_name, table_name)"
        " FROM _timescaledb_catalog.chunk ORDER BY id"
    ).fetchall()
    out: list[tuple[Any, ...]] = []
    for c in chunks:
        (n,) = conn.execute(
            sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.SQL(c[3]))
        ).fetchone()
        out.append((*c, n))
    out += conn.execute(
        "SELECT id, owner, config::text FROM _timescaledb_config.bgw_job ORDER BY id"
    ).fetchall()
    return out


def _key(r: sw.Routine) -> str:
    """The routine as :attr:`RoutineInfo.signature` names it."""
    return f"{r.schema}.{r.name}({', '.join(r.in_types)})"


def test_the_rule_revokes_every_routine_a_policy_user_could_change_anything_with(swept):
    """Derivation: PUBLIC's defaults back, the sweep finds the mutators, the rule covers them,
    the plan shows the repair, apply makes it."""
    s = swept
    with s.company.db.admin(autocommit=True) as admin:
        schemas = sql.SQL(", ").join(sql.Identifier(n) for n in INTERNAL_SCHEMAS)
        admin.execute(
            sql.SQL("GRANT EXECUTE ON ALL ROUTINES IN SCHEMA {} TO PUBLIC").format(schemas)
        )
        for r in s.surface:
            if not r.internal and r.name in UNCHECKED_API:
                admin.execute(
                    sql.SQL("GRANT EXECUTE ON ROUTINE {}({}) TO PUBLIC").format(
                        sql.Identifier(r.schema, r.name), sql.SQL(", ".join(r.in_types))
                    )
                )
        rule = {r.signature: r for r in read_routines(admin)}
        revoked = {k for k, r in rule.items() if r.keep is None}
        with s.company.db.admin() as conn:
            summary = plan(conn, s.company.policy).summary()
        assert f"revoke EXECUTE on {len(revoked)} TimescaleDB routine(s) from PUBLIC" in summary
        # which functions change anything at all, as a superuser (procedures: after apply only)
        mutators: list[sw.Routine] = []
        superuser = admin.execute("SELECT current_user").fetchone()[0]
        for r in s.surface:
            if r.kind == "p":
                s.table[_key(r)] = ("procedure: called after apply only", "", "")
            if r.kind == "p" or r.name in sw.NON_TRANSACTIONAL:
                continue
            outs = _sweep(admin, s, r, superuser, PRE_SETS)
            if outs and outs[-1].outcome == "changed":
                mutators.append(r)
                s.table[_key(r)] = ("yes: " + ", ".join(sw.kinds(outs[-1].changed)), "", "")
        assert {"drop_chunk", "freeze_chunk", "create_chunk"} <= {r.name for r in mutators}
        for r in mutators:  # ... and which of them change anything for a policy user
            users = [
                u
                for u in _policy_users(s)
                if any(o.outcome == "changed" for o in _sweep(admin, s, r, u, USER_SETS))
            ]
            s.found[_key(r)] = users
            s.table[_key(r)] = (
                s.table[_key(r)][0],
                "no (" + ", ".join(users) + " changed it)" if users else "yes",
                "revoked" if _key(r) in revoked else "kept",
            )
    for r in s.surface:
        if r.kind == "p":
            s.table[_key(r)] = (
                s.table[_key(r)][0],
                "",
                "revoked" if _key(r) in revoked else "kept",
            )
    _write_table(s)
    leaks = {k: v for k, v in s.found.items() if v and k not in revoked}
    assert not leaks, f"kept for PUBLIC, yet policy users change state with them: {leaks}"
    assert any(s.found.values()), "the sweep found no unchecked mutator: is it blind?"
    api = {k for k, v in s.found.items() if v and not k.startswith(INTERNAL_SCHEMAS)}
    assert {k.split("(")[0].split(".")[-1] for k in api} <= set(UNCHECKED_API), api
    with s.company.db.admin() as conn:
        apply(conn, s.company.policy, passwords=s.company.passwords)
        assert not plan(conn, s.company.policy)


def _write_table(s: Swept) -> None:
    path = os.environ.get("TSACCESS_SWEEP_TABLE")
    if not path:
        return
    lines = [
        f"## {s.company.policy.source}",
        "",
        "| routine | mutates? | checks itself? | revoked? |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {a} | {b} | {c} |" for k, (a, b, c) in sorted(s.table.items())]
    with open(path, "a") as f:
        f.write("\n".join(lines) + "\n\n")


def test_no_policy_user_changes_anything_through_any_routine(swept, subtests):
    s = swept
    with s.company.db.admin(autocommit=True) as admin:
        before = _state(admin)
        for user in _policy_users(s):
            may = {
                r[0]
                for r in admin.execute(
                    "SELECT p.oid::int FROM pg_proc p WHERE p.oid = ANY(%s)"
                    " AND has_function_privilege(%s, p.oid, 'EXECUTE')",
                    ([r.oid for r in s.surface], user),
                )
            }
            for r in s.surface:
                sets = sw.argument_sets(s.targets, r, POST_SETS)
                if isinstance(sets, str):
                    continue
                with subtests.test(msg=f"{r.label} as {user}"):
                    if r.oid not in may:  # refused, or no call resolves (the catalog says no)
                        for args in sets:
                            out = sw.trial(admin, user, sw.call_sql(r, args))
                            if not out.error.startswith(sw.UNRESOLVED):
                                assert out.outcome == "refused", out
                                break
                        continue
                    for args in sets:
                        out = sw.trial(admin, user, sw.call_sql(r, args))
                        assert out.outcome != "changed", out
        assert _state(admin) == before


def _chunks_scanned(conn: psycopg.Connection[Any], query: str) -> int:
    plan_json = conn.execute("EXPLAIN (FORMAT JSON) " + query).fetchone()[0]
    return json.dumps(plan_json).count("_hyper_")


def test_normal_use_keeps_working_after_apply(swept):
    """time_bucket, aggregates, chunk exclusion, the size API, DML on compressed chunks and the
    owner's jobs (retention included) work with the rule applied."""
    s = swept
    p = s.company.policy
    plain = s.targets.rel["HT_PLAIN"]
    comp = s.targets.rel.get("HT_COMP", plain)
    reader = next(
        u.name
        for u in p.users
        if "SELECT" in p.expected_privileges(u.name).get(comp.split(".")[-1], ())
    )
    writer = next(
        u.name
        for u in p.users
        if "UPDATE" in p.expected_privileges(u.name).get(comp.split(".")[-1], ())
    )
    time_col = s.targets.time_col["HT_COMP"]
    t = sql.SQL(comp)
    tc = sql.Identifier(time_col)
    with s.company.connect(reader) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT time_bucket('1 day', {tc}) b, count(*), first({tc}, {tc}),"
                " last({tc}, {tc}) FROM {t} WHERE {tc} > now() - interval '5 days'"
                " GROUP BY 1"
            ).format(tc=tc, t=t)
        ).fetchall()
        assert rows
        recent = (
            sql.SQL("SELECT count(*) FROM {t} WHERE {tc} > now() - interval '1 day'")
            .format(t=t, tc=tc)
            .as_string(conn)
        )
        total = conn.execute(
            sql.SQL("SELECT count(*) FROM show_chunks({})").format(sql.Literal(comp))
        ).fetchone()[0]
        assert 0 < _chunks_scanned(conn, recent) < total  # chunk exclusion
        sizes = conn.execute(
            "SELECT hypertable_size(%s), (SELECT count(*) FROM chunks_detailed_size(%s)),"
            " approximate_row_count(%s), hypertable_index_size(%s),"
            " (SELECT count(*) FROM timescaledb_information.chunks)",
            (comp, comp, comp, comp),
        ).fetchone()
        assert sizes[0] > 0 and sizes[1] > 0 and sizes[4] > 0
    for a in p.aggregates:
        viewer = next(
            u.name for u in p.users if "SELECT" in p.expected_privileges(u.name).get(a.name, ())
        )
        with s.company.connect(viewer) as conn:
            agg = sql.Identifier(p.schema, a.name)
            assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(agg)).fetchone()[0] > 0
            conn.execute("SET timescaledb.enable_cagg_watermark_constify = off")
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(agg))  # cagg_watermark kept
    with s.company.connect(writer) as conn:
        cols = [c for c in p.table(comp.split(".")[-1]).columns if not c.nullable]
        names = sql.SQL(", ").join(sql.Identifier(c.name) for c in cols)
        for when in ("now()", "now() + interval '400 days'"):  # an existing chunk, a new one
            values = sql.SQL(", ").join(
                sql.SQL(when) if c.name == time_col else sql.SQL(_value(c.type)) for c in cols
            )
            conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(t, names, values))
        where = (  # rows in compressed chunks, or (no compression) in the newest chunk
            "{tc} < now() - interval '30 days'"
            if "HT_COMP" in s.targets.ht_ids and s.targets.rel["HT_COMP"] != plain
            else "{tc} > now() - interval '1 day'"
        )
        rows = sql.SQL("DELETE FROM {} WHERE " + where).format(t, tc=tc)
        assert conn.execute(rows).rowcount > 0
        conn.commit()
    with s.company.db.admin(autocommit=True) as conn:
        jobs = conn.execute(
            "SELECT id, proc_name FROM _timescaledb_config.bgw_job WHERE id >= 1000 ORDER BY id"
        ).fetchall()
        for job, _ in jobs:
            conn.execute("CALL run_job(%s::integer)", (job,))
        names = {name for _, name in jobs}
        if p.aggregates or any(t.compression for t in p.tables):
            assert names & {"policy_compression", "policy_refresh_continuous_aggregate"}


def test_a_non_superuser_owner_runs_its_jobs_and_nobody_else_may(db):
    """A table owned by a role that is not a superuser: the plan grants it the job entry
    points, its compression job runs, a policy user still may call none of them. Applied by a
    non-superuser, the plan warns that the routines stay open."""
    from tsaccess.passwords import resolve_passwords
    from tsaccess.policy import parse_policy

    pw = db.create_login("ts_owner")
    connect = sql.SQL("GRANT CONNECT ON DATABASE {} TO ts_owner").format(sql.Identifier(db.name))
    with db.admin(autocommit=True) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO ts_owner")
        conn.execute(connect)
    with db.connect_as("ts_owner", pw, autocommit=True) as conn:
        conn.execute("CREATE TABLE m (time timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable('m', by_range('time', interval '1 day'))")
        conn.execute(
            "INSERT INTO m SELECT g, 1 FROM generate_series(now() - interval '30 days', now(),"
            " interval '1 hour') g"
        )
        conn.execute(
            "ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_orderby = 'time')"
        )
        (job,) = conn.execute("SELECT add_compression_policy('m', interval '7 days')").fetchone()
    policy = parse_policy(
        {
            "database": {"name": db.name, "timescaledb": "require"},
            "audit": {"default_mode": "off"},
            "tables": {
                "m": {
                    "time_column": "time",
                    "hypertable": True,
                    "columns": {"time": "timestamptz not null", "v": "int"},
                }
            },
            "roles": {"readers": {"grants": {"m": ["SELECT"]}}},
            "users": {"rita": {"roles": ["readers"]}},
        }
    )
    passwords = resolve_passwords(["rita"], generate=True, environ={})
    with db.connect_as("ts_owner", pw) as conn:  # not a superuser: says what stays open
        warnings = plan(conn, policy, passwords=passwords).warnings
        conn.rollback()
    assert any("stay executable by PUBLIC" in w for w in warnings), warnings
    with db.admin() as conn:
        assert "to ts_owner (an owner's jobs" in plan(conn, policy, passwords=passwords).summary()
        conn.rollback()
        apply(conn, policy, passwords=passwords)
        conn.execute(connect)  # the policy does not name ts_owner: apply took these back
        conn.execute("GRANT USAGE ON SCHEMA public TO ts_owner")
        conn.commit()
    with db.connect_as("ts_owner", pw, autocommit=True) as conn:
        conn.execute("CALL run_job(%s::integer)", (job,))
        assert (
            conn.execute(
                "SELECT count(*) FROM chunk_compression_stats('m') WHERE compression_status ="
                " 'Compressed'"
            ).fetchone()[0]
            > 0
        )
        may = conn.execute(
            "SELECT has_function_privilege('rita',"
            " '_timescaledb_functions.policy_compression(integer, jsonb)', 'EXECUTE'),"
            " has_function_privilege('rita', '_timescaledb_functions.drop_chunk(regclass)',"
            " 'EXECUTE'), has_function_privilege('ts_owner',"
            " '_timescaledb_functions.drop_chunk(regclass)', 'EXECUTE')"
        ).fetchone()
        assert may == (False, False, False)
