"""The policy model: tables, group roles, login users and audit settings, loaded from TOML.

A policy is data, frozen and validated when it is built: every error names the key path and the
fix. Names are identifiers the server will see quoted (``psycopg.sql.Identifier``); they are
checked for what PostgreSQL would silently mangle (over 63 bytes, NUL) or reserve (``pg_*``
roles), never for "looking like SQL": a name that tries SQL injection is just a strange name.

Example (``examples/company.toml`` has the full reference model)::

    [database]
    name = "company_db"

    [tables.sensor_readings]
    time_column = "time"
    hypertable = true
    columns = { time = "timestamptz not null", sensor_id = "text not null" }

    [roles.data_analysts]
    grants = { sensor_readings = ["SELECT"] }

    [users.alice]
    roles = ["data_analysts"]
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from tsaccess.errors import PolicyError

__all__ = [
    "TABLE_PRIVILEGES",
    "AuditSettings",
    "Column",
    "GroupRole",
    "Policy",
    "Table",
    "User",
    "load_policy",
    "parse_policy",
    "password_env_var",
]

Privilege = Literal["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]
TABLE_PRIVILEGES: tuple[Privilege, ...] = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
AuditMode = Literal["statement", "row", "off"]
TimescaleMode = Literal["prefer", "require", "off"]

_MAX_IDENT = 63
_RESERVED_ROLES = {"public", "none", "current_user", "session_user", "current_role"}
_TIME_TYPES = {
    "timestamptz",
    "timestamp with time zone",
    "timestamp",
    "date",
    "timestamp without time zone",
    "bigint",
    "integer",
    "smallint",
    "int",
    "int8",
    "int4",
    "int2",
}
_BASE_TYPES = _TIME_TYPES | {
    "text",
    "varchar",
    "character varying",
    "char",
    "character",
    "numeric",
    "decimal",
    "real",
    "double precision",
    "float8",
    "float4",
    "boolean",
    "bool",
    "jsonb",
    "json",
    "uuid",
    "bytea",
    "inet",
    "cidr",
    "interval",
    "time",
    "timetz",
    "text[]",
    "integer[]",
    "bigint[]",
    "double precision[]",
}
_TYPE_RE = re.compile(
    r"^(?P<base>[a-z][a-z0-9 ]*?)\s*(?:\(\s*(?P<p>\d+)\s*(?:,\s*(?P<s>\d+)\s*)?\))?"
    r"(?P<arr>\[\])?$"
)
_DEFAULT_FUNCS = {
    "now()": "now()",
    "current_timestamp": "CURRENT_TIMESTAMP",
    "gen_random_uuid()": "gen_random_uuid()",
}


def password_env_var(user: str) -> str:
    """``TSACCESS_PASSWORD_<USER>``: the user name upper-cased, other characters as ``_``."""
    return "TSACCESS_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", user.upper())


@dataclass(frozen=True)
class Column:
    """A column: ``type`` is a validated SQL type name, ``default`` a literal or a known function."""

    name: str
    type: str
    nullable: bool = True
    default: str | int | float | bool | None = None
    default_function: str | None = None
    """One of ``now()``, ``CURRENT_TIMESTAMP``, ``gen_random_uuid()``."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    time_column: str | None = None
    hypertable: bool = False
    chunk_interval: str | None = None
    audit: AuditMode = "statement"
    audit_columns: tuple[str, ...] | None = None
    """With ``audit = "row"``: only these columns go into the row data (None: all)."""
    audit_exclude: tuple[str, ...] = ()
    """With ``audit = "row"``: these columns never go into the row data."""

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def audited_data_columns(self) -> tuple[str, ...]:
        """The columns whose values per-row audit records."""
        allowed = (
            self.audit_columns if self.audit_columns is not None else [c.name for c in self.columns]
        )
        return tuple(c for c in allowed if c not in self.audit_exclude)


