"""The privilege snapshot: a session's effective privileges on every relation it can name.

One set-based catalog query (``has_table_privilege`` & co., which handle inheritance, PUBLIC and
predefined roles) per snapshot; column privileges are loaded only for the tables a check needs.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from tsaccess.preflight.model import Priv, TableRef

__all__ = [
    "COLUMN_PRIVS",
    "SYSTEM_COLUMNS",
    "Rel",
    "Snapshot",
    "catalog_rows",
    "load_columns",
    "take_snapshot",
    "take_snapshot_for",
]

_PRIVS: tuple[Priv, ...] = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
COLUMN_PRIVS = ("SELECT", "INSERT", "UPDATE")
SYSTEM_COLUMNS = frozenset({"tableoid", "ctid", "xmin", "xmax", "cmin", "cmax"})


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
    """Columns whose default calls ``nextval`` on a sequence the session may not use:
    (column, sequence OID, sequence name)."""

    _readable: tuple[frozenset[str], frozenset[str]] | None = field(
        default=None, repr=False, compare=False
    )

    def user_columns(self) -> list[str]:
        return [c for c, _ in self.columns or [] if c not in SYSTEM_COLUMNS]

    def select_columns(self) -> tuple[frozenset[str], frozenset[str]]:
        """(every column, the columns the session may not SELECT), system columns included;
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


@dataclass
class Snapshot:
    """A session's effective privileges on every relation it can name (TimescaleDB chunks
    included: a chunk copies its hypertable's grants, and the server checks the chunk's)."""

    user: str
    role: str
    search_path: tuple[str, ...]
    rels: dict[tuple[str, str], Rel]
    usage: dict[str, bool]
    catalog_names: frozenset[str]
    taken: float
    generation: int
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


_SNAPSHOT_SQL = """
SELECT n.nspname, c.relname, c.oid::bigint, pg_catalog.has_schema_privilege(n.oid, 'USAGE'),
       pg_catalog.has_table_privilege(c.oid, 'SELECT'), pg_catalog.has_table_privilege(c.oid, 'INSERT'),
       pg_catalog.has_table_privilege(c.oid, 'UPDATE'), pg_catalog.has_table_privilege(c.oid, 'DELETE'),
       pg_catalog.has_table_privilege(c.oid, 'TRUNCATE'),
       pg_catalog.has_any_column_privilege(c.oid, 'SELECT'),
       pg_catalog.has_any_column_privilege(c.oid, 'INSERT'),
       pg_catalog.has_any_column_privilege(c.oid, 'UPDATE'),
       NULL::text[], NULL::text, NULL::text,
       c.relkind::text, c.relrowsecurity,
       EXISTS (SELECT FROM pg_catalog.pg_attrdef d WHERE d.adrelid = c.oid
                AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) ~ 'nextval'),
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
                    THEN NOT (pg_catalog.has_sequence_privilege(s.oid, 'USAGE')
                              OR pg_catalog.has_sequence_privilege(s.oid, 'UPDATE')) END)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND ((n.nspname !~ '^pg_' AND n.nspname !~ '^_timescaledb' AND n.nspname <> 'information_schema')
        OR n.oid = pg_catalog.pg_my_temp_schema()
        -- catalogs the session may not read in full (pg_authid, pg_statistic...): checked
        OR (n.nspname = 'pg_catalog' AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT'))
        -- TimescaleDB chunks: tables inheriting from a hypertable, granted as it is
        OR (n.nspname ~ '^_timescaledb' AND c.relkind = 'r'
            AND EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)))
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       pg_catalog.current_schemas(true)::text[], current_user::text,
       (SELECT pg_catalog.string_agg(relname, ',') FROM pg_catalog.pg_class
         WHERE relnamespace = 'pg_catalog'::regnamespace), NULL, NULL, NULL, NULL
"""


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


def take_snapshot(conn: psycopg.Connection[Any], generation: int = 0) -> Snapshot:
    """One set-based catalog query: every relation the session could name, with privileges."""
    return _snapshot(conn.info.user, catalog_rows(conn, _SNAPSHOT_SQL), generation)


# the same query about another role: has_*_privilege(role, ...), no temporary schema
_FOR_ROLE_SQL = (
    _SNAPSHOT_SQL.replace("_privilege(", "_privilege({role}, ")
    .replace("current_user::text", "{role}::text")
    .replace("n.oid = pg_catalog.pg_my_temp_schema()", "false")
)

_ROLE_PATH_SQL = """
SELECT coalesce(
  (SELECT s FROM pg_catalog.pg_db_role_setting d, unnest(d.setconfig) s
    WHERE d.setrole = r.oid AND d.setdatabase = db.oid AND s LIKE 'search\\_path=%%'),
  (SELECT s FROM pg_catalog.pg_db_role_setting d, unnest(d.setconfig) s
    WHERE d.setrole = r.oid AND d.setdatabase = 0 AND s LIKE 'search\\_path=%%'),
  (SELECT s FROM pg_catalog.pg_db_role_setting d, unnest(d.setconfig) s
    WHERE d.setrole = 0 AND d.setdatabase = db.oid AND s LIKE 'search\\_path=%%'),
  'search_path=' || (SELECT boot_val FROM pg_catalog.pg_settings WHERE name = 'search_path'))
  FROM pg_catalog.pg_roles r, pg_catalog.pg_database db
 WHERE r.rolname = %s AND db.datname = pg_catalog.current_database()
"""


