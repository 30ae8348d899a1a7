"""Read-only, set-based reads of the live catalog: PostgreSQL's (:mod:`~tsaccess.catalog.postgres`)
and TimescaleDB's (:mod:`~tsaccess.catalog.timescale`)."""

from tsaccess.catalog.postgres import (
    AuditDataInfo,
    CatalogSnapshot,
    ColumnInfo,
    DataRelation,
    FunctionInfo,
    RoleInfo,
    TableInfo,
    TimescaleState,
    read_catalog,
    timescaledb_state,
)
from tsaccess.catalog.timescale import (
    AggregateInfo,
    ChunkInfo,
    JobInfo,
    TimescaleCatalog,
    read_timescale,
)

__all__ = [
    "AggregateInfo",
    "AuditDataInfo",
    "CatalogSnapshot",
    "ChunkInfo",
    "ColumnInfo",
    "DataRelation",
    "FunctionInfo",
    "JobInfo",
    "RoleInfo",
    "TableInfo",
    "TimescaleCatalog",
    "TimescaleState",
    "read_catalog",
    "read_timescale",
    "timescaledb_state",
]
