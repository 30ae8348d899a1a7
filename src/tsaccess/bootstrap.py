"""Plan, apply and render a policy.

* :func:`plan` reads the live catalog (a fixed number of set-based queries) and returns the exact
  SQL that brings the database to the policy, with a human summary. Privileges the policy does
  not list on objects it manages (its tables, the database, the schema, its roles) are revoked.
* :func:`apply` runs a plan in one transaction under an advisory lock, re-reads the catalog in
  the same transaction and rolls back unless the database now matches the policy.
* :func:`render_init` writes the same plan as ``init/01-schema.sql``, ``02-security.sql``,
  ``03-audit.sql`` and a ``docker-compose.yml`` for a ``docker-entrypoint-initdb.d`` setup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tsaccess._log import get_logger
from tsaccess._steps import Phase, Step, grant_steps, role_ident
from tsaccess.audit import audit_steps
from tsaccess.catalog import CatalogSnapshot, read_catalog
from tsaccess.errors import ApplyError, PasswordSourceError, PolicyError
from tsaccess.passwords import Secret, scram_matches, scram_verifier
from tsaccess.policy import Column, Policy, Table

__all__ = ["ApplyResult", "Plan", "Step", "apply", "plan", "render_init"]

log = get_logger("tsaccess.bootstrap")

_LOCK_KEY = 0x7473616363657373  # "tsaccess"
_TYPE_ALIASES = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "bool": "boolean",
    "float8": "double precision",
    "float4": "real",
    "decimal": "numeric",
    "varchar": "character varying",
    "char": "character",
    "timetz": "time with time zone",
    "time": "time without time zone",
}


@dataclass(frozen=True)
class Plan:
    """What :func:`apply` would run. Empty (falsy) when the database matches the policy."""

    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()
    timescaledb: bool = False
    catalog_queries: int = 0

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def sql(self, *, redact: bool = True) -> str:
        """The statements as a SQL script (password verifiers redacted unless asked)."""
        return "".join(f"{s.text(redact=redact)};\n" for s in self.steps)

    def summary(self) -> str:
        if not self.steps:
            return "Nothing to do: the database matches the policy."
        lines = [f"{len(self.steps)} change(s):"] + [f"  - {s.summary}" for s in self.steps]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _column_sql(c: Column) -> sql.Composed:
    parts: list[sql.Composable] = [sql.Identifier(c.name), sql.SQL(c.type)]
    if not c.nullable:
        parts.append(sql.SQL("NOT NULL"))
    if c.default_function:
        parts.append(sql.SQL("DEFAULT " + c.default_function))
    elif c.default is not None:
        parts.append(sql.SQL("DEFAULT {}").format(sql.Literal(c.default)))
    return sql.SQL(" ").join(parts)


def _canonical_type(t: str) -> str:
    base, sep, rest = t.partition("(")
    arr = base.endswith("[]")
    base = base.removesuffix("[]").strip()
    base = _TYPE_ALIASES.get(base, base)
    out = base + (sep + rest if sep else "")
    return out.replace(", ", ",") + ("[]" if arr else "")


def _table_steps(
    policy: Policy, t: Table, cat: CatalogSnapshot | None, ts: bool, warnings: list[str]
) -> list[Step]:
    target = sql.Identifier(policy.schema, t.name)
    info = cat.tables.get(t.name) if cat else None
    steps: list[Step] = []
    if info is None:
        steps.append(
            Step(
                sql.SQL("CREATE TABLE {} ({})").format(
                    target, sql.SQL(", ").join(_column_sql(c) for c in t.columns)
                ),
                f"create table {t.name}",
                "schema",
            )
        )
    else:
        if info.kind not in ("r", "p"):
            raise PolicyError(
                f"{policy.schema}.{t.name} exists but is not a table "
                f"(relkind {info.kind!r}); rename one of them",
                path=f"tables.{t.name}",
                source=policy.source,
            )
        live = {c.name: c for c in info.columns}
        for c in t.columns:
            lc = live.get(c.name)
            if lc is None:
                steps.append(
                    Step(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(target, _column_sql(c)),
                        f"add column {t.name}.{c.name}",
                        "schema",
                    )
                )
            elif _canonical_type(c.type) != _canonical_type(lc.type):
                raise PolicyError(
                    f"column {t.name}.{c.name} is {lc.type} in the database but {c.type} in "
                    "the policy; tsaccess does not rewrite data: migrate the column or change "
                    "the policy",
                    path=f"tables.{t.name}.columns.{c.name}",
                    source=policy.source,
                )
        extra = sorted(set(live) - {c.name for c in t.columns})
        if extra:
            warnings.append(
                f"table {t.name} has columns the policy does not list: "
                f"{', '.join(extra)} (left alone)"
            )
    if (
        t.time_column
        and not (t.hypertable and ts)
        and not (info and t.time_column in info.indexed_first_columns)
    ):  # a hypertable brings its own time index; a plain table gets the same
        steps.append(
            Step(
                sql.SQL("CREATE INDEX ON {} ({} DESC)").format(
                    target, sql.Identifier(t.time_column)
                ),
                f"index {t.name} ({t.time_column} DESC)",
                "schema",
            )
        )
    if t.hypertable and ts and not (info and info.hypertable):
        interval = (
            sql.SQL(", INTERVAL {}").format(sql.Literal(t.chunk_interval))
            if t.chunk_interval
            else sql.SQL("")
        )
        steps.append(
            Step(
                sql.SQL(
                    "SELECT create_hypertable({}::regclass, by_range({}{}), migrate_data => true)"
                ).format(sql.Literal(target.as_string(None)), sql.Literal(t.time_column), interval),
                f"make {t.name} a hypertable on {t.time_column}",
                "schema",
            )
        )
    return steps


def _role_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    passwords: Mapping[str, Secret],
    warnings: list[str],
    require_passwords: bool,
) -> list[Step]:
    steps: list[Step] = []
    for r in policy.roles:
        info = cat.roles.get(r.name) if cat else None
        if info is None:
            steps.append(
                Step(
                    sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(r.name)),
                    f"create group role {r.name}",
                    "security",
                )
            )
        elif info.login or info.superuser:
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} NOLOGIN NOSUPERUSER").format(sql.Identifier(r.name)),
                    f"make {r.name} a NOLOGIN group role",
                    "security",
                )
            )
    for u in policy.users:
        info = cat.roles.get(u.name) if cat else None
        pw = passwords.get(u.name)
        ident = sql.Identifier(u.name)
        limit = sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(u.connection_limit))
        if info is None:
            if cat is not None and pw is None:
                why = (
                    f"no password for new login user {u.name!r}: set {u.password_env}, give a "
                    "0600 passwords file, or generate passwords (--generate-passwords)"
                )
                if require_passwords:
                    raise PasswordSourceError(why)
                warnings.append(why)
            stmt = sql.SQL("CREATE ROLE {} LOGIN INHERIT {} PASSWORD {}").format(
                ident, limit, sql.Literal(scram_verifier(pw) if pw else "")
            )
            psql_var = f"tsaccess_pw_{len(steps)}"
            psql = (
                f"\\getenv {psql_var} {u.password_env}\n"
                f"\\if :{{?{psql_var}}}\n\\else\n"
                f"DO $$ BEGIN RAISE EXCEPTION 'set {u.password_env} in the environment'; END $$"
                f";\n\\endif\n"
                + sql.SQL("CREATE ROLE {} LOGIN INHERIT {} PASSWORD ")
                .format(ident, limit)
                .as_string(None)
                + f":'{psql_var}'"
            )
            steps.append(
                Step(
                    stmt,
                    f"create login user {u.name} (password: {u.password_env})",
                    "security",
                    secret=True,
                    psql=psql,
                )
            )
            continue
        if (
            not info.login
            or info.superuser
            or not info.inherit
            or info.connection_limit != u.connection_limit
        ):
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} LOGIN INHERIT NOSUPERUSER {}").format(ident, limit),
                    f"reset attributes of login user {u.name}",
                    "security",
                )
            )
        if pw is not None and info.password is not None and not scram_matches(pw, info.password):
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        ident, sql.Literal(scram_verifier(pw))
                    ),
                    f"set password of {u.name}",
                    "security",
                    secret=True,
                )
            )
    # memberships: exactly the policy's, for managed users and roles
    managed = {u.name for u in policy.users} | {r.name for r in policy.roles}
    want = {(r, u.name) for u in policy.users for r in u.roles}
    exempt = {cat.current_user} if cat else set()
    exempt |= {n for n, ri in (cat.roles.items() if cat else ()) if ri.superuser}
    have = {
        (r, m)
        for r, m in (cat.members if cat else ())
        if (m in managed or r in managed) and m not in exempt
    }
    for group, m in sorted(have - want):
        steps.append(
            Step(
                sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(m)),
                f"revoke membership of {m} in {group}",
                "security",
            )
        )
    for group, m in sorted(want - have):
        steps.append(
            Step(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(m)),
                f"grant role {group} to {m}",
                "security",
            )
        )
    return steps


def _acl_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    steps: list[Step] = []
    roles = sorted(r.name for r in policy.roles)
    # database: CONNECT for the group roles only; PUBLIC loses CONNECT and TEMPORARY
    owner = cat.database_owner if cat else None
    have_db = {g for g in (cat.database_acl if cat else _public_defaults("d")) if g[0] != owner}
    steps += grant_steps(
        sql.Identifier(policy.database),
        f"database {policy.database}",
        "DATABASE",
        have_db,
        {(r, "CONNECT") for r in roles},
        "security",
    )
    # schema: USAGE for group roles (and the audit owner, in the audit phase); nobody CREATE
    aud = policy.audit.owner if policy.audited else None
    s_owner = cat.schema_owner if cat else None
    have_ns = {g for g in (cat.schema_acl if cat else _public_defaults("n")) if g[0] != s_owner}
    schema_ident = sql.Identifier(policy.schema)
    steps += grant_steps(
        schema_ident,
        f"schema {policy.schema}",
        "SCHEMA",
        {g for g in have_ns if g[0] != aud},
        {(r, "USAGE") for r in roles},
        "security",
    )
    if aud:
        steps += grant_steps(
            schema_ident,
            f"schema {policy.schema}",
            "SCHEMA",
            {g for g in have_ns if g[0] == aud},
            {(aud, "USAGE")},
            "audit",
        )
    for t in (*policy.tables, None):
        name = t.name if t else policy.audit.table
        if t is None and not policy.audited:
            continue
        info = cat.tables.get(name) if cat else None
        t_owner = info.owner if info else (policy.audit.owner if t is None else None)
        have = {g for g in (info.acl if info else ()) if g[0] != t_owner}
        want: set[tuple[str, str]] = {
            (r.name, str(p)) for r in policy.roles for p in r.privileges_on(name)
        }
        phase: Phase = "audit" if t is None else "security"
        target = sql.Identifier(policy.schema, name)
        steps += grant_steps(target, f"table {name}", "TABLE", have, want, phase)
        if t is None:  # the per-row view: readable by exactly those who read the audit table
            view = policy.audit.rows_view
            vinfo = cat.tables.get(view) if cat else None
            v_owner = vinfo.owner if vinfo else policy.audit.owner
            steps += grant_steps(
                sql.Identifier(policy.schema, view),
                f"view {view}",
                "TABLE",
                {g for g in (vinfo.acl if vinfo else ()) if g[0] != v_owner},
                want,
                phase,
            )
        for col, grantee, priv in sorted(info.column_acl if info else ()):
            if grantee == t_owner:
                continue
            steps.append(
                Step(
                    sql.SQL("REVOKE {}({}) ON TABLE {} FROM {}").format(
                        sql.SQL(priv), sql.Identifier(col), target, role_ident(grantee)
                    ),
                    f"revoke {priv}({col}) on table {name} from {grantee}",
                    phase,
                )
            )
    return steps


def _public_defaults(kind: str) -> set[tuple[str, str]]:
    """PUBLIC's default privileges on a new database / the public schema (PostgreSQL 15+)."""
    return (
        {("PUBLIC", "CONNECT"), ("PUBLIC", "TEMPORARY")} if kind == "d" else {("PUBLIC", "USAGE")}
    )


