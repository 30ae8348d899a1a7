"""The access matrix: every privilege tried as every user, compared with the policy.

For each login user x each managed table x {SELECT, INSERT, UPDATE, DELETE, TRUNCATE}, SELECT
on the per-row audit view, each column recorded per row as seen through that view
(``activity_audit_rows:<table>.<column>``, see :mod:`tsaccess.audit.visibility`), CONNECT to the
database and CREATE in the policy's schema, the matrix holds three answers:

* **expected**: what the policy grants (through the user's group roles; with ``[database]
  public = "keep"``, also what PUBLIC holds);
* **catalog**: what the server's ``has_*_privilege`` functions say;
* **actual**: what happens when the user tries it, over TLS, inside a transaction that is always
  rolled back (SQLSTATE 42501 means denied; success, an integrity or data error means the
  privilege check passed).

Any cell where the three disagree is a failure (``AccessMatrix.ok`` is False).

Against a hot standby (``admin`` connected to one) only the read side is checked: SELECT on
each table and the audit view, and CONNECT; write probes need the primary (a standby refuses
every write before checking privileges), so the matrix has no write cells and says so
(``AccessMatrix.read_only``). With a host list, the users connect to the server ``admin`` landed
on.
Any cell where the three disagree is a failure (``AccessMatrix.ok`` is False). A try that ends
in any other error (lost connection, lock or statement timeout) proves nothing: the cell is an
error (``Cell.error``, ``AccessMatrix.errors``), never counted as allowed.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from tsaccess._log import get_logger
from tsaccess.audit.visibility import row_data_visibility, visibility_catalog
from tsaccess.catalog import read_catalog
from tsaccess.client.connection import connect
from tsaccess.client.tls import TlsStatus, tls_status
from tsaccess.client.topology import in_recovery, same_server
from tsaccess.passwords import Secret
from tsaccess.policy import TABLE_PRIVILEGES, Policy
from tsaccess.verify.matrix import (
    DATABASE_OBJECT,
    LEGEND,  # noqa: F401  re-exported (the matrix's own module is tsaccess.verify.matrix)
    SCHEMA_OBJECT,
    UNTRIED_DETAIL,
    AccessMatrix,
    Cell,
)
from tsaccess.verify.routines import routine_cell, routine_probe
from tsaccess.verify.timescale import ExtraObject, timescale_objects

__all__ = ["AccessMatrix", "Cell", "verify"]

log = get_logger("tsaccess.verify")


def _probe(
    policy: Policy, table: str, privilege: str, last_column: str, columns: tuple[str, ...] = ()
) -> sql.Composed:
    """A statement needing ``privilege`` on the table; with ``columns``, on every column (a
    privilege on some columns only is not the table privilege, and must not pass for it)."""
    return _probe_ident(sql.Identifier(policy.schema, table), privilege, last_column, columns)


def _probe_ident(
    t: sql.Identifier, privilege: str, last_column: str, columns: tuple[str, ...] = ()
) -> sql.Composed:
    """:func:`_probe` for any relation (a chunk, an aggregate)."""
    if columns and privilege in ("SELECT", "INSERT", "UPDATE"):
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        if privilege == "SELECT":
            return sql.SQL("SELECT {} FROM {} WHERE false").format(cols, t)
        if privilege == "INSERT":
            nulls = sql.SQL(", ").join(sql.SQL("NULL") for _ in columns)
            return sql.SQL("INSERT INTO {} ({}) SELECT {} WHERE false").format(t, cols, nulls)
        sets = sql.SQL(", ").join(
            sql.SQL("{} = DEFAULT").format(sql.Identifier(c)) for c in columns
        )
        return sql.SQL("UPDATE {} SET {} WHERE false").format(t, sets)
    if privilege == "SELECT":
        return sql.SQL("SELECT 1 FROM {} WHERE false").format(t)
    if privilege == "INSERT":
        return sql.SQL("INSERT INTO {} DEFAULT VALUES").format(t)
    if privilege == "UPDATE":
        return sql.SQL("UPDATE {} SET {} = DEFAULT WHERE false").format(
            t, sql.Identifier(last_column)
        )
    if privilege == "DELETE":
        return sql.SQL("DELETE FROM {} WHERE false").format(t)
    return sql.SQL("TRUNCATE {}").format(t)


def _extra_cells(
    admin: psycopg.Connection[Any],
    extras: list[ExtraObject],
    users: list[str],
) -> dict[tuple[str, str, str], bool]:
    if not extras:
        return {}
    rows = admin.execute(
        "SELECT u, t, p, pg_catalog.has_table_privilege(u, t, p)"
        " FROM unnest(%s::text[]) u, unnest(%s::text[]) t, unnest(%s::text[]) p"
        " WHERE EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = u)",
        (users, [e.qualified for e in extras], list(TABLE_PRIVILEGES)),
    ).fetchall()
    admin.rollback()
    return {(r[0], r[1], r[2]): bool(r[3]) for r in rows}


# A statement that failed past the privilege check: it was allowed (the probe's own data
# broke a constraint, a value did not fit...). Anything else (lost connection, lock or
# statement timeout, out of memory...) proves nothing: an error of the check.
_PASSED = (psycopg.errors.IntegrityError, psycopg.errors.DataError)


def _try(
    conn: psycopg.Connection[Any], stmt: sql.Composed, lock_timeout: str
) -> tuple[bool | None, str]:
    """Run ``stmt`` in a transaction that is always rolled back: (privilege check passed, why);
    None when the try ended in an error that says nothing about privileges."""
    try:
        conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (lock_timeout,))
        conn.execute(stmt)
        return True, ""
    except psycopg.errors.InsufficientPrivilege as exc:
        return False, f"42501 {exc.diag.message_primary}"
    except _PASSED as exc:
        return True, f"{exc.sqlstate} {exc.diag.message_primary}"  # passed the privilege check
    except psycopg.Error as exc:
        why = exc.diag.message_primary or str(exc).strip() or exc.__class__.__name__
        return None, f"{exc.sqlstate or exc.__class__.__name__} {why}"
    finally:
        if not conn.closed and not conn.broken:
            conn.rollback()


def _row_data_cells(admin: psycopg.Connection[Any], policy: Policy, users: list[str]) -> list[Cell]:
    """One cell per user and column recorded per row: may the user see that column's values
    through the per-row audit view? Only if the user may also read it in the source table."""
    catalog = visibility_catalog(admin, policy, users)
    admin.rollback()
    seen = row_data_visibility(admin, policy, users)
    cells: list[Cell] = []
    for user in users:
        expected = policy.expected_privileges(user)
        reads_view = "SELECT" in expected.get(policy.audit.table, ())
        for t in policy.row_audited:
            for c in t.audited_data_columns:
                actual, detail = seen.get((user, t.name, c), (None, "not tried"))
                cells.append(
                    Cell(
                        user,
                        f"{policy.audit.rows_view}:{t.name}.{c}",
                        "SELECT",
                        reads_view and "SELECT" in expected.get(t.name, ()),
                        catalog.get((user, t.name, c), False),
                        actual,
                        detail,
                        error=actual is None,
                    )
                )
    return cells


def verify(
    admin: psycopg.Connection[Any],
    policy: Policy,
    passwords: Mapping[str, Secret],
    *,
    lock_timeout: str = "5s",
    **conn_params: Any,
) -> AccessMatrix:
    """Build the access matrix.

    Args:
        admin: an admin connection to the policy's database (reads the catalog answers).
        passwords: the login users' passwords, to try each privilege as that user.
        conn_params: how users reach the server (host, port, sslrootcert, ...); ``user``,
            ``password`` and ``dbname`` are set per user.
        lock_timeout: how long one try waits for a lock (a busy table); a try that times out,
            or fails for any reason other than privileges, is an error of the matrix
            (``AccessMatrix.errors``), never counted as allowed.
    """
    users = [u.name for u in policy.users]
    tables = list(policy.managed_tables)
    read_only = in_recovery(admin)  # a hot standby: the read side only
    conn_params = same_server(admin, conn_params)
    privileges = ("SELECT",) if read_only else TABLE_PRIVILEGES
    # the per-row audit view: only SELECT means anything on it (it is not updatable)
    view = policy.audit.rows_view if policy.audited else None
    cat = read_catalog(admin, policy.schema)
    admin.rollback()
    # a table the policy names but the database lacks: every cell on it disagrees, not tried
    objects = [*tables, *([view] if view else [])]
    missing = {t for t in objects if t not in cat.tables}
    absent = f"does not exist in schema {policy.schema}: run tsaccess apply"
    rows = admin.execute(
        "SELECT u, t, p, pg_catalog.has_table_privilege(u, pg_catalog.format('%%I.%%I', %s::text, t), p)"
        " FROM unnest(%s::text[]) u, unnest(%s::text[]) t, unnest(%s::text[]) p"
        " WHERE EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = u)",
        (
            policy.schema,
            users,
            [t for t in objects if t not in missing],
            list(TABLE_PRIVILEGES),
        ),
    ).fetchall()
    catalog_tables = {(r[0], r[1], r[2]): bool(r[3]) for r in rows}
    rows = admin.execute(
        "SELECT u, pg_catalog.has_database_privilege(u, pg_catalog.current_database(), 'CONNECT'),"
        " pg_catalog.has_schema_privilege(u, %s, 'CREATE')"
        " FROM unnest(%s::text[]) u WHERE EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = u)",
        (policy.schema, users),
    ).fetchall()
    admin.rollback()
    catalog_db = {r[0]: (bool(r[1]), bool(r[2])) for r in rows}
    extras = timescale_objects(admin, policy)
    admin.rollback()
    catalog_extra = _extra_cells(admin, extras, users)
    # public = "keep": PUBLIC keeps EXECUTE on the routines (adopted as they are), nothing to try
    routines = routine_probe(admin, users) if policy.public != "keep" else None
    admin.rollback()
    last_col = {name: info.columns[-1].name for name, info in cat.tables.items() if info.columns}
    column_granted = {t for r in policy.roles for t, _, _ in r.column_grants}
    all_cols = {
        name: tuple(c.name for c in info.columns)
        for name, info in cat.tables.items()
        if name in column_granted
    }

    # [database] public = "keep": what PUBLIC holds is expected for everyone, as it is
    kept = policy.public == "keep"
    public_grants = {
        (t, p) for t, info in cat.tables.items() for g, p in info.acl if kept and g == "PUBLIC"
    }
    public_connect = kept and ("PUBLIC", "CONNECT") in cat.database_acl

    cells: list[Cell] = []
    routine_cells: list[Cell] = []
    tls: dict[str, TlsStatus | None] = {}
    for user in users:
        expected = policy.expected_privileges(user)
        can_connect, can_create = catalog_db.get(user, (False, False))
        pw = passwords.get(user)
        conn: psycopg.Connection[Any] | None = None
        connect_detail = ""
        if pw is None:
            connect_detail = UNTRIED_DETAIL
        else:
            params = {
                **conn_params,
                "user": user,
                "password": pw.reveal(),
                "dbname": policy.database,
            }
            try:
                conn = connect(**params)
            except psycopg.OperationalError as exc:
                msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
                connect_detail = msg.replace("connection failed: ", "")[:200]
        tls[user] = tls_status(conn) if conn else None
        has_role = bool(next(u for u in policy.users if u.name == user).roles) or public_connect
        cells.append(
            Cell(
                user,
                DATABASE_OBJECT,
                "CONNECT",
                has_role,
                can_connect,
                None if pw is None else conn is not None,
                connect_detail,
            )
        )
        try:
            for table in tables:
                for priv in privileges:
                    actual: bool | None = None if pw is None else False
                    detail = connect_detail
                    if table in missing:
                        actual, detail = None, f"table {table} {absent}"
                    elif conn is not None:
                        actual, detail = _try(
                            conn,
                            _probe(
                                policy,
                                table,
                                priv,
                                last_col.get(table, "id"),
                                all_cols.get(table, ()),
                            ),
                            lock_timeout,
                        )
                    cells.append(
                        Cell(
                            user,
                            table,
                            priv,
                            priv in expected.get(table, ()) or (table, priv) in public_grants,
                            catalog_tables.get((user, table, priv), False),
                            actual,
                            detail,
                            error=actual is None and conn is not None and table not in missing,
                        )
                    )
            if view is not None:
                actual = None if pw is None else False
                detail = connect_detail
                if view in missing:
                    actual, detail = None, f"view {view} {absent}"
                elif conn is not None:
                    actual, detail = _try(conn, _probe(policy, view, "SELECT", ""), lock_timeout)
                cells.append(
                    Cell(
                        user,
                        view,
                        "SELECT",
                        "SELECT" in expected.get(policy.audit.table, ()),
                        catalog_tables.get((user, view, "SELECT"), False),
                        actual,
                        detail,
                        error=actual is None and conn is not None and view not in missing,
                    )
                )
            for extra in extras:
                for xpriv in extra.privileges:
                    if read_only and xpriv != "SELECT":
                        continue  # a standby refuses every write before any privilege check
                    actual = None if pw is None else False
                    detail = connect_detail
                    if conn is not None:
                        actual, detail = _try(
                            conn,
                            _probe_ident(extra.ident, xpriv, extra.last_column, extra.columns),
                            lock_timeout,
                        )
                    cells.append(
                        Cell(
                            user,
                            extra.label,
                            xpriv,
                            xpriv in extra.expected.get(user, frozenset()),
                            catalog_extra.get((user, extra.qualified, xpriv), False),
                            actual,
                            detail,
                            error=actual is None and conn is not None,
                        )
                    )
            if routines is not None:
                routine_cells.append(routine_cell(conn, user, routines, connect_detail))
            if read_only:
                continue
            actual_create: bool | None = None if pw is None else False
            detail = connect_detail
            if conn is not None:
                probe = sql.SQL("CREATE TABLE {} ()").format(
                    sql.Identifier(policy.schema, f"tsaccess_probe_{secrets.token_hex(4)}")
                )
                actual_create, detail = _try(conn, probe, lock_timeout)
            cells.append(
                Cell(
                    user,
                    SCHEMA_OBJECT,
                    "CREATE",
                    False,
                    can_create,
                    actual_create,
                    detail,
                    error=actual_create is None and conn is not None,
                )
            )
        finally:
            if conn is not None:
                conn.close()
    if view is not None and view not in missing and not read_only:  # the probe row is a write
        cells += _row_data_cells(admin, policy, users)
    matrix = AccessMatrix(
        policy.database, policy.schema, tuple(cells), tls, read_only, tuple(routine_cells)
    )
    log.info(
        "access matrix",
        database=policy.database,
        checks=len(cells),
        disagreements=len(matrix.disagreements),
        errors=len(matrix.errors),
    )
    return matrix
