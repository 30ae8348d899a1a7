"""The privilege snapshot: a role's effective privileges on every relation it can name.

One set-based catalog query (``has_table_privilege`` & co., which handle inheritance, PUBLIC and
predefined roles) per snapshot: relations (sequences and TimescaleDB chunks included) with their
privileges and owner, schemas (``USAGE``, ``CREATE``, owner), the functions pre-flight must look
at (not executable, or whose body it cannot judge: see :data:`RUNTIME_FUNCTIONS`), and the
session (``search_path``, roles). Column privileges and rarer facts are loaded when a check
needs them (:class:`Fetch`).

No I/O here but :func:`catalog_rows` and :func:`take_snapshot`: the checker builds a snapshot
from the rows of :func:`snapshot_query`, so an asynchronous connection can run the same queries.
``role`` takes the snapshot for another role (``has_table_privilege(role, ...)``): what that
role may do, as an administrator's connection sees it (:func:`take_snapshot_for`: with the
search path of the role's own sessions, from its ``ALTER ROLE ... SET search_path``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from tsaccess.preflight.model import RUNTIME_FUNCTIONS, Priv, TableRef
from tsaccess.preflight.paths import login_path, path_for

__all__ = [
    "COLUMN_PRIVS",
    "SYSTEM_COLUMNS",
    "Fetch",
    "Func",
    "Rel",
    "Schema",
    "Snapshot",
    "build_snapshot",
    "catalog_rows",
    "columns_query",
    "load_columns",
    "snapshot_query",
    "store_columns",
    "take_snapshot",
    "take_snapshot_for",
]

_PRIVS: tuple[Priv, ...] = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
COLUMN_PRIVS = ("SELECT", "INSERT", "UPDATE")
SYSTEM_COLUMNS = frozenset({"tableoid", "ctid", "xmin", "xmax", "cmin", "cmax"})


class Fetch(Exception):
    """A check needs catalog facts the snapshot has not loaded yet: run ``query`` (with
    ``params``), hand the rows to ``store`` (which keeps them on the snapshot), check again."""

    def __init__(
        self,
        key: str,
        query: sql.Composable,
        params: Any = None,
        store: Callable[[list[tuple[Any, ...]]], None] | None = None,
    ) -> None:
        super().__init__(key)
        self.key = key
        self.query = query
        self.params = params
        self.store = store


@dataclass
class Rel:
    oid: int
    schema: str
    name: str
    usage: bool
    table: dict[str, bool]
    any: dict[str, bool]
    kind: str = "r"
    rls: bool = False
    sequence_default: bool = False
    columns: list[tuple[str, dict[str, bool]]] | None = None
    """Loaded on demand: the columns in order, then the system columns (``ctid``...)."""
    sequences: tuple[tuple[str, int, str], ...] = ()
    """Columns whose default calls ``nextval`` on a sequence the role may not use:
    (column, sequence OID, sequence name)."""
    owned: bool = False
    """The role has the privileges of the owner (may ALTER, DROP, COMMENT ON it...)."""
    seq_usage: bool = False
    """For a sequence: ``USAGE`` (``nextval``, ``currval``)."""

    _readable: tuple[frozenset[str], frozenset[str]] | None = field(
        default=None, repr=False, compare=False
    )

    def user_columns(self) -> list[str]:
        return [c for c, _ in self.columns or [] if c not in SYSTEM_COLUMNS]

    def has_column(self, name: str) -> bool:
        return any(c == name for c, _ in self.columns or [])

    def select_columns(self) -> tuple[frozenset[str], frozenset[str]]:
        """(every column, the columns the role may not SELECT), system columns included;
        the columns must be loaded (:func:`load_columns`)."""
        if self._readable is None:
            cols = self.columns or []
            self._readable = (
                frozenset(c for c, _ in cols),
                frozenset(c for c, p in cols if not p["SELECT"]),
            )
        return self._readable

    @functools.cached_property
    def caveats(self) -> tuple[str, ...]:
        out = []
        if self.kind in ("v", "m"):
            out.append("view base tables")
        if self.kind == "f":
            out.append("foreign table")
        if self.rls:
            out.append("row-level security")
        return tuple(out)


@dataclass(frozen=True)
class Schema:
    usage: bool
    create: bool
    owned: bool


@dataclass(frozen=True)
class Func:
    """The overloads of one function name in one schema."""

    schema: str
    all_executable: bool
    any_executable: bool
    modeled: bool
    """Every overload's body is judged: ``SECURITY DEFINER``, or immutable C, or a catalog
    function not in :data:`RUNTIME_FUNCTIONS`."""


@dataclass
class Snapshot:
    """A role's effective privileges on every relation it can name (TimescaleDB chunks
    included: a chunk copies its hypertable's grants, and the server checks the chunk's)."""

    user: str
    role: str
    search_path: tuple[str, ...]
    rels: dict[tuple[str, str], Rel]
    usage: dict[str, bool]
    catalog_names: frozenset[str]
    taken: float
    generation: int
    schemas: dict[str, Schema] = field(default_factory=dict)
    funcs: dict[str, list[Func]] = field(default_factory=dict)
    """Function names pre-flight must look at (a name not here is executable and judged)."""
    session_user: str = ""
    database: str = ""
    path_setting: str = ""
    """The ``search_path`` setting as written (``"$user", public``)."""
    temp_schema: str = ""
    for_role: str | None = None
    """The role the snapshot was taken for (None: the session's current role)."""
    login: str | None = None
    """Whose memberships ``SET ROLE`` checks (None: the session user): the role a checker for
    another role checks as (:class:`~tsaccess.preflight.Checker` ``role=``)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Facts loaded on demand (:class:`Fetch`): settings, roles, owners..."""
    _by_name: dict[str, list[Rel]] | None = None
    _resolved: dict[tuple[str | None, str], Rel | Literal["system"] | None] = field(
        default_factory=dict, repr=False
    )

    def by_name(self) -> dict[str, list[Rel]]:
        """The relations by name, each name with its relations in every schema."""
        if self._by_name is None:
            index: dict[str, list[Rel]] = {}
            for rel in self.rels.values():
                index.setdefault(rel.name, []).append(rel)
            self._by_name = index
        return self._by_name

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """Every relation name, in any schema."""
        return frozenset(self.by_name())

    @functools.cached_property
    def special_functions(self) -> frozenset[str]:
        """Function names a statement may not call without a closer look."""
        return frozenset(self.funcs) | RUNTIME_FUNCTIONS

    def named(self, name: str) -> list[Rel]:
        """Every relation called ``name``, in any schema."""
        return self.by_name().get(name, [])

    def resolve_name(self, schema: str | None, name: str) -> Rel | Literal["system"] | None:
        """:meth:`resolve`, remembered for the snapshot's life."""
        key = (schema, name)
        try:
            return self._resolved[key]
        except KeyError:
            found = self._resolved[key] = self.resolve(TableRef(schema, name))
            return found

    def resolve(self, ref: TableRef) -> Rel | Literal["system"] | None:
        if ref.schema is not None:
            rel = self.rels.get((ref.schema, ref.name))
            if rel is None and ref.schema in ("pg_catalog", "information_schema"):
                return "system"  # readable by PUBLIC (the others are in the snapshot)
            # TimescaleDB chunks are in the snapshot with their own grants; other relations of
            # _timescaledb_* and pg_toast schemas are not: unresolved, the server decides
            return rel
        for schema in self.search_path:
            if schema == "pg_catalog":
                rel = self.rels.get((schema, ref.name))
                if rel is not None:
                    return rel
                if ref.name in self.catalog_names:
                    return "system"
                continue
            rel = self.rels.get((schema, ref.name))
            if rel is not None and self.usage.get(schema, True):
                return rel
        return None

    def creation_schema(self) -> str | None:
        """Where an unqualified CREATE puts its object: the first schema of the path (not
        ``pg_catalog``, not the temporary one)."""
        for schema in self.search_path:
            if schema not in ("pg_catalog", self.temp_schema) and schema in self.schemas:
                return schema
        return None

    def data(self, key: str) -> Any:
        """A fact loaded on demand (:mod:`~tsaccess.preflight.lookups`); KeyError if absent."""
        return self.extra[key]


def _who(role: str | None) -> sql.Composable:
    return sql.SQL("") if role is None else sql.SQL("{}, ").format(sql.Literal(role))


# modeled: the body is judged (definer rights, immutable C, catalog functions)
_MODELED = (
    "(p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)"
    " OR p.prosecdef OR (p.provolatile = 'i' AND p.prolang IN (12, 13)))"  # 12, 13: internal, C
)

_SNAPSHOT_SQL = """
SELECT 'r', n.nspname, c.relname, c.oid::bigint, c.relkind::text,
       pg_catalog.has_table_privilege({who}c.oid, 'SELECT'),
       pg_catalog.has_table_privilege({who}c.oid, 'INSERT'),
       pg_catalog.has_table_privilege({who}c.oid, 'UPDATE'),
       pg_catalog.has_table_privilege({who}c.oid, 'DELETE'),
       pg_catalog.has_table_privilege({who}c.oid, 'TRUNCATE'),
       pg_catalog.has_any_column_privilege({who}c.oid, 'SELECT'),
       pg_catalog.has_any_column_privilege({who}c.oid, 'INSERT'),
       pg_catalog.has_any_column_privilege({who}c.oid, 'UPDATE'),
       c.relrowsecurity, pg_catalog.pg_has_role({who}c.relowner, 'USAGE'),
       CASE WHEN c.relkind = 'S' THEN pg_catalog.has_sequence_privilege({who}c.oid, 'USAGE') END,
       (SELECT pg_catalog.array_agg(ARRAY[a.attname::text, s.oid::text,
                 pg_catalog.format('%I.%I', sn.nspname, s.relname)])
          FROM pg_catalog.pg_attrdef d
          JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
          JOIN pg_catalog.pg_depend dep ON dep.classid = 'pg_catalog.pg_attrdef'::regclass
               AND dep.objid = d.oid AND dep.refclassid = 'pg_catalog.pg_class'::regclass
          JOIN pg_catalog.pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S'
          JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
         WHERE d.adrelid = c.oid
           AND CASE WHEN s.relkind = 'S'  -- CASE: evaluated only for sequences
                    THEN NOT (pg_catalog.has_sequence_privilege({who}s.oid, 'USAGE')
                              OR pg_catalog.has_sequence_privilege({who}s.oid, 'UPDATE')) END),
       NULL::text[], NULL::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
   AND ((n.nspname !~ '^pg_' AND n.nspname !~ '^_timescaledb' AND n.nspname <> 'information_schema')
        OR n.oid = {temp}
        -- catalogs the role may not read in full (pg_authid, pg_statistic...): checked
        OR (n.nspname = 'pg_catalog' AND NOT pg_catalog.has_table_privilege({who}c.oid, 'SELECT'))
        -- TimescaleDB chunks: tables inheriting from a hypertable, granted as it is
        OR (n.nspname ~ '^_timescaledb' AND c.relkind = 'r'
            AND EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)))
UNION ALL
SELECT 'n', n.nspname, NULL, n.oid::bigint, NULL,
       pg_catalog.has_schema_privilege({who}n.oid, 'USAGE'),
       pg_catalog.has_schema_privilege({who}n.oid, 'CREATE'),
       pg_catalog.pg_has_role({who}n.nspowner, 'USAGE'),
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_namespace n
UNION ALL
SELECT 'f', n.nspname, p.proname, NULL, NULL,
       bool_and(pg_catalog.has_function_privilege({who}p.oid, 'EXECUTE')),
       bool_or(pg_catalog.has_function_privilege({who}p.oid, 'EXECUTE')),
       bool_and({modeled}),
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname IN (
         SELECT p.proname FROM pg_catalog.pg_proc p
          WHERE (p.proacl IS NOT NULL
                 AND NOT pg_catalog.has_function_privilege({who}p.oid, 'EXECUTE'))
             OR NOT {modeled})
 GROUP BY 2, 3
UNION ALL
SELECT 'x', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, pg_catalog.current_schemas(true)::text[],
       pg_catalog.concat_ws(E'\\n', {role}, {session}, pg_catalog.current_database()::text,
         {setting},
         coalesce((SELECT nspname::text FROM pg_catalog.pg_namespace WHERE oid = {temp}), ''),
         (SELECT pg_catalog.string_agg(relname, ',') FROM pg_catalog.pg_class
           WHERE relnamespace = 'pg_catalog'::regnamespace))
"""


def snapshot_query(role: str | None = None, login: str | None = None) -> sql.Composable:
    """The one query a snapshot is built from (``role``: another role than the session's;
    ``login``: as in that login's own sessions — its search path, no temporary schema)."""
    session: dict[str, sql.Composable] = {
        "session": sql.SQL("session_user::text"),
        "setting": sql.SQL("pg_catalog.current_setting('search_path')"),
        "temp": sql.SQL("pg_catalog.pg_my_temp_schema()"),
    }
    if login is not None:
        session = {
            "session": sql.Literal(login),
            "setting": login_path(login),
            "temp": sql.SQL("0"),
        }
    return sql.SQL(_SNAPSHOT_SQL).format(
        who=_who(role),
        modeled=sql.SQL(_MODELED),
        role=sql.SQL("current_user::text") if role is None else sql.Literal(role),
        **session,
    )


def build_snapshot(
    rows: Iterable[tuple[Any, ...]],
    user: str,
    generation: int = 0,
    role: str | None = None,
    login: str | None = None,
) -> Snapshot:
    """The snapshot from the rows of :func:`snapshot_query` (``user``: the login user;
    ``login``: see :attr:`Snapshot.login`)."""
    rels: dict[tuple[str, str], Rel] = {}
    usage: dict[str, bool] = {}
    schemas: dict[str, Schema] = {}
    funcs: dict[str, list[Func]] = {}
    path: tuple[str, ...] = ()
    facts = [""] * 6
    for r in rows:
        kind = r[0]
        if kind == "r":
            rels[(r[1], r[2])] = Rel(
                r[3],
                r[1],
                r[2],
                True,
                dict(zip(_PRIVS, map(bool, r[5:10]), strict=True)),
                dict(zip(COLUMN_PRIVS, map(bool, r[10:13]), strict=True)),
                kind=r[4],
                rls=bool(r[13]),
                sequence_default=bool(r[16]),
                sequences=tuple((c, int(oid), name) for c, oid, name in r[16] or ()),
                owned=bool(r[14]),
                seq_usage=bool(r[15]),
            )
        elif kind == "n":
            schemas[r[1]] = Schema(bool(r[5]), bool(r[6]), bool(r[7]))
            usage[r[1]] = bool(r[5])
        elif kind == "f":
            funcs.setdefault(r[2], []).append(Func(r[1], bool(r[5]), bool(r[6]), bool(r[7])))
        else:
            path = tuple(r[17] or ())
            facts = ((r[18] or "").split("\n") + [""] * 6)[:6]
    for rel in rels.values():
        rel.usage = usage.get(rel.schema, True)
    current, session, database, setting, temp, names = facts
    if role is not None:
        path = path_for(setting, role, usage, temp)
    return Snapshot(
        user,
        current,
        path,
        rels,
        usage,
        frozenset(names.split(",")),
        time.monotonic(),
        generation,
        schemas=schemas,
        funcs=funcs,
        session_user=session,
        database=database,
        path_setting=setting,
        temp_schema=temp,
        for_role=role,
        login=login,
    )


def catalog_rows(
    conn: psycopg.Connection[Any], query: Any, params: Any = None
) -> list[tuple[Any, ...]]:
    """Run a catalog query past the pre-flight cursor, leaving the transaction state as found."""
    was_idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with psycopg.Cursor(conn, row_factory=tuple_row) as cur:
        rows = cur.execute(query, params).fetchall()
    if was_idle and not conn.autocommit:
        conn.rollback()
    return rows


def take_snapshot(
    conn: psycopg.Connection[Any],
    generation: int = 0,
    role: str | None = None,
    *,
    login: str | None = None,
) -> Snapshot:
    """One set-based catalog query: every relation the session (or ``role``) could name, with
    privileges. ``role`` needs no membership: the privilege functions answer for any role;
    its snapshot is the one of ``login``'s sessions (default: ``role``) scoped to ``role``:
    their search path (``$user`` being ``role``), no temporary schema."""
    login = (login or role) if role is not None else None
    query = snapshot_query(role, login)
    return build_snapshot(
        catalog_rows(conn, query), login or conn.info.user, generation, role, login=login
    )


def take_snapshot_for(
    conn: psycopg.Connection[Any], role: str, generation: int = 0, *, login: str | None = None
) -> Snapshot:
    """``role``'s privileges read from another session (an administrator asking "would alice
    be refused?" without alice's password): :func:`take_snapshot` with ``role``."""
    return take_snapshot(conn, generation, role, login=login)


def columns_query(oids: Iterable[int], role: str | None = None) -> tuple[sql.Composable, Any]:
    """The query (and parameters) loading the columns of relations ``oids``."""
    who = _who(role)
    query = sql.SQL(
        "SELECT attrelid::bigint, attname::text,"
        " pg_catalog.has_column_privilege({who}attrelid, attnum, 'SELECT'),"
        " pg_catalog.has_column_privilege({who}attrelid, attnum, 'INSERT'),"
        " pg_catalog.has_column_privilege({who}attrelid, attnum, 'UPDATE')"
        " FROM pg_catalog.pg_attribute WHERE attrelid = ANY(%s::oid[]) AND attnum <> 0"
        " AND NOT attisdropped ORDER BY attrelid, attnum < 0, attnum"
    ).format(who=who)
    return query, (sorted(set(oids)),)


def store_columns(rels: Iterable[Rel], rows: Iterable[tuple[Any, ...]]) -> None:
    """Fill :attr:`Rel.columns` from the rows of :func:`columns_query`."""
    todo = {r.oid: r for r in rels}
    for rel in todo.values():
        rel.columns = []
    for oid, name, s, i, u in rows:
        cols = todo[oid].columns
        assert cols is not None
        cols.append((name, {"SELECT": s, "INSERT": i, "UPDATE": u}))


def load_columns(
    conn: psycopg.Connection[Any], rels: Iterable[Rel], role: str | None = None
) -> None:
    todo = [r for r in rels if r.columns is None]
    if todo:
        query, params = columns_query([r.oid for r in todo], role)
        store_columns(todo, catalog_rows(conn, query, params))