def _build(
    policy: Policy,
    cat: CatalogSnapshot | None,
    passwords: Mapping[str, Secret],
    *,
    timescaledb: bool,
    require_passwords: bool = False,
) -> tuple[list[Step], list[str]]:
    warnings: list[str] = []
    schema: list[Step] = []
    if timescaledb and (cat is None or not cat.timescaledb):
        schema.append(
            Step(
                sql.SQL("CREATE EXTENSION IF NOT EXISTS timescaledb"),
                "create extension timescaledb",
                "schema",
            )
        )
    if cat is None or not cat.schema_exists:
        schema.append(
            Step(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(policy.schema)),
                f"create schema {policy.schema}",
                "schema",
            )
        )
    for t in policy.tables:
        schema += _table_steps(policy, t, cat, timescaledb, warnings)
    security = _role_steps(policy, cat, passwords, warnings, require_passwords)
    acl = _acl_steps(policy, cat)
    audit = audit_steps(policy, cat, timescaledb)
    acl_security = [s for s in acl if s.phase == "security"]
    acl_audit = [s for s in acl if s.phase == "audit"]
    return [*schema, *security, *acl_security, *audit, *acl_audit], warnings


def _timescaledb_decision(policy: Policy, cat: CatalogSnapshot) -> tuple[bool, list[str]]:
    if policy.timescaledb == "off":
        return False, []
    if cat.timescaledb or (cat.timescaledb_available and cat.timescaledb_preloaded):
        return True, []
    why = (
        "the timescaledb extension is not installed on this server"
        if not cat.timescaledb_available
        else "timescaledb is not in shared_preload_libraries"
    )
    if policy.timescaledb == "require":
        raise PolicyError(
            f"the policy requires TimescaleDB but {why}; use a TimescaleDB server "
            'or set timescaledb = "prefer"',
            path="database.timescaledb",
            source=policy.source,
        )
    if any(t.hypertable for t in policy.tables):
        return False, [f"TimescaleDB unavailable ({why}): hypertables are created as plain tables"]
    return False, []


