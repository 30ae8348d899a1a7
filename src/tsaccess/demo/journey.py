"""The tutorial's whole journey on a throwaway server, computed: ``tsaccess demo``.

Start a TLS server, apply the company policy with generated passwords, prove the access matrix
as the five users, do bob's and david's writes, try the forbidden ones (each must be refused by
the server, and is recorded as a DENIED event), then read the audit trail as eve.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tsaccess import audit, monitoring
from tsaccess.client.connection import connect
from tsaccess.client.params import without_login
from tsaccess.client.pool import create_pool
from tsaccess.client.tls import tls_status
from tsaccess.ephemeral import EphemeralServer, ServerInfo
from tsaccess.errors import PreflightDenied
from tsaccess.passwords import Secret, resolve_passwords, write_pgpass
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import Policy, parse_policy
from tsaccess.verify import AccessMatrix, verify

__all__ = ["DemoResult", "company_policy", "run_demo"]


def company_policy() -> Policy:
    """The reference policy shipped with tsaccess (``examples/company.toml``)."""
    import tomllib

    text = (importlib.resources.files("tsaccess") / "data" / "company.toml").read_text("utf-8")
    return parse_policy(tomllib.loads(text), source="company.toml")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class DemoResult:
    backend: str = ""
    timescaledb: bool = False
    server_start_s: float = 0.0
    plan_steps: int = 0
    apply_s: float = 0.0
    second_plan_steps: int = -1
    matrix: AccessMatrix | None = None
    checks: list[Check] = field(default_factory=list)
    audit_rows: list[dict[str, Any]] = field(default_factory=list)
    summary_rows: list[dict[str, Any]] = field(default_factory=list)
    changed_rows: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    hypertables: list[dict[str, Any]] = field(default_factory=list)
    """Each hypertable with its chunk count (TimescaleDB only)."""
    connect_info: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.second_plan_steps == 0
            and self.matrix is not None
            and self.matrix.ok
            and all(c.ok for c in self.checks)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "backend": self.backend,
            "timescaledb": self.timescaledb,
            "server_start_seconds": round(self.server_start_s, 3),
            "plan_steps": self.plan_steps,
            "apply_seconds": round(self.apply_s, 3),
            "second_plan_steps": self.second_plan_steps,
            "matrix": self.matrix.as_dict() if self.matrix else None,
            "checks": [c.__dict__ for c in self.checks],
            "audit": self.audit_rows,
            "summary": self.summary_rows,
            "sessions": self.sessions,
            "hypertables": self.hypertables,
            "connect": self.connect_info,
        }


def _user_params(info: ServerInfo, user: str, pw: Secret, dbname: str) -> dict[str, Any]:
    return info.params(user=user, password=pw.reveal(), dbname=dbname)


def run_demo(
    *,
    keep: bool = False,
    out: Callable[[str], None] = print,
    server: EphemeralServer | None = None,
    policy: Policy | None = None,
) -> DemoResult:
    """Run the demo; ``out`` receives the human-readable report line by line.

    ``policy`` (default: the company policy) may add TimescaleDB's doors
    (``examples/timescale.toml``): the demo then shows each of them too.
    """
    result = DemoResult()
    policy = policy or company_policy()
    srv = server or EphemeralServer(keep=keep)
    t0 = time.perf_counter()
    info = srv.start()
    result.server_start_s = time.perf_counter() - t0
    result.backend, result.timescaledb = info.backend, info.timescaledb
    out(
        f"== Throwaway server: {info.backend} backend on {info.host}:{info.port}, TLS + SCRAM, "
        f"TimescaleDB {'yes' if info.timescaledb else 'not available (plain tables)'} "
        f"(ready in {result.server_start_s:.2f} s)\n   {info.installation}"
    )
    try:
        _run(info, policy, result, out)
        if keep:
            pwfile = (info.workdir or Path(".")) / "passwords.pgpass"
            out(f"\n== Server kept running. Passwords: {pwfile} (mode 0600)")
            out(f"   with PGPASSFILE={pwfile}:")
            for line in result.connect_info:
                out(f"   {line}")
            out(
                "   as the administrator, the docs' commands (tsaccess plan/verify/audit ... "
                "--policy FILE) work after:"
            )
            out(
                f"   export PGHOST={info.host} PGPORT={info.port} PGUSER={info.user} "
                f"PGSSLROOTCERT={info.sslrootcert} PGPASSFILE={pwfile}"
            )
            if info.workdir is not None:
                out(
                    f"   stop it: pg_ctl -D {info.workdir / 'data'} stop (as the server's OS "
                    f"user), then delete {info.workdir}"
                )
    finally:
        # with keep, stop() only lets go of the server: it stays running (also after the
        # EphemeralServer is garbage collected and at interpreter exit)
        if keep:
            srv.keep = True
        srv.stop()
    return result


def _show_hypertables(
    db_params: dict[str, Any], policy: Policy, result: DemoResult, out: Callable[[str], None]
) -> None:
    """Hypertables and chunks, and that the audit row names the hypertable, not a chunk."""
    out("\n== TimescaleDB: bob's 144 rows landed in several chunks; the audit names the hypertable")
    with connect(**db_params, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT format('%I.%I', hypertable_schema, hypertable_name), num_chunks"
            " FROM timescaledb_information.hypertables ORDER BY 1"
        ).fetchall()
        result.hypertables = [{"hypertable": r[0], "chunks": r[1]} for r in rows]
        for name, chunks in rows:
            out(f"   hypertable {name:40} {chunks} chunk(s)")
        landed = admin.execute(
            sql.SQL("SELECT string_agg(DISTINCT tableoid::regclass::text, ', ') FROM {}").format(
                sql.Identifier(policy.schema, "sensor_readings")
            )
        ).fetchone()
        chunks = sorted((landed[0] if landed and landed[0] else "").split(", "))
        audited = admin.execute(
            sql.SQL(
                "SELECT table_name, row_count FROM {} WHERE username = 'bob'"
                " AND operation = 'INSERT'"
            ).format(sql.Identifier(policy.schema, policy.audit.table))
        ).fetchall()
    out(f"   rows of sensor_readings are stored in {len(chunks)} chunks: {', '.join(chunks)}")
    out(f"   audit rows for bob's INSERT (table_name, row_count): {audited}")
    result.checks.append(
        Check(
            "bob's INSERT landed in several chunks and is audited once, as sensor_readings",
            len(chunks) > 1 and audited == [("sensor_readings", 144)],
            f"{len(chunks)} chunks, audit {audited}",
        )
    )


def _hidden_columns(conn: psycopg.Connection[Any], policy: Policy, table: str) -> list[str]:
    """The audited columns of ``table`` the session's user may not read (so the per-row audit
    view does not show them to that user)."""
    t = policy.table(table)
    audited = list(t.audited_data_columns) if t is not None else []
    rows = conn.execute(
        "SELECT a.attname FROM pg_catalog.pg_attribute a"
        " WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text))"
        " AND a.attnum > 0 AND NOT a.attisdropped"
        " AND NOT pg_catalog.has_column_privilege(a.attrelid, a.attnum, 'SELECT')"
        " ORDER BY a.attnum",
        (policy.schema, table),
    ).fetchall()
    conn.rollback()
    return [r[0] for r in rows if r[0] in audited]


def _run(info: ServerInfo, policy: Policy, result: DemoResult, out: Callable[[str], None]) -> None:
    with connect(**info.params(), autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (policy.database,)
        ).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(policy.database)))
    passwords = resolve_passwords([u.name for u in policy.users], generate=True)
    if info.workdir is not None:  # the users' passwords, and the administrator's (kept server),
        # for every database of the server (apply connects to "postgres" first)
        write_pgpass(
            info.workdir / "passwords.pgpass",
            {**passwords, info.user: Secret(info.password)},
            host=info.host,
            port=info.port,
        )
    db_params = info.params(dbname=policy.database)

    out(f"\n== 1. Policy {policy.source}: plan and apply (one transaction)")
    with connect(**db_params) as admin:
        first = plan(admin, policy, passwords=passwords)
        admin.rollback()
        result.plan_steps = len(first)
        for w in first.warnings:
            out(f"   warning: {w}")
        applied = apply(admin, policy, passwords=passwords)
        result.apply_s = applied.seconds
        second = plan(admin, policy, passwords=passwords)
        admin.rollback()
        result.second_plan_steps = len(second)
        out(
            f"   {len(first)} statements applied in {applied.seconds * 1000:.0f} ms; "
            f"plan again: {len(second)} statements (idempotent)"
        )

        out("\n== 2. Access matrix: every privilege tried as every user over TLS (rolled back)")
        user_conn = without_login(info.params())
        result.matrix = verify(admin, policy, passwords, **user_conn)
        out(result.matrix.to_text())

    out("\n== 3. Allowed writes (audited)")
    pool = create_pool(
        **_user_params(info, "bob", passwords["bob"], policy.database),
        role="data_engineers",
        min_size=1,
        max_size=2,
    )
    try:
        with pool.connection() as conn:
            audit.set_actor(conn, "ingest-job", "batch-0001")
            cur = conn.execute(
                "INSERT INTO sensor_readings (time, sensor_id, temperature, humidity, location,"
                " department) SELECT now() - i * interval '3 hours', 'TEMP_' || (i % 3),"
                " 20 + (i % 7), 40 + (i % 20), 'Building A', 'Engineering'"
                " FROM generate_series(1, 144) AS i"
            )
            result.checks.append(
                Check(
                    "bob inserts 144 sensor readings (pool, data_engineers)",
                    cur.rowcount == 144,
                    f"{cur.rowcount} rows",
                )
            )
            out(f"   bob   INSERT sensor_readings: {cur.rowcount} rows [{tls_status(conn)}]")
    finally:
        pool.close()
    with connect(**_user_params(info, "david", passwords["david"], policy.database)) as conn:
        cur = conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount, department)"
            " VALUES (now(), 'revenue', 150000.00, 'Sales'), (now(), 'expenses', 75000.00, 'Ops')"
        )
        conn.commit()
        result.checks.append(Check("david inserts 2 financial metrics", cur.rowcount == 2))
        out(f"   david INSERT financial_metrics: {cur.rowcount} rows [{tls_status(conn)}]")
    if info.timescaledb:
        _show_hypertables(db_params, policy, result, out)

    out("\n== 4. Forbidden actions (each must be refused by the server)")
    forbidden = [
        ("alice", "INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'X')"),
        ("alice", "SELECT * FROM financial_metrics"),
        ("bob", "SELECT * FROM financial_metrics"),
        ("carol", "UPDATE financial_metrics SET amount = 0"),
        ("david", "DELETE FROM activity_audit"),
        ("bob", "UPDATE activity_audit SET username = 'nobody'"),
        ("bob", "ALTER TABLE sensor_readings DISABLE TRIGGER ALL"),
        ("eve", "INSERT INTO activity_audit (username, operation) VALUES ('eve', 'FORGED')"),
        ("eve", "CREATE TABLE public.backdoor (x int)"),
    ]
    for user, stmt in forbidden:
        with connect(**_user_params(info, user, passwords[user], policy.database)) as conn:
            try:
                conn.execute(stmt)
                refused, why = False, "EXECUTED"
            except (
                psycopg.errors.InsufficientPrivilege,
                psycopg.errors.DependentObjectsStillExist,
            ) as exc:
                refused, why = True, f"{exc.sqlstate} {exc.diag.message_primary}"
            except psycopg.Error as exc:  # e.g. "must be owner of table": also a refusal
                refused = exc.sqlstate in ("42501",)
                why = f"{exc.sqlstate} {exc.diag.message_primary}"
            conn.rollback()
            if refused:
                audit.record_denied(conn, stmt, why)
        result.checks.append(Check(f"{user}: {stmt}", refused, why))
        out(f"   {'refused' if refused else 'ALLOWED!'}  {user:5}  {stmt[:60]:60}  {why}")

    out("\n== 5. Pre-flight: refused before anything is sent")
    with connect(
        **_user_params(info, "alice", passwords["alice"], policy.database), preflight=True
    ) as conn:
        try:
            conn.execute("SELECT amount FROM financial_metrics")
            result.checks.append(
                Check("pre-flight refuses alice's SELECT on financial_metrics", False, "executed")
            )
        except PreflightDenied as exc:
            result.checks.append(
                Check("pre-flight refuses alice's SELECT on financial_metrics", True, str(exc))
            )
            out(f"   alice: {exc}")
        rows = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
        result.checks.append(
            Check("pre-flight lets alice read sensor_readings", bool(rows and rows[0] == 144))
        )
        out(f"   alice: SELECT count(*) FROM sensor_readings -> {rows[0] if rows else None}")

    out("\n== 6. The audit trail, read as eve (auditors)")
    with connect(**_user_params(info, "eve", passwords["eve"], policy.database)) as conn:
        events = audit.recent(conn, limit=50)
        result.audit_rows = events.as_dicts()
        shown = [
            {
                k: e[k]
                for k in (
                    "event_time",
                    "username",
                    "effective_role",
                    "operation",
                    "table_name",
                    "row_count",
                    "actor",
                    "application_name",
                )
            }
            for e in result.audit_rows
            if e["operation"] != "DENIED"
        ][:10]
        from tsaccess._render import text_table

        out(text_table(list(shown[0]) if shown else [], [list(r.values()) for r in shown]))
        writers = {
            (e["username"], e["table_name"])
            for e in result.audit_rows
            if e["operation"] == "INSERT"
        }
        result.checks.append(
            Check("audit names bob on sensor_readings", ("bob", "sensor_readings") in writers)
        )
        result.checks.append(
            Check(
                "audit names david on financial_metrics", ("david", "financial_metrics") in writers
            )
        )
        denied = [e for e in result.audit_rows if e["operation"] == "DENIED"]
        result.checks.append(
            Check("DENIED events recorded", len(denied) >= len(forbidden), f"{len(denied)} events")
        )
        changed = audit.changes(conn, "financial_metrics")
        result.changed_rows = changed.as_dicts()
        hidden = _hidden_columns(conn, policy, "financial_metrics")
        out(
            "\n   Changed rows of financial_metrics (audited per row), as eve sees them: the "
            "audit view shows each reader only the columns they may read in the table"
        )
        why = (
            f" (hidden from eve: {', '.join(hidden)}: she may not SELECT them in financial_metrics)"
            if hidden
            else ""
        )
        for change in changed:
            out(
                f"   {change.username} {change.operation}"
                f" {json.dumps(change.new_data, default=str)}{why}"
            )
        with connect(**info.params(dbname=policy.database)) as admin:
            recorded = audit.changes(admin, "financial_metrics")
        result.checks.append(
            Check(
                "per-row audit keeps david's 2 rows with their data; eve sees the events but "
                "no value she may not read in financial_metrics",
                sorted(x.username for x in recorded if x.new_data) == ["david", "david"]
                and [(x.username, x.new_data) for x in changed] == [("david", {})] * 2,
            )
        )
        summ = audit.summary(conn, dt.timedelta(hours=1))
        result.summary_rows = summ.as_dicts()
        out("\n   Summary (last hour):")
        out("   " + summ.to_text().replace("\n", "\n   "))
        sessions = monitoring.active_sessions(conn)
        result.sessions = sessions.as_dicts()
        all_tls = all(s["ssl"] for s in result.sessions if s["client_addr"])
        result.checks.append(Check("every TCP session is TLS", all_tls))
        out(
            f"\n   Sessions on {policy.database}: "
            + ", ".join(
                f"{s['username']} ({s['tls_version'] or 'NO TLS'})"
                for s in result.sessions
                if s["client_addr"]
            )
        )
        alice_audit = True
        with connect(**_user_params(info, "alice", passwords["alice"], policy.database)) as a:
            try:
                a.execute("SELECT * FROM activity_audit")
                alice_audit = False
            except psycopg.errors.InsufficientPrivilege:
                pass
        result.checks.append(Check("alice cannot read the audit trail", alice_audit))

    if info.timescaledb and (
        policy.aggregates
        or any(r.slices for r in policy.roles)
        or any(t.compression or t.retention for t in policy.tables)
    ):
        from tsaccess.demo.timescale import timescale_chapter

        timescale_chapter(
            db_params,
            lambda user: _user_params(info, user, passwords[user], policy.database),
            policy,
            passwords,
            lambda name, ok, detail="": result.checks.append(Check(name, ok, detail)),
            out,
        )
        out("\n== 11. Access matrix again, now that the hypertables have chunks")
        with connect(**db_params) as admin:
            result.matrix = verify(admin, policy, passwords, **without_login(info.params()))
        out(result.matrix.to_text())

    result.connect_info.append(
        f'admin  psql "host={info.host} port={info.port} dbname={policy.database} '
        f'user={info.user} sslmode=verify-full sslrootcert={info.sslrootcert}"'
    )
    for login in policy.users:
        result.connect_info.append(
            f'{login.name:5}  psql "host={info.host} port={info.port} dbname={policy.database} '
            f'user={login.name} sslmode=verify-full sslrootcert={info.sslrootcert}"'
        )
    failed = [c for c in result.checks if not c.ok]
    out(
        f"\n== Result: {'OK' if result.ok else 'FAILED'} — {len(result.checks)} checks, "
        f"{len(failed)} failed; matrix {'OK' if result.matrix and result.matrix.ok else 'FAILED'}"
    )
    for c in failed:
        out(f"   FAILED: {c.name} {c.detail}")
