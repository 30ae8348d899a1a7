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

from tsaccess.policy.loading import load_policy, parse_policy
from tsaccess.policy.model import (
    TABLE_PRIVILEGES,
    Aggregate,
    AggregateColumn,
    AuditMode,
    AuditSettings,
    Column,
    Compression,
    GroupRole,
    Policy,
    Privilege,
    Retention,
    RowSlice,
    Table,
    TimescaleMode,
    User,
    password_env_var,
)

__all__ = [
    "TABLE_PRIVILEGES",
    "Aggregate",
    "AggregateColumn",
    "AuditMode",
    "AuditSettings",
    "Column",
    "Compression",
    "GroupRole",
    "Policy",
    "Privilege",
    "Retention",
    "RowSlice",
    "Table",
    "TimescaleMode",
    "User",
    "load_policy",
    "parse_policy",
    "password_env_var",
]