def plan(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    passwords: Mapping[str, Secret] | None = None,
    require_passwords: bool = False,
    phases: Collection[Phase] | None = None,
) -> Plan:
    """The statements that bring the connected database to ``policy``.

    Args:
        conn: an admin connection (superuser, or owner of the objects with CREATEROLE) to the
            policy's database.
        passwords: login passwords (see :mod:`tsaccess.passwords`); needed for users that do
            not exist yet (a warning here, an error with ``require_passwords``, as in
            :func:`apply`); a password that differs from the stored one is planned as a change
            when the stored verifier is readable (superuser).
        phases: only these phases (``schema``, ``security``, ``audit``); without ``schema``
            and ``security`` the tables, columns and group roles they would create must exist
            already (see :func:`tsaccess.audit.install`).

    Raises:
        PolicyError: connected to another database than the policy's, the live objects
            cannot be reconciled without data changes, or (with ``phases``) an object an
            omitted phase would create is missing.
    """
    current = conn.execute("SELECT pg_catalog.current_database()").fetchone()
    if current is None or current[0] != policy.database:
        raise PolicyError(
            f"connected to database {current[0] if current else '?'!r} but the policy is for "
            f"{policy.database!r}; connect to that database (create it first with "
            f"CREATE DATABASE) or change database.name",
            path="database.name",
            source=policy.source,
        )
    cat = read_catalog(conn, policy.schema, policy.audit.data_schema)
    ts, warnings = _timescaledb_decision(policy, cat)
    if phases is not None:
        if "schema" not in phases:
            ts = ts and cat.timescaledb  # the extension is not created by the omitted phase
            _require_schema(policy, cat)
        if "security" not in phases:
            require_passwords = False
            _require_roles(policy, cat)
    steps, more = _build(
        policy, cat, passwords or {}, timescaledb=ts, require_passwords=require_passwords
    )
    if phases is not None:
        steps = [s for s in steps if s.phase in phases]
        if not {"schema", "security"} & set(phases):
            more = []  # about tables and users, which this plan leaves alone
    return Plan(tuple(steps), tuple(warnings + more), ts, cat.queries + 1)


