"""Catalog facts a check loads only when a statement needs them (:class:`Fetch`): the role's
attributes and memberships, its database privileges, the settings, the owners of objects the
snapshot does not hold (indexes, functions, types, databases)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from tsaccess.preflight.snapshot import Fetch, Snapshot

__all__ = ["PREDEFINED", "RESTRICTED_SETTINGS", "owner_of", "session_facts", "settings"]

PREDEFINED = (
    "pg_read_all_settings",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_checkpoint",
)

RESTRICTED_SETTINGS = frozenset(
    {
        "config_file", "data_directory", "dynamic_library_path", "extension_destdir",
        "external_pid_file", "hba_file", "ident_file", "jit_provider", "krb_server_keyfile",
        "log_directory", "log_filename", "output_plugin_libraries", "primary_conninfo",
        "session_preload_libraries", "shared_preload_libraries", "ssl_ciphers",
        "ssl_dh_params_file", "ssl_ecdh_curve", "ssl_max_protocol_version",
        "ssl_min_protocol_version", "ssl_passphrase_command", "timescaledb.enable_cagg_create",
        "timescaledb.enable_hypertable_compression", "timescaledb.enable_hypertable_create",
        "timescaledb.enable_policy_create", "unix_socket_directories", "local_preload_libraries",
        "archive_command", "restore_command", "archive_cleanup_command", "recovery_end_command",
        "ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_crl_file", "ssl_crl_dir",
        "primary_slot_name", "promote_trigger_file",
    }
)  # fmt: skip
"""Settings only superusers and members of ``pg_read_all_settings`` may read (measured on
PostgreSQL 15 with TimescaleDB 2.27: the settings an unprivileged role does not see in
``pg_settings``, less those nobody sees there)."""


def _who(snap: Snapshot) -> sql.Composable:
    role = snap.for_role
    return sql.SQL("") if role is None else sql.SQL("{}, ").format(sql.Literal(role))


def _member(snap: Snapshot) -> sql.Composable:
    """Whose memberships ``SET ROLE`` checks: the session user (or the role of a snapshot
    taken for another role)."""
    return sql.SQL("session_user") if snap.login is None else sql.Literal(snap.login)


def session_facts(snap: Snapshot) -> dict[str, Any]:
    """The role's attributes, database privileges, predefined roles and the roles it may
    ``SET ROLE`` to (loaded once per snapshot)."""
    try:
        found: dict[str, Any] = snap.data("session")
        return found
    except KeyError:
        pass
    who = _who(snap)
    role = sql.Literal(snap.for_role) if snap.for_role else sql.SQL("current_user")
    predefined = [
        sql.SQL("pg_catalog.pg_has_role({}{}, 'USAGE')").format(who, sql.Literal(p))
        for p in PREDEFINED
    ]
    query = sql.SQL(
        "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb,"
        " (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = {member}),"
        " pg_catalog.has_database_privilege({who}pg_catalog.current_database(), 'CREATE'),"
        " pg_catalog.has_database_privilege({who}pg_catalog.current_database(), 'TEMP'),"
        " (SELECT reset_val FROM pg_catalog.pg_settings WHERE name = 'role'),"
        " (SELECT reset_val FROM pg_catalog.pg_settings WHERE name = 'search_path'),"
        " (SELECT pg_catalog.array_agg(rolname::text) FROM pg_catalog.pg_roles),"
        " (SELECT pg_catalog.array_agg(rolname::text) FROM pg_catalog.pg_roles"
        "   WHERE pg_catalog.pg_has_role({member}, oid, 'MEMBER')),"
        " pg_catalog.pg_has_role({who}(SELECT datdba FROM pg_catalog.pg_database"
        "   WHERE datname = pg_catalog.current_database()), 'USAGE'), {predefined}"
        " FROM pg_catalog.pg_roles r WHERE r.rolname = {role}"
    ).format(who=who, member=_member(snap), role=role, predefined=sql.SQL(", ").join(predefined))

    def store(rows: list[tuple[Any, ...]]) -> None:
        r: tuple[Any, ...] = rows[0] if rows else (None,) * (11 + len(PREDEFINED))
        snap.extra["session"] = {
            "superuser": bool(r[0]),
            "createrole": bool(r[1]),
            "createdb": bool(r[2]),
            "session_superuser": bool(r[3]),
            "db_create": bool(r[4]),
            "db_temp": bool(r[5]),
            "reset_role": r[6] or "none",
            "reset_path": r[7] or "",
            "roles": frozenset(r[8] or ()),
            "member_of": frozenset(r[9] or ()),
            "db_owner": bool(r[10]),
            **{p: bool(v) for p, v in zip(PREDEFINED, r[11:], strict=False)},
        }

    raise Fetch("session", query, None, store)


def settings(snap: Snapshot) -> dict[str, str]:
    """The settings the role sees, with their context (``user``, ``superuser``...)."""
    try:
        found: dict[str, str] = snap.data("settings")
        return found
    except KeyError:
        pass

    def store(rows: list[tuple[Any, ...]]) -> None:
        snap.extra["settings"] = {name: context for name, context in rows}

    raise Fetch(
        "settings", sql.SQL("SELECT name, context FROM pg_catalog.pg_settings"), None, store
    )


_OWNER_SQL = {
    "function": """
SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_has_role({who}p.proowner, 'USAGE'))
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = %(name)s
   AND (n.nspname = %(schema)s OR (%(schema)s IS NULL AND pg_catalog.pg_function_is_visible(p.oid)))""",
    "type": """
SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_has_role({who}t.typowner, 'USAGE'))
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typname = %(name)s
   AND (n.nspname = %(schema)s OR (%(schema)s IS NULL AND pg_catalog.pg_type_is_visible(t.oid)))""",
    "database": """
SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_has_role({who}d.datdba, 'USAGE'))
  FROM pg_catalog.pg_database d WHERE d.datname = %(name)s""",
    "relation": """
SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_has_role({who}c.relowner, 'USAGE')),
       pg_catalog.min(c.relkind::text)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname = %(name)s
   AND (n.nspname = %(schema)s OR (%(schema)s IS NULL AND pg_catalog.pg_table_is_visible(c.oid)))""",
}


def owner_of(snap: Snapshot, target: str, schema: str | None, name: str) -> tuple[int, int, str]:
    """(how many objects the name matches, how many of them the role owns, the relation kind)
    for an object the snapshot does not hold."""
    key = f"owner\x00{target}\x00{schema}\x00{name}"
    try:
        found: tuple[int, int, str] = snap.data(key)
        return found
    except KeyError:
        pass
    query = sql.SQL(_OWNER_SQL[target]).format(who=_who(snap))

    def store(rows: list[tuple[Any, ...]]) -> None:
        r = rows[0] if rows else (0, 0, "")
        snap.extra[key] = (int(r[0] or 0), int(r[1] or 0), str(r[2] or "") if len(r) > 2 else "")

    raise Fetch(key, query, {"name": name, "schema": schema}, store)
