"""Running statements that carry a password verifier without it reaching the server log.

A statement that fails is written to the server log with its full text
(``log_min_error_statement``, default ``error``), and PL/pgSQL adds the text of a failing
``EXECUTE`` to the error context. So a statement carrying a SCRAM verifier is never sent as
text: it is handed over as a bind parameter of ``set_config`` (transaction-local; parameters
are not logged on error unless ``log_parameter_max_length_on_error`` is set) and run by a
``DO`` block that re-raises any error with its SQLSTATE and message only. This works for a
superuser and for a non-superuser administrator alike (``log_min_error_statement`` itself can
be changed only by a superuser).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

__all__ = ["CONCURRENT_ERRORS", "SECRET_SETTING", "run_secret"]

SECRET_SETTING = "tsaccess.secret_statement"  # noqa: S105 (a setting name)

CONCURRENT_ERRORS: tuple[type[psycopg.Error], ...] = (
    psycopg.errors.DuplicateObject,
    psycopg.errors.UniqueViolation,
    psycopg.errors.DuplicateDatabase,
    psycopg.errors.DuplicateSchema,
    psycopg.errors.DuplicateTable,
    psycopg.errors.DuplicateFunction,
)
"""What a step gets when another session created the same object while this plan ran."""

_RUN = sql.SQL(
    "DO $tsaccess$ BEGIN"
    " EXECUTE pg_catalog.current_setting({setting});"
    " PERFORM pg_catalog.set_config({setting}, '', true);"
    " EXCEPTION WHEN OTHERS THEN"
    " PERFORM pg_catalog.set_config({setting}, '', true);"
    " RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = SQLERRM;"
    " END $tsaccess$"
).format(setting=sql.Literal(SECRET_SETTING))


def run_secret(conn: psycopg.Connection[Any], statement: sql.Composable) -> None:
    """Run ``statement`` (inside the caller's transaction) so that its text, which carries a
    secret, appears neither in the statement logged on error nor in the error's context."""
    conn.execute(
        "SELECT pg_catalog.set_config(%s, %s, true)",
        (SECRET_SETTING, statement.as_string(conn)),
    )
    conn.execute(_RUN)