def _require_schema(policy: Policy, cat: CatalogSnapshot) -> None:
    """Without the schema phase: the tables (with the audited columns) must exist."""
    for t in policy.tables:
        info = cat.tables.get(t.name)
        if info is None:
            raise PolicyError(
                f"table {policy.schema}.{t.name} does not exist; create it first (tsaccess "
                "apply, or your own migration) or remove it from the policy",
                path=f"tables.{t.name}",
                source=policy.source,
            )
        live = {c.name for c in info.columns}
        needed = t.audited_data_columns if t.audit == "row" else ()
        missing = [c for c in needed if c not in live]
        if missing:
            raise PolicyError(
                f"table {policy.schema}.{t.name} has no column {missing[0]!r}, which per-row "
                "audit records; add the column or leave it out with audit_exclude",
                path=f"tables.{t.name}.columns",
                source=policy.source,
            )


def _require_roles(policy: Policy, cat: CatalogSnapshot) -> None:
    """Without the security phase: the group roles (granted audit privileges) must exist."""
    for r in policy.roles:
        if r.name not in cat.roles:
            raise PolicyError(
                f"group role {r.name!r} does not exist; create it first (tsaccess apply) or "
                "remove it from the policy",
                path=f"roles.{r.name}",
                source=policy.source,
            )


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    seconds: float
    applied: int = field(default=0)