@dataclass(frozen=True)
class GroupRole:
    """A NOLOGIN role holding privileges; users get privileges only through group roles."""

    name: str
    grants: tuple[tuple[str, frozenset[Privilege]], ...] = ()
    description: str = ""

    def privileges_on(self, table: str) -> frozenset[Privilege]:
        return next((p for t, p in self.grants if t == table), frozenset())


@dataclass(frozen=True)
class User:
    """A LOGIN role; its password never lives in the policy."""

    name: str
    roles: tuple[str, ...]
    connection_limit: int = -1

    @property
    def password_env(self) -> str:
        return password_env_var(self.name)


@dataclass(frozen=True)
class AuditSettings:
    table: str = "activity_audit"
    owner: str = "tsaccess_audit"
    """Dedicated NOLOGIN role owning the audit table and functions, nothing else."""
    default_mode: AuditMode = "statement"
    data_schema: str = "tsaccess_audit"
    """Private schema (owned by ``owner``) holding per-row audit data, one table per table."""

    @property
    def rows_view(self) -> str:
        """The view with one row per changed row (per-row mode), next to the audit table."""
        return f"{self.table}_rows"


@dataclass(frozen=True)
class Policy:
    database: str
    schema: str = "public"
    timescaledb: TimescaleMode = "prefer"
    tables: tuple[Table, ...] = ()
    roles: tuple[GroupRole, ...] = ()
    users: tuple[User, ...] = ()
    audit: AuditSettings = field(default_factory=AuditSettings)
    source: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    def role(self, name: str) -> GroupRole | None:
        return next((r for r in self.roles if r.name == name), None)

    @property
    def managed_tables(self) -> tuple[str, ...]:
        """Data tables and the audit table (when any table is audited)."""
        names = [t.name for t in self.tables]
        return (*names, self.audit.table) if self.audited else tuple(names)

    @property
    def row_audited(self) -> tuple[Table, ...]:
        """Tables audited per row (their data goes to ``audit.data_schema``)."""
        return tuple(t for t in self.tables if t.audit == "row")

    @property
    def audited(self) -> bool:
        return any(t.audit != "off" for t in self.tables) or any(
            r.privileges_on(self.audit.table) for r in self.roles
        )

    def expected_privileges(self, user: str) -> dict[str, frozenset[Privilege]]:
        """Table privileges the policy gives ``user`` (through its group roles)."""
        u = next((x for x in self.users if x.name == user), None)
        out: dict[str, frozenset[Privilege]] = {t: frozenset() for t in self.managed_tables}
        if u is None:
            return out
        for rname in u.roles:
            role = self.role(rname)
            if role is None:
                continue
            for table, privs in role.grants:
                out[table] = out.get(table, frozenset()) | privs
        return out

    def with_database(self, name: str) -> Policy:
        """The same policy for another database name (tests, staging copies)."""
        return dataclasses.replace(self, database=name)


# -- validation -------------------------------------------------------------------------------


def _check_ident(name: object, path: str, source: str, *, role: bool = False) -> str:
    if not isinstance(name, str) or not name:
        raise PolicyError("must be a non-empty string", path=path, source=source)
    if "\x00" in name:
        raise PolicyError("contains a NUL character; remove it", path=path, source=source)
    if len(name.encode("utf-8")) > _MAX_IDENT:
        raise PolicyError(
            f"{name[:20]!r}... is longer than {_MAX_IDENT} bytes; PostgreSQL would truncate it "
            "silently. Use a shorter name.",
            path=path,
            source=source,
        )
    if role and name.lower().startswith("pg_"):
        raise PolicyError(
            f"{name!r}: role names starting with 'pg_' are reserved by PostgreSQL; rename it",
            path=path,
            source=source,
        )
    if role and name.lower() in _RESERVED_ROLES:
        raise PolicyError(
            f"{name!r} is a reserved role name in PostgreSQL; rename it", path=path, source=source
        )
    return name