def _role_search_path(conn: psycopg.Connection[Any], login: str, role: str) -> tuple[str, ...]:
    """The schemas an unqualified name is looked up in by ``login``'s sessions (its settings in
    this database, then its own, then the database's, else the server default) scoped to
    ``role`` (``$user``): ``pg_catalog`` first unless the path places it."""
    rows = catalog_rows(conn, _ROLE_PATH_SQL, (login,))
    text = str(rows[0][0]).split("=", 1)[1] if rows and rows[0][0] else '"$user", public'
    path: list[str] = []
    for quoted, bare in re.findall(r'\s*(?:"((?:[^"]|"")*)"|([^,\s]+))\s*(?:,|$)', text):
        name = quoted.replace('""', '"') if quoted else bare.lower()
        path.append(role if name == "$user" else name)
    if "pg_catalog" not in path:
        path.insert(0, "pg_catalog")
    # as current_schemas(): schemas that exist and the role may use, each once
    kept = catalog_rows(
        conn,
        "SELECT n FROM unnest(%s::text[]) WITH ORDINALITY AS p(n, i)"
        " JOIN pg_catalog.pg_namespace s ON s.nspname = p.n"
        " WHERE pg_catalog.has_schema_privilege(%s, s.oid, 'USAGE') ORDER BY i",
        (path, role),
    )
    return tuple(dict.fromkeys(str(r[0]) for r in kept))


def take_snapshot_for(
    conn: psycopg.Connection[Any], role: str, generation: int = 0, *, login: str | None = None
) -> Snapshot:
    """``role``'s privileges, read from another session (an administrator asking "would
    alice be refused?" without alice's password): ``has_*_privilege(role, ...)`` for every
    relation; the search path of ``login``'s sessions (default: ``role``), ``$user`` being
    ``role`` (as after ``SET ROLE``)."""
    query = sql.SQL(_FOR_ROLE_SQL).format(role=sql.Literal(role))
    snap = _snapshot(login or role, catalog_rows(conn, query), generation)
    snap.search_path = _role_search_path(conn, login or role, role)
    return snap


def _snapshot(user: str, rows: list[tuple[Any, ...]], generation: int) -> Snapshot:
    rels: dict[tuple[str, str], Rel] = {}
    usage: dict[str, bool] = {}
    path: tuple[str, ...] = ()
    role, names = "", ""
    for r in rows:
        if r[0] is None:
            path, role, names = tuple(r[12] or ()), r[13], r[14] or ""
            continue
        usage[r[0]] = bool(r[3])
        rels[(r[0], r[1])] = Rel(
            r[2],
            r[0],
            r[1],
            bool(r[3]),
            dict(zip(_PRIVS, map(bool, r[4:9]), strict=True)),
            dict(zip(COLUMN_PRIVS, map(bool, r[9:12]), strict=True)),
            kind=r[15],
            rls=bool(r[16]),
            sequence_default=bool(r[17]),
            sequences=tuple((c, int(oid), name) for c, oid, name in r[18] or ()),
        )
    # the implicit temp schema (pg_temp_N) shows in current_schemas only once it exists
    return Snapshot(
        user,
        role,
        path,
        rels,
        usage,
        frozenset(names.split(",")),
        time.monotonic(),
        generation,
    )


def load_columns(
    conn: psycopg.Connection[Any], rels: Iterable[Rel], *, role: str | None = None
) -> None:
    """The columns of ``rels`` with the session's privileges on each (``role``'s, when given)."""
    todo = {r.oid: r for r in rels if r.columns is None}
    if not todo:
        return
    who = sql.SQL("{}, ").format(sql.Literal(role)) if role is not None else sql.SQL("")
    rows = catalog_rows(
        conn,
        sql.SQL(
            "SELECT attrelid::bigint, attname,"
            " pg_catalog.has_column_privilege({who}attrelid, attnum, 'SELECT'),"
            " pg_catalog.has_column_privilege({who}attrelid, attnum, 'INSERT'),"
            " pg_catalog.has_column_privilege({who}attrelid, attnum, 'UPDATE')"
            " FROM pg_catalog.pg_attribute WHERE attrelid = ANY(%s::oid[]) AND attnum <> 0"
            " AND NOT attisdropped ORDER BY attrelid, attnum < 0, attnum"
        ).format(who=who),
        (list(todo),),
    )
    for rel in todo.values():
        rel.columns = []
    for oid, name, s, i, u in rows:
        cols = todo[oid].columns
        assert cols is not None
        cols.append((name, {"SELECT": s, "INSERT": i, "UPDATE": u}))