def apply(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    passwords: Mapping[str, Secret] | None = None,
    on_step: Callable[[int, Step], None] | None = None,
    phases: Collection[Phase] | None = None,
) -> ApplyResult:
    """Plan and apply ``policy`` (or only some ``phases`` of it, see :func:`plan`) in one
    transaction; all or nothing.

    The plan is made under a transaction-level advisory lock (concurrent applies queue), run,
    and the catalog is read again in the same transaction: if anything still differs the
    transaction is rolled back and :class:`ApplyError` raised.

    Args:
        on_step: called before each step with its index (progress display, fault injection).
    """
    t0 = time.perf_counter()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ApplyError("apply() needs an idle connection (commit or roll back first)")
    try:
        with conn.transaction():
            conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            the_plan = plan(
                conn, policy, passwords=passwords, require_passwords=True, phases=phases
            )
            for i, step in enumerate(the_plan.steps):
                try:
                    if on_step is not None:
                        on_step(i, step)
                    conn.execute(step.statement)
                except psycopg.Error as exc:
                    if conn.broken:
                        raise ApplyError(
                            f"connection lost at step {i + 1}/{len(the_plan)} ({step.summary}); "
                            "the server rolls the transaction back: nothing changed. Run it "
                            "again."
                        ) from exc
                    raise ApplyError(
                        f"step {i + 1}/{len(the_plan)} ({step.summary}) failed: "
                        f"{exc.diag.message_primary or exc.__class__.__name__}; the transaction "
                        "was rolled back, nothing changed"
                    ) from exc
            after = plan(conn, policy, passwords=passwords, phases=phases)
            if after:
                raise ApplyError(
                    "after applying, the database still differs from the policy (rolled back, "
                    f"nothing changed): {'; '.join(s.summary for s in after.steps[:5])}"
                )
    except psycopg.OperationalError as exc:
        raise ApplyError(
            f"connection lost during apply ({exc.__class__.__name__}); the "
            "server rolls the transaction back: nothing changed. Run it again."
        ) from exc
    seconds = time.perf_counter() - t0
    log.info(
        "policy applied", database=policy.database, steps=len(the_plan), seconds=round(seconds, 3)
    )
    return ApplyResult(the_plan, seconds, len(the_plan))