def _validate(p: Policy) -> None:
    src = p.source
    _check_ident(p.database, "database.name", src)
    _check_ident(p.schema, "database.schema", src)
    if p.schema.startswith(("pg_", "_timescaledb")) or p.schema == "information_schema":
        raise PolicyError(
            f"schema {p.schema!r} is a system schema; use your own (e.g. public)",
            path="database.schema",
            source=src,
        )
    _check_ident(p.audit.table, "audit.table", src)
    _check_ident(p.audit.owner, "audit.owner", src, role=True)
    _check_ident(p.audit.data_schema, "audit.data_schema", src)
    _check_ident(p.audit.rows_view, "audit.table", src)  # the view's name must fit too
    if p.audit.data_schema == p.schema or p.audit.data_schema.startswith(("pg_", "_timescaledb")):
        raise PolicyError(
            f"data_schema {p.audit.data_schema!r} must be a schema of its own, not "
            f'{p.schema!r} or a system schema; e.g. data_schema = "tsaccess_audit"',
            path="audit.data_schema",
            source=src,
        )
    tables = {t.name for t in p.tables}
    if p.audit.rows_view in tables:
        raise PolicyError(
            f"{p.audit.rows_view!r} is the name of the per-row audit view; rename the table "
            "or set audit.table",
            path=f"tables.{p.audit.rows_view}",
            source=src,
        )
    for t in p.tables:
        tp = f"tables.{t.name}"
        _check_ident(t.name, tp, src)
        if t.name == p.audit.table:
            raise PolicyError(
                f"{t.name!r} is the audit table's name; rename the table or set audit.table",
                path=tp,
                source=src,
            )
        if not t.columns:
            raise PolicyError("a table needs at least one column", path=f"{tp}.columns", source=src)
        seen: set[str] = set()
        for c in t.columns:
            _check_ident(c.name, f"{tp}.columns.{c.name}", src)
            if c.name in seen:
                raise PolicyError(f"duplicate column {c.name!r}", path=f"{tp}.columns", source=src)
            seen.add(c.name)
        if t.hypertable and not t.time_column:
            raise PolicyError(
                'a hypertable needs a time column; set time_column = "<column>" or '
                "hypertable = false",
                path=f"{tp}.time_column",
                source=src,
            )
        if t.time_column:
            col = t.column(t.time_column)
            if col is None:
                raise PolicyError(
                    f"time_column {t.time_column!r} is not one of the table's columns "
                    f"({', '.join(c.name for c in t.columns)})",
                    path=f"{tp}.time_column",
                    source=src,
                )
            if col.type.split("(")[0] not in _TIME_TYPES:
                raise PolicyError(
                    f"time_column {t.time_column!r} has type {col.type!r}; a hypertable's time "
                    "column must be timestamptz, timestamp, date or an integer type",
                    path=f"{tp}.columns.{col.name}",
                    source=src,
                )
            if col.nullable and t.hypertable:
                raise PolicyError(
                    f"the time column {col.name!r} must be declared 'not null'",
                    path=f"{tp}.columns.{col.name}",
                    source=src,
                )
        if t.audit not in ("statement", "row", "off"):
            raise PolicyError(
                f'audit = {t.audit!r}; use "statement", "row" or "off"',
                path=f"{tp}.audit",
                source=src,
            )
        for cname in (*(t.audit_columns or ()), *t.audit_exclude):
            if t.column(cname) is None:
                raise PolicyError(
                    f"audit column {cname!r} is not a column of {t.name!r}",
                    path=f"{tp}.audit_columns",
                    source=src,
                )
    row_tables = {t.name for t in p.tables if t.audit == "row"}
    for t in p.tables:
        if t.audit != "row":
            continue
        if not t.audited_data_columns:
            raise PolicyError(
                "per-row audit would record no column (audit_columns/audit_exclude leave none);"
                ' list at least one column or use audit = "statement"',
                path=f"tables.{t.name}.audit_columns",
                source=src,
            )
        # per-row data: table <data_schema>.<name>, row type <data_schema>.<name>_row
        if len(f"{t.name}_row".encode()) > _MAX_IDENT:
            raise PolicyError(
                f"per-row audit names its row type {t.name!r} + '_row', which is longer than "
                f'{_MAX_IDENT} bytes; shorten the table name or use audit = "statement"',
                path=f"tables.{t.name}.audit",
                source=src,
            )
        if f"{t.name}_row" in row_tables:
            raise PolicyError(
                f"{t.name!r} and {t.name + '_row'!r} are both audited per row, and the row type "
                f"of the first would take the name of the second's data table; audit one of "
                "them per statement or rename it",
                path=f"tables.{t.name}.audit",
                source=src,
            )
    role_names: set[str] = set()
    for r in p.roles:
        rp = f"roles.{r.name}"
        _check_ident(r.name, rp, src, role=True)
        if r.name in role_names:
            raise PolicyError(f"duplicate role {r.name!r}", path=rp, source=src)
        role_names.add(r.name)
        for table, privs in r.grants:
            gp = f"{rp}.grants.{table}"
            if table == p.audit.table:
                if privs - {"SELECT"}:
                    raise PolicyError(
                        "the audit table is written only by tsaccess triggers; grant at most "
                        "SELECT on it",
                        path=gp,
                        source=src,
                    )
            elif table not in tables:
                raise PolicyError(
                    f"unknown table {table!r}; declare it under [tables.{table}] or fix the name"
                    f" (known: {', '.join(sorted(tables | {p.audit.table}))})",
                    path=gp,
                    source=src,
                )
            bad = set(privs) - set(TABLE_PRIVILEGES)
            if bad:
                raise PolicyError(
                    f"unknown privilege {sorted(bad)[0]!r}; use {', '.join(TABLE_PRIVILEGES)}",
                    path=gp,
                    source=src,
                )
    if p.audit.owner in role_names:
        raise PolicyError(
            "the audit owner must be a dedicated role, not a group role",
            path="audit.owner",
            source=src,
        )
    user_names: set[str] = set()
    env_vars: dict[str, str] = {}
    for u in p.users:
        up = f"users.{u.name}"
        _check_ident(u.name, up, src, role=True)
        if u.name in user_names:
            raise PolicyError(f"duplicate user {u.name!r}", path=up, source=src)
        if u.name in role_names or u.name == p.audit.owner:
            raise PolicyError(
                f"{u.name!r} is also a group role; users and roles need distinct names",
                path=up,
                source=src,
            )
        user_names.add(u.name)
        other = env_vars.setdefault(u.password_env, u.name)
        if other != u.name:
            raise PolicyError(
                f"users {other!r} and {u.name!r} map to the same password "
                f"variable {u.password_env}; rename one",
                path=up,
                source=src,
            )
        for rname in u.roles:
            if rname not in role_names:
                raise PolicyError(
                    f"unknown role {rname!r}; declare it under [roles.{rname}] (known: "
                    f"{', '.join(sorted(role_names)) or 'none'})",
                    path=f"{up}.roles",
                    source=src,
                )


