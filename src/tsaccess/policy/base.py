"""The vocabulary of a policy and the checks of single values: privileges, modes, column types,
default functions, intervals, identifiers.

The bottom of :mod:`tsaccess.policy`: the parts, the validators and the TOML loader all check
against it, so a policy built in Python and one loaded from TOML pass the same checks.
"""

from __future__ import annotations

import re
from typing import Literal

from tsaccess.errors import PolicyError

__all__ = [
    "BASE_TYPES",
    "DEFAULT_FUNCS",
    "MAX_IDENT",
    "TABLE_PRIVILEGES",
    "TIME_TYPES",
    "TYPE_RE",
    "AuditMode",
    "ChunkPrivileges",
    "Privilege",
    "PublicMode",
    "TimescaleMode",
    "canonical_type",
    "check_column",
    "check_connection_limit",
    "check_ident",
    "check_interval",
]

Privilege = Literal["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]


TABLE_PRIVILEGES: tuple[Privilege, ...] = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")


AuditMode = Literal["statement", "row", "off"]


TimescaleMode = Literal["prefer", "require", "off"]


PublicMode = Literal["revoke", "keep"]
"""``[database] public``: ``revoke`` (PUBLIC loses its privileges on the database, the schema
and the policy's tables) or ``keep`` (they are left as they are: adopting an existing
database)."""

ChunkPrivileges = Literal["select", "copied"]
"""``[database] chunk_privileges``: ``select`` (chunks get their hypertable's SELECT grants
only; writes go through the hypertable) or ``copied`` (chunks keep what TimescaleDB copies from
the hypertable; no table audited or sliced)."""

MAX_IDENT = 63
_RESERVED_ROLES = {"public", "none", "current_user", "session_user", "current_role"}
TIME_TYPES = {
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
BASE_TYPES = TIME_TYPES | {
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
TYPE_RE = re.compile(
    r"^(?P<base>[a-z][a-z0-9 ]*?)\s*(?:\(\s*(?P<p>\d+)\s*(?:,\s*(?P<s>\d+)\s*)?\))?"
    r"(?P<arr>\[\])?$"
)
DEFAULT_FUNCS = {
    "now()": "now()",
    "current_timestamp": "CURRENT_TIMESTAMP",
    "gen_random_uuid()": "gen_random_uuid()",
}


INTERVAL_RE = re.compile(r"\d+\s*(second|minute|hour|day|week|month)s?")
_INT4_MAX = 2**31 - 1


def canonical_type(spec: str) -> str | None:
    """``spec`` as one of the allowed column types (``numeric(5,2)``, ``text[]``), or None.

    The one check of a column type, whatever built the column (TOML or Python): only a known
    base type with an optional ``(precision[, scale])`` and ``[]`` reaches SQL.
    """
    tm = TYPE_RE.match(" ".join(spec.strip().lower().split()))
    if not tm:
        return None
    base = tm.group("base").strip()
    arr = "[]" if tm.group("arr") else ""
    if (base + arr) not in BASE_TYPES and base not in BASE_TYPES:
        return None
    typ = base
    if tm.group("p"):
        typ += f"({tm.group('p')}" + (f",{tm.group('s')}" if tm.group("s") else "") + ")"
    return typ + arr


def check_column(
    name: object,
    type_: object,
    nullable: object,
    default: object,
    default_function: object,
    path: str,
    source: str,
) -> str:
    """Check a column's fields; returns its canonical type. Raises :class:`PolicyError`."""
    check_ident(name, path, source)
    canonical = canonical_type(type_) if isinstance(type_, str) else None
    if canonical is None:
        raise PolicyError(
            f"unsupported column type {type_!r}; use one of: {', '.join(sorted(BASE_TYPES))}"
            " (with (precision[, scale]) where it applies); nullability and defaults are "
            "separate fields",
            path=f"{path}.type",
            source=source,
        )
    if not isinstance(nullable, bool):
        raise PolicyError("nullable must be true or false", path=f"{path}.nullable", source=source)
    if default is not None and (
        not isinstance(default, str | int | float | bool)
        or (isinstance(default, str) and "\x00" in default)
    ):
        raise PolicyError(
            f"default {default!r} is not a string, number or boolean literal (without NUL)",
            path=f"{path}.default",
            source=source,
        )
    if default_function is not None:
        if default_function not in DEFAULT_FUNCS.values():
            raise PolicyError(
                f"default_function {default_function!r} is not allowed; use one of "
                f"{', '.join(DEFAULT_FUNCS.values())}",
                path=f"{path}.default_function",
                source=source,
            )
        if default is not None:
            raise PolicyError(
                "a column has a default or a default_function, not both",
                path=f"{path}.default",
                source=source,
            )
    return canonical


def check_interval(value: object, path: str, source: str) -> None:
    """A chunk interval: None or text like ``7 days`` / ``1 hour``."""
    if value is not None and not (isinstance(value, str) and INTERVAL_RE.fullmatch(value)):
        raise PolicyError(
            f'chunk_interval {value!r} must look like "7 days" or "1 hour"',
            path=path,
            source=source,
        )


def check_connection_limit(value: object, path: str, source: str) -> None:
    """-1 (no limit) or a connection count PostgreSQL accepts."""
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= _INT4_MAX:
        raise PolicyError(
            f"connection_limit {value!r} must be an integer from -1 (no limit) to {_INT4_MAX}",
            path=path,
            source=source,
        )


def check_ident(name: object, path: str, source: str, *, role: bool = False) -> str:
    if not isinstance(name, str) or not name:
        raise PolicyError("must be a non-empty string", path=path, source=source)
    if "\x00" in name:
        raise PolicyError("contains a NUL character; remove it", path=path, source=source)
    if len(name.encode("utf-8")) > MAX_IDENT:
        raise PolicyError(
            f"{name[:20]!r}... is longer than {MAX_IDENT} bytes; PostgreSQL would truncate it "
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
