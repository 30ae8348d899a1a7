"""Set-based reads of the live catalog: roles, memberships, tables, ACLs, audit objects.

:func:`read_catalog` issues a fixed number of queries whatever the number of objects
(``CatalogSnapshot.queries`` counts them). ACLs are exploded with ``aclexplode``; a NULL ACL is
read as ``acldefault`` (the owner's implicit privileges plus PUBLIC's defaults), so a fresh
database's ``CONNECT``/``TEMPORARY`` for PUBLIC is visible and can be revoked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = [
    "AuditDataInfo",
    "CatalogSnapshot",
    "ColumnInfo",
    "DataRelation",
    "FunctionInfo",
    "RoleInfo",
    "TableInfo",
    "TimescaleState",
    "read_catalog",
    "timescaledb_state",
]

Grant = tuple[str, str]
"""(grantee, privilege); grantee ``PUBLIC`` for everyone."""


@dataclass(frozen=True)
class RoleInfo:
    name: str
    login: bool
    inherit: bool
    superuser: bool
    connection_limit: int
    password: str | None = field(default=None, repr=False)
    """The stored verifier when readable (superuser), else None."""
    comment: str | None = None
    """The role's comment (tsaccess's managed marker lives there)."""


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    not_null: bool
    default: str | None
    statistics: int = -1
    """The column's statistics target (``attstattarget``; -1: the server's default)."""


@dataclass(frozen=True)
class TableInfo:
    name: str
    kind: str
    owner: str
    columns: tuple[ColumnInfo, ...]
    acl: frozenset[Grant]
    column_acl: frozenset[tuple[str, str, str]] = frozenset()
    """(column, grantee, privilege)."""
    hypertable: bool = False
    compressed: bool = False
    indexed_first_columns: frozenset[str] = frozenset()
    """Columns that lead some index of the table."""
    comment: str | None = None


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    owner: str
    security_definer: bool
    config: tuple[str, ...]
    source: str
    acl: frozenset[Grant]


@dataclass(frozen=True)
class TriggerInfo:
    table: str
    name: str
    enabled: bool
    definition: str


@dataclass(frozen=True)
class DataRelation:
    """A table or composite type in the audit data schema."""

    name: str
    kind: str
    """``r`` table, ``c`` composite type."""
    owner: str
    attributes: tuple[str, ...]
    hypertable: bool = False


@dataclass(frozen=True)
class AuditDataInfo:
    """The private schema holding per-row audit data (``audit.data_schema``)."""

    schema: str
    exists: bool
    owner: str = ""
    acl: frozenset[Grant] = frozenset()
    relations: Mapping[tuple[str, str], DataRelation] = field(default_factory=dict)
    """Keyed by (kind, name)."""
    functions: Mapping[str, FunctionInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogSnapshot:
    database: str
    database_owner: str
    database_acl: frozenset[Grant]
    schema: str
    schema_exists: bool
    schema_owner: str
    schema_acl: frozenset[Grant]
    roles: Mapping[str, RoleInfo]
    members: frozenset[tuple[str, str]]
    """(role, member)."""
    tables: Mapping[str, TableInfo]
    functions: Mapping[str, FunctionInfo]
    triggers: Mapping[tuple[str, str], TriggerInfo]
    extensions: frozenset[str]
    timescaledb_available: bool
    timescaledb_preloaded: bool
    current_user: str
    superuser: bool
    queries: int
    audit_data: AuditDataInfo | None = None
    role_settings: Mapping[tuple[str, bool], tuple[str, ...]] = field(default_factory=dict)
    """(role, in this database?) -> ``name=value`` settings (``ALTER ROLE ... SET``); False:
    settings for every database."""
    default_acl: frozenset[Grant] = frozenset()
    """Default privileges on tables the current user creates later in the schema."""
    native_version: str | None = None
    """The ``tsaccess_native`` library the server offers (its control file's version), None
    when it has none (see :mod:`tsaccess.native`)."""

    @property
    def timescaledb(self) -> bool:
        return "timescaledb" in self.extensions

    def memberships_of(self, member: str) -> frozenset[str]:
        return frozenset(r for r, m in self.members if m == member)


_TIMESCALEDB_STATE = (
    "EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name = 'timescaledb'),"
    # pg_settings, not current_setting(): the setting is hidden (no row, NULL) from users
    # without pg_read_all_settings instead of raising
    " coalesce((SELECT setting FROM pg_catalog.pg_settings"
    " WHERE name = 'shared_preload_libraries') ~ '(^|[ ,])timescaledb($|[ ,])', false),"
    " (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'timescaledb')"
)


@dataclass(frozen=True)
class TimescaleState:
    """What a server offers of TimescaleDB."""

    available: bool
    """The extension is installed on the server (``pg_available_extensions``)."""
    preloaded: bool
    """``timescaledb`` is in ``shared_preload_libraries`` (needed to create it); False when the
    current user may not read that setting."""
    created: str | None
    """The extension's version in the current database, None when not created there."""

    @property
    def usable(self) -> bool:
        """Hypertables can be made in this database (created, or can be created)."""
        return self.created is not None or (self.available and self.preloaded)


def timescaledb_state(conn: psycopg.Connection[Any]) -> TimescaleState:
    """The one TimescaleDB detection of tsaccess, on a live server (one query)."""
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        row = cur.execute("SELECT " + _TIMESCALEDB_STATE).fetchone()
    assert row is not None
    return TimescaleState(bool(row[0]), bool(row[1]), row[2])


_GRANTEE = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END"


def read_catalog(
    conn: psycopg.Connection[Any], schema: str, data_schema: str | None = None
) -> CatalogSnapshot:
    """Read everything plan/verify need about ``schema`` and the roles, in a few queries.

    With ``data_schema`` (the audit's private schema), also its tables, row types and functions.
    """
    queries = 0

    def q(query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        nonlocal queries
        queries += 1
        return conn.execute(query, params).fetchall()

    ((cur_user, superuser, ts_avail, ts_preload, _, native_version),) = q(
        "SELECT current_user, pg_catalog.current_setting('is_superuser') = 'on', "
        + _TIMESCALEDB_STATE
        + ", (SELECT default_version FROM pg_catalog.pg_available_extensions"
        " WHERE name = 'tsaccess_native')"
    )
    pw_col = "rolpassword" if superuser else "NULL::text"
    source = "pg_catalog.pg_authid" if superuser else "pg_catalog.pg_roles"
    roles = {
        r[0]: RoleInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6])
        for r in q(
            f"SELECT rolname, rolcanlogin, rolinherit, rolsuper, rolconnlimit, {pw_col},"
            " pg_catalog.shobj_description(oid, 'pg_authid')"
            f" FROM {source}"
        )
    }
    role_settings = {
        (r[0], bool(r[1])): tuple(r[2])
        for r in q(
            "SELECT pg_catalog.pg_get_userbyid(s.setrole), s.setdatabase <> 0, s.setconfig"
            " FROM pg_catalog.pg_db_role_setting s WHERE s.setrole <> 0 AND s.setdatabase IN"
            " (0, (SELECT oid FROM pg_catalog.pg_database"
            "      WHERE datname = pg_catalog.current_database()))"
        )
    }
    default_acl = frozenset(
        (r[0], r[1])
        for r in q(
            f"SELECT {_GRANTEE}, a.privilege_type FROM pg_catalog.pg_default_acl d"
            " JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace,"
            " LATERAL pg_catalog.aclexplode(d.defaclacl) a"
            " WHERE n.nspname = %s AND d.defaclobjtype = 'r'"
            " AND d.defaclrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)",
            (schema,),
        )
    )
    members = frozenset(
        (r[0], r[1])
        for r in q(
            "SELECT pg_catalog.pg_get_userbyid(roleid), pg_catalog.pg_get_userbyid(member)"
            " FROM pg_catalog.pg_auth_members"
        )
    )
    # database and schema ACLs in one query
    acl_rows = q(
        f"SELECT 'd', d.datname, pg_catalog.pg_get_userbyid(d.datdba), {_GRANTEE},"
        " a.privilege_type FROM pg_catalog.pg_database d,"
        " LATERAL pg_catalog.aclexplode(coalesce(d.datacl, pg_catalog.acldefault('d', d.datdba))) a"
        " WHERE d.datname = pg_catalog.current_database()"
        " UNION ALL"
        f" SELECT 'n', n.nspname, pg_catalog.pg_get_userbyid(n.nspowner), {_GRANTEE},"
        " a.privilege_type FROM pg_catalog.pg_namespace n"
        " LEFT JOIN LATERAL pg_catalog.aclexplode("
        "   coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a ON true"
        " WHERE n.nspname = %s"
        " UNION ALL"
        f" SELECT 'a', n.nspname, pg_catalog.pg_get_userbyid(n.nspowner), {_GRANTEE},"
        " a.privilege_type FROM pg_catalog.pg_namespace n"
        " LEFT JOIN LATERAL pg_catalog.aclexplode("
        "   coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a ON true"
        " WHERE n.nspname = %s",
        (schema, data_schema),
    )
    database, database_owner, schema_owner = "", "", ""
    data_exists, data_owner = False, ""
    data_acl: set[Grant] = set()
    db_acl: set[Grant] = set()
    ns_acl: set[Grant] = set()
    schema_exists = False
    for kind, name, owner, grantee, priv in acl_rows:
        if kind == "d":
            database, database_owner = name, owner
            db_acl.add((grantee, priv))
        elif kind == "a":
            data_exists, data_owner = True, owner
            if grantee is not None:
                data_acl.add((grantee, priv))
        else:
            schema_exists, schema_owner = True, owner
            if grantee is not None:
                ns_acl.add((grantee, priv))

    # the comment by a join: obj_description() is a SQL query per row (slow for many tables)
    table_rows = q(
        f"SELECT c.relname, c.relkind, pg_catalog.pg_get_userbyid(c.relowner), {_GRANTEE},"
        " a.privilege_type, ds.description"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_catalog.pg_description ds ON ds.objoid = c.oid"
        "  AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid = 0"
        " LEFT JOIN LATERAL pg_catalog.aclexplode("
        "   coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) a ON true"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        (schema,),
    )
    col_rows = q(
        "SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),"
        " a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid),"
        " CASE WHEN x.grantee IS NULL THEN NULL ELSE"
        "  (CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee) END)"
        " END, x.privilege_type, a.attstattarget"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
        "  AND NOT a.attisdropped"
        " LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum"
        " LEFT JOIN LATERAL pg_catalog.aclexplode(a.attacl) x ON true"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        " ORDER BY c.relname, a.attnum",
        (schema,),
    )
    extensions = frozenset(r[0] for r in q("SELECT extname FROM pg_catalog.pg_extension"))
    hyper: dict[tuple[str, str], bool] = {}
    if "timescaledb" in extensions:
        hyper = {
            (r[0], r[1]): bool(r[2])
            for r in q(
                "SELECT hypertable_schema, hypertable_name, compression_enabled"
                " FROM timescaledb_information.hypertables"
                " WHERE hypertable_schema IN (%s, %s)",
                (schema, data_schema),
            )
        }
    func_rows = q(
        "SELECT n.nspname, p.proname, pg_catalog.pg_get_userbyid(p.proowner), p.prosecdef,"
        f" coalesce(p.proconfig, '{{}}'), p.prosrc, {_GRANTEE}, a.privilege_type"
        " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " LEFT JOIN LATERAL pg_catalog.aclexplode("
        "   coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a ON true"
        " WHERE (n.nspname = %s AND p.proname LIKE 'tsaccess\\_%%') OR n.nspname = %s",
        (schema, data_schema),
    )
    data_rows = (
        q(
            "SELECT c.relname, c.relkind, pg_catalog.pg_get_userbyid(c.relowner),"
            " coalesce(array_agg(a.attname::text ORDER BY a.attnum)"
            "   FILTER (WHERE a.attname IS NOT NULL), '{}')"
            " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
            "  AND NOT a.attisdropped"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'c')"
            " GROUP BY c.relname, c.relkind, c.relowner",
            (data_schema,),
        )
        if data_schema is not None and data_exists
        else []
    )
    index_rows = q(
        "SELECT c.relname, a.attname FROM pg_catalog.pg_index i"
        " JOIN pg_catalog.pg_class c ON c.oid = i.indrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE n.nspname = %s",
        (schema,),
    )
    indexed: dict[str, set[str]] = defaultdict(set)
    for relname, att in index_rows:
        indexed[relname].add(att)
    trig_rows = q(
        "SELECT c.relname, t.tgname, t.tgenabled <> 'D', pg_catalog.pg_get_triggerdef(t.oid)"
        " FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND NOT t.tgisinternal",
        (schema,),
    )

    acl: dict[str, set[Grant]] = defaultdict(set)
    meta: dict[str, tuple[str, str]] = {}
    comments: dict[str, str | None] = {}
    for relname, kind, owner, grantee, priv, comment in table_rows:
        meta[relname] = (kind, owner)
        comments[relname] = comment
        if grantee is not None:
            acl[relname].add((grantee, priv))
    cols: dict[str, list[ColumnInfo]] = defaultdict(list)
    col_acl: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for relname, att, typ, notnull, default, grantee, priv, target in col_rows:
        if not cols[relname] or cols[relname][-1].name != att:
            cols[relname].append(ColumnInfo(att, typ, notnull, default, target))
        if grantee is not None:
            col_acl[relname].add((att, grantee, priv))
    tables = {
        name: TableInfo(
            name,
            kind,
            owner,
            tuple(cols[name]),
            frozenset(acl[name]),
            frozenset(col_acl[name]),
            (schema, name) in hyper,
            hyper.get((schema, name), False),
            frozenset(indexed[name]),
            comments.get(name),
        )
        for name, (kind, owner) in meta.items()
    }
    fmeta: dict[tuple[str, str], tuple[str, bool, tuple[str, ...], str]] = {}
    facl: dict[tuple[str, str], set[Grant]] = defaultdict(set)
    for nsp, name, owner, secdef, config, src, grantee, priv in func_rows:
        fmeta[nsp, name] = (owner, secdef, tuple(config), src)
        if grantee is not None:
            facl[nsp, name].add((grantee, priv))
    functions = {
        n: FunctionInfo(n, *m, frozenset(facl[nsp, n]))
        for (nsp, n), m in fmeta.items()
        if nsp == schema
    }
    audit_data = None
    if data_schema is not None:
        audit_data = AuditDataInfo(
            data_schema,
            data_exists,
            data_owner,
            frozenset(data_acl),
            {
                (kind, name): DataRelation(
                    name, kind, owner, tuple(attrs), (data_schema, name) in hyper
                )
                for name, kind, owner, attrs in data_rows
            },
            {
                n: FunctionInfo(n, *m, frozenset(facl[nsp, n]))
                for (nsp, n), m in fmeta.items()
                if nsp == data_schema
            },
        )
    triggers = {(r[0], r[1]): TriggerInfo(r[0], r[1], r[2], r[3]) for r in trig_rows}
    return CatalogSnapshot(
        database=database,
        database_owner=database_owner,
        database_acl=frozenset(db_acl),
        schema=schema,
        schema_exists=schema_exists,
        schema_owner=schema_owner,
        schema_acl=frozenset(ns_acl),
        roles=roles,
        members=members,
        tables=tables,
        functions=functions,
        triggers=triggers,
        extensions=extensions,
        timescaledb_available=bool(ts_avail),
        timescaledb_preloaded=bool(ts_preload),
        current_user=cur_user,
        superuser=bool(superuser),
        queries=queries,
        audit_data=audit_data,
        role_settings=role_settings,
        default_acl=default_acl,
        native_version=native_version,
    )