# -- TOML -------------------------------------------------------------------------------------


def _parse_column(name: str, spec: object, path: str, source: str) -> Column:
    if not isinstance(spec, str):
        raise PolicyError(
            'a column is a string like "numeric(5,2) not null default 0"', path=path, source=source
        )
    text = " ".join(spec.strip().split())
    low = text.lower()
    default: str | int | float | bool | None = None
    default_function: str | None = None
    m = re.search(r"\s+default\s+(.+)$", low)
    if m:
        raw = text[m.start(1) :]
        low = low[: m.start()]
        if raw.startswith("'"):
            if not (len(raw) >= 2 and raw.endswith("'") and "'" not in raw[1:-1].replace("''", "")):
                raise PolicyError(
                    f"default {raw!r} is not a single-quoted string literal",
                    path=path,
                    source=source,
                )
            default = raw[1:-1].replace("''", "'")
        elif raw.lower() in ("true", "false"):
            default = raw.lower() == "true"
        elif re.fullmatch(r"-?\d+", raw):
            default = int(raw)
        elif re.fullmatch(r"-?\d+\.\d*", raw):
            default = float(raw)
        elif raw.lower() in _DEFAULT_FUNCS:
            default_function = _DEFAULT_FUNCS[raw.lower()]
        else:
            raise PolicyError(
                f"default {raw!r} is not allowed; use a quoted string, a number, true/false or "
                f"one of {', '.join(_DEFAULT_FUNCS)}",
                path=path,
                source=source,
            )
    nullable = True
    if low.endswith(" not null"):
        nullable, low = False, low[: -len(" not null")]
    elif low.endswith(" null"):
        low = low[: -len(" null")]
    tm = _TYPE_RE.match(low.strip())
    base = tm.group("base").strip() if tm else ""
    if not tm or (
        (base + ("[]" if tm.group("arr") else "")) not in _BASE_TYPES and base not in _BASE_TYPES
    ):
        raise PolicyError(
            f"unsupported column type in {spec!r}; use one of: {', '.join(sorted(_BASE_TYPES))}"
            " (with (precision[, scale]) where it applies), then optional 'not null' and "
            "'default <literal>'",
            path=path,
            source=source,
        )
    typ = base
    if tm.group("p"):
        typ += f"({tm.group('p')}" + (f",{tm.group('s')}" if tm.group("s") else "") + ")"
    if tm.group("arr"):
        typ += "[]"
    return Column(name, typ, nullable, default, default_function)


