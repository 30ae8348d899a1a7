"""The schema and security phases as plan steps (the audit phase: :mod:`tsaccess.audit.ddl`).

* schema: tables, added columns, time indexes, hypertables;
* security: group roles, login users (attributes, passwords as SCRAM verifiers), memberships,
  and the privileges on the database, the schema and the managed tables: exactly the policy's,
  extra ones revoked.

Each function compares the policy with a catalog snapshot (``None``: an empty database, for
:func:`tsaccess.bootstrap.render_init`) and returns only the steps that make a difference.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import sql

from tsaccess._steps import Phase, Step, grant_steps, role_ident
from tsaccess.catalog import CatalogSnapshot
from tsaccess.errors import PasswordSourceError, PolicyError
from tsaccess.passwords import Secret, generate_password, scram_matches, scram_verifier
from tsaccess.policy import Column, Policy, Table

__all__ = ["acl_steps", "role_steps", "table_steps"]

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


def table_steps(
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


def role_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    passwords: Mapping[str, Secret],
    warnings: list[str],
    require_passwords: bool,
    *,
    generated: dict[str, Secret] | None = None,
) -> list[Step]:
    """Group roles, login users and memberships.

    With ``generated`` (a dict to fill), a user that needs a password and has none in
    ``passwords`` gets a new random one, recorded there: a new user, or an existing login
    user known to have no password (readable only by a superuser). An existing password is
    never replaced by a generated one.
    """
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
        # a password is known to be missing only where the verifiers are readable (superuser)
        no_password = info is not None and cat is not None and cat.superuser and not info.password
        pw = passwords.get(u.name)
        if pw is None and generated is not None and (info is None or no_password):
            pw = generated[u.name] = generate_password()
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
        if pw is None and no_password and info.login:
            warnings.append(
                f"login user {u.name!r} has no password and cannot log in: set "
                f"{u.password_env} or give a 0600 passwords file, then apply"
            )
        if pw is not None and no_password:
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        ident, sql.Literal(scram_verifier(pw))
                    ),
                    f"set password of {u.name} (it has none: it cannot log in)",
                    "security",
                    secret=True,
                )
            )
        elif pw is not None and info.password is not None and not scram_matches(pw, info.password):
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
    want |= {(parent, r.name) for r in policy.roles for parent in r.member_of}
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


def acl_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
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
        {(r, "CONNECT") for r in (*roles, *policy.also_connect)},
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
        # a table created by this plan starts with the schema's default privileges
        born = cat.default_acl if cat else frozenset()
        have = {g for g in (info.acl if info else born) if g[0] != t_owner}
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
                {g for g in (vinfo.acl if vinfo else born) if g[0] != v_owner},
                want,
                phase,
            )
        wanted_cols = {
            (c, r.name, p)
            for r in policy.roles
            for tbl, p, cols in r.column_grants
            if tbl == name
            for c in cols
        }
        for col, grantee, priv in sorted(info.column_acl if info else ()):
            if grantee == t_owner or (col, grantee, priv) in wanted_cols:
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