_COMPOSE = """\
# Rendered by tsaccess: TimescaleDB with TLS on and only hostssl + SCRAM logins.
# Put the server certificate and key in ../ssl (tsaccess certs --out ssl/) and the passwords in
# the environment (TSACCESS_PASSWORD_<USER>, POSTGRES_PASSWORD), never in this file.
services:
  db:
    image: timescale/timescaledb:latest-pg16
    environment:
      POSTGRES_DB: {database}
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}}
      TIMESCALEDB_TELEMETRY: "off"
{password_env}    ports:
      - "127.0.0.1:5432:5432"
    volumes:
      - ./:/docker-entrypoint-initdb.d:ro     # this folder: 01-schema.sql, 02-..., 03-...
      - ../ssl:/tsaccess-ssl:ro
    entrypoint:
      - sh
      - -c
      - >-
        cp /tsaccess-ssl/server.crt /tsaccess-ssl/server.key /var/lib/postgresql/ &&
        chown postgres /var/lib/postgresql/server.crt /var/lib/postgresql/server.key &&
        chmod 600 /var/lib/postgresql/server.key &&
        printf 'local all all scram-sha-256\\nhostssl all all all scram-sha-256\\nhostnossl all all all reject\\n'
        > /var/lib/postgresql/pg_hba.conf && chown postgres /var/lib/postgresql/pg_hba.conf &&
        exec docker-entrypoint.sh postgres -c ssl=on
        -c ssl_cert_file=/var/lib/postgresql/server.crt
        -c ssl_key_file=/var/lib/postgresql/server.key
        -c hba_file=/var/lib/postgresql/pg_hba.conf
        -c password_encryption=scram-sha-256
        -c shared_preload_libraries=timescaledb
"""


def render_init(
    policy: Policy, out_dir: str | Path, *, timescaledb: bool | None = None
) -> list[Path]:
    """Write the policy as psql scripts plus a docker-compose.yml; returns the files written.

    Passwords are psql variables read from ``TSACCESS_PASSWORD_<USER>`` with ``\\getenv``
    (psql 15+); a missing variable stops the script. ``timescaledb`` defaults to the policy
    (True unless ``timescaledb = "off"``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ts = policy.timescaledb != "off" if timescaledb is None else timescaledb
    steps, _ = _build(policy, None, {}, timescaledb=ts)
    header = (
        f"-- Rendered by tsaccess from {policy.source or 'a policy'}; do not edit by hand.\n"
        "\\set ON_ERROR_STOP on\nBEGIN;\n"
    )
    files: list[Path] = []
    for n, phase, title in (
        (1, "schema", "schema"),
        (2, "security", "security"),
        (3, "audit", "audit"),
    ):
        body = "".join(
            f"-- {s.summary}\n{s.psql if s.psql else s.text(redact=False)};\n"
            for s in steps
            if s.phase == phase
        )
        path = out / f"0{n}-{title}.sql"
        path.write_text(header + body + "COMMIT;\n", encoding="utf-8")
        files.append(path)
    env_lines = "".join(
        f"      {u.password_env}: ${{{u.password_env}:?set {u.password_env}}}\n"
        for u in policy.users
    )
    compose = out / "docker-compose.yml"
    compose.write_text(
        _COMPOSE.format(database=policy.database, password_env=env_lines), encoding="utf-8"
    )
    files.append(compose)
    return files