def _expect(value: object, kind: type, path: str, source: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise PolicyError(f"must be {what}", path=path, source=source)
    return value


def _names(value: object, path: str, source: str) -> tuple[str, ...]:
    items = _expect(value, list, path, source, "a list of names")
    for i, v in enumerate(items):
        _expect(v, str, f"{path}[{i}]", source, "a string")
    return tuple(items)


def _only_keys(d: Mapping[str, Any], allowed: Iterable[str], path: str, source: str) -> None:
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise PolicyError(
            f"unknown key {extra[0]!r}; allowed here: {', '.join(sorted(allowed))}",
            path=f"{path}.{extra[0]}" if path else extra[0],
            source=source,
        )


def parse_policy(data: Mapping[str, Any], *, source: str = "<policy>") -> Policy:
    """Build a :class:`Policy` from parsed TOML (a mapping); raises :class:`PolicyError`."""
    _only_keys(data, {"database", "tables", "roles", "users", "audit"}, "", source)
    db = _expect(data.get("database"), dict, "database", source, 'a table with name = "..."')
    _only_keys(db, {"name", "schema", "timescaledb"}, "database", source)
    ts = db.get("timescaledb", "prefer")
    if ts not in ("prefer", "require", "off"):
        raise PolicyError(
            f'timescaledb = {ts!r}; use "prefer", "require" or "off"',
            path="database.timescaledb",
            source=source,
        )
    audit_raw = _expect(data.get("audit", {}), dict, "audit", source, "a table")
    _only_keys(audit_raw, {"table", "owner", "default_mode", "data_schema"}, "audit", source)
    audit = AuditSettings(
        table=audit_raw.get("table", "activity_audit"),
        owner=audit_raw.get("owner", "tsaccess_audit"),
        default_mode=audit_raw.get("default_mode", "statement"),
        data_schema=audit_raw.get("data_schema", "tsaccess_audit"),
    )
    if audit.default_mode not in ("statement", "row", "off"):
        raise PolicyError(
            f'default_mode = {audit.default_mode!r}; use "statement", "row" or "off"',
            path="audit.default_mode",
            source=source,
        )
    tables: list[Table] = []
    for tname, t in _expect(data.get("tables", {}), dict, "tables", source, "a table").items():
        tp = f"tables.{tname}"
        _expect(t, dict, tp, source, "a table")
        _only_keys(
            t,
            {
                "columns",
                "time_column",
                "hypertable",
                "chunk_interval",
                "audit",
                "audit_columns",
                "audit_exclude",
            },
            tp,
            source,
        )
        cols = _expect(
            t.get("columns"), dict, f"{tp}.columns", source, 'a table of column = "type"'
        )
        tables.append(
            Table(
                name=tname,
                columns=tuple(
                    _parse_column(c, spec, f"{tp}.columns.{c}", source) for c, spec in cols.items()
                ),
                time_column=_expect(
                    t.get("time_column", ""), str, f"{tp}.time_column", source, "a column name"
                )
                or None,
                hypertable=_expect(
                    t.get("hypertable", False), bool, f"{tp}.hypertable", source, "true or false"
                ),
                chunk_interval=t.get("chunk_interval"),
                audit=t.get("audit", audit.default_mode),
                audit_columns=_names(t["audit_columns"], f"{tp}.audit_columns", source)
                if "audit_columns" in t
                else None,
                audit_exclude=_names(t.get("audit_exclude", []), f"{tp}.audit_exclude", source),
            )
        )
        if tables[-1].chunk_interval is not None and not re.fullmatch(
            r"\d+\s*(second|minute|hour|day|week|month)s?", str(tables[-1].chunk_interval)
        ):
            raise PolicyError(
                'chunk_interval must look like "7 days" or "1 hour"',
                path=f"{tp}.chunk_interval",
                source=source,
            )
    roles: list[GroupRole] = []
    for rname, r in _expect(data.get("roles", {}), dict, "roles", source, "a table").items():
        rp = f"roles.{rname}"
        _expect(r, dict, rp, source, "a table")
        _only_keys(r, {"grants", "description"}, rp, source)
        grants = _expect(
            r.get("grants", {}),
            dict,
            f"{rp}.grants",
            source,
            'a table of table = ["PRIVILEGE", ...]',
        )
        parsed = []
        for table, privs in grants.items():
            names = _names(privs, f"{rp}.grants.{table}", source)
            upper = [p.upper() for p in names]
            if "ALL" in upper:
                upper = list(TABLE_PRIVILEGES)
            parsed.append((table, frozenset(cast(list[Privilege], upper))))
        roles.append(
            GroupRole(
                rname, tuple(sorted(parsed, key=lambda g: g[0])), str(r.get("description", ""))
            )
        )
    users: list[User] = []
    for uname, u in _expect(data.get("users", {}), dict, "users", source, "a table").items():
        up = f"users.{uname}"
        _expect(u, dict, up, source, "a table")
        _only_keys(u, {"roles", "connection_limit", "password"}, up, source)
        if "password" in u:
            raise PolicyError(
                f"passwords never live in the policy; remove it and set {password_env_var(uname)}"
                " or use a 0600 passwords file",
                path=f"{up}.password",
                source=source,
            )
        users.append(
            User(
                uname,
                _names(u.get("roles", []), f"{up}.roles", source),
                int(
                    _expect(
                        u.get("connection_limit", -1),
                        int,
                        f"{up}.connection_limit",
                        source,
                        "an integer",
                    )
                ),
            )
        )
    return Policy(
        database=_expect(db.get("name"), str, "database.name", source, "a string"),
        schema=_expect(db.get("schema", "public"), str, "database.schema", source, "a string"),
        timescaledb=ts,
        tables=tuple(tables),
        roles=tuple(roles),
        users=tuple(users),
        audit=audit,
        source=source,
    )


def load_policy(path: str | Path) -> Policy:
    """Read and validate a TOML policy file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"policy file {p} does not exist; check the path") from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {p}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = ""
        if "twice" in str(exc) or "overwrite" in str(exc):
            hint = " (a user, role or table is declared twice: each must be declared once)"
        raise PolicyError(f"invalid TOML: {exc}{hint}", source=str(p)) from None
    return parse_policy(data, source=str(p))
