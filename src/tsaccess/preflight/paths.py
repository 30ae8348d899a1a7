"""Search paths: the ``search_path`` setting read as the server reads it, the schemas it gives
a role (``current_schemas(true)`` as that role's session would compute it), and the setting a
login's own sessions start with (its ``ALTER ROLE ... SET search_path``)."""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import sql

__all__ = ["login_path", "path_for", "split_path"]

# its setting in this database, its own, the database's, else the server's default
_LOGIN_PATH = """coalesce((SELECT substr(coalesce(
  (SELECT s FROM pg_catalog.pg_db_role_setting d, pg_catalog.unnest(d.setconfig) s
    WHERE d.setrole = r.oid AND d.setdatabase = db.oid AND s LIKE 'search\\_path=%'),
  (SELECT s FROM pg_catalog.pg_db_role_setting d, pg_catalog.unnest(d.setconfig) s
    WHERE d.setrole = r.oid AND d.setdatabase = 0 AND s LIKE 'search\\_path=%'),
  (SELECT s FROM pg_catalog.pg_db_role_setting d, pg_catalog.unnest(d.setconfig) s
    WHERE d.setrole = 0 AND d.setdatabase = db.oid AND s LIKE 'search\\_path=%'),
  'search_path=' || (SELECT boot_val FROM pg_catalog.pg_settings WHERE name = 'search_path')), 13)
  FROM pg_catalog.pg_roles r, pg_catalog.pg_database db
 WHERE r.rolname = {login} AND db.datname = pg_catalog.current_database()), '')"""


def login_path(login: str) -> sql.Composable:
    """An expression: the ``search_path`` setting ``login``'s sessions start with in the
    current database (its role settings for this database, then its own, then the
    database's, else the server's built-in default; '' for no such role). A setting in
    ``postgresql.conf`` is not visible to the catalog: the built-in default stands for it."""
    return sql.SQL(_LOGIN_PATH).format(login=sql.Literal(login))


def path_for(setting: str, role: str, usage: Mapping[str, bool], temp: str) -> tuple[str, ...]:
    """``current_schemas(true)`` for ``role``: the setting's schemas that exist and the role
    may use (``usage``: every schema, whether the role has ``USAGE``; ``$user``: the role's
    own), each once, ``pg_catalog`` and the temporary schema first unless placed."""
    names: list[str] = []
    for part in split_path(setting):
        name = role if part == "$user" else "" if part == "pg_temp" else part
        name = name or temp
        usable = name in usage and (usage[name] or name == temp)
        if name and usable and name not in names:
            names.append(name)
    if "pg_catalog" not in names:
        names.insert(0, "pg_catalog")
    if temp and temp not in names:
        names.insert(0, temp)
    return tuple(names)


def split_path(setting: str) -> list[str]:
    """The names of a ``search_path`` setting (quoted names as written, others lowercased)."""
    out: list[str] = []
    cur = ""
    quoted = False
    i = 0
    while i < len(setting):
        ch = setting[i]
        if ch == '"':
            if quoted and setting[i + 1 : i + 2] == '"':
                cur += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "," and not quoted:
            out.append(cur.strip() if not cur.startswith('"') else cur)
            cur = ""
        elif quoted or not ch.isspace():
            cur += ch if quoted else ch.lower()
        i += 1
    out.append(cur)
    return [p for p in (s.strip() for s in out) if p]
