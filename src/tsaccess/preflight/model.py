"""What pre-flight reasons about: the privileges a statement needs, in tsaccess's own types.

Produced by :mod:`tsaccess.preflight.analysis` (the only module that sees sqlglot's trees) and
:mod:`tsaccess.preflight.utility` (commands read from their tokens), consumed by
:mod:`tsaccess.preflight.evaluate` and :mod:`tsaccess.preflight.checker`.

When a need is checked by the server decides how a missing one is confirmed: ``plan`` needs
(table and column privileges, ``EXECUTE``, schema ``USAGE`` of a name) are checked when the
statement is planned, so ``EXPLAIN`` of the statement confirms them without running it;
``run`` needs (a sequence's ``USAGE`` in ``nextval``, a restricted setting in
``current_setting``) are checked when the expression is evaluated, which only running would
show: they count only where the statement evaluates them for certain (``certain``), else the
verdict is deferred; ``command`` needs (ownership, membership, ``CREATE``...) are the first check
of a command ``EXPLAIN`` cannot take, confirmed with the privilege functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ALL",
    "OWNER_FUNCTIONS",
    "RESET_ROLE",
    "RUNTIME_FUNCTIONS",
    "SESSION_ROLE",
    "Analysis",
    "ColNeed",
    "Derived",
    "Effect",
    "JoinNeed",
    "Need",
    "ObjNeed",
    "Priv",
    "Renamed",
    "SourceRef",
    "Statement",
    "TableRef",
]

Priv = Literal["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]


@dataclass(frozen=True)
class TableRef:
    """A table as the statement names it: ``schema`` None when unqualified (resolved through
    the session's ``search_path`` at check time)."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


ALL = "*"  # marker: every column of the table
RESET_ROLE = ""  # Effect.role: RESET ROLE (the session's default role)
SESSION_ROLE = "\x00"  # Effect.role: SET ROLE NONE (the login user)


@dataclass(frozen=True)
class Renamed:
    """A table whose first columns are renamed in the FROM list (``t AS x(a, b)``)."""

    table: TableRef
    renames: tuple[str, ...]


@dataclass(frozen=True)
class Derived:
    """A source that is no table (subquery, function, ``VALUES``) whose output column names are
    known: a column it does not have is looked for further out."""

    columns: frozenset[str]


SourceRef = TableRef | Renamed | Derived | None
"""A source of a scope level; None: a source whose columns are unknown."""


@dataclass(frozen=True)
class Need:
    """A privilege on a table: ``columns`` None = table or any column; ``(ALL,)`` = every
    column; ``first_n`` = the first N columns (INSERT without a column list)."""

    privilege: Priv
    table: TableRef
    columns: frozenset[str] | None = None
    first_n: int = 0
    positions: tuple[int, ...] = ()
    """Columns by position (0: the first), for columns renamed by ``t AS x(a, b)``."""
    rows: bool = False
    """INSERT of ``VALUES`` or ``DEFAULT VALUES``: at least one row, so the defaults of the
    columns it leaves out (``nextval`` of a sequence) are evaluated for certain."""


@dataclass(frozen=True)
class ColNeed:
    """An unqualified column, attributed at check time to the innermost source that has it."""

    privilege: Priv
    column: str
    levels: tuple[tuple[SourceRef, ...], ...]
    """Candidate sources per scope level, innermost first."""
    aliases: tuple[tuple[str, ...], ...] = ()
    """The sources' names per level, as ``levels``: a name that is no column of any source is
    a whole-row reference to the source of that name (``SELECT t FROM t``, ``row_to_json(f)``),
    which needs the privilege on every column."""
    ghost: int = 0
    """How many of the innermost levels belong to a subquery the server folds away (under
    ``false AND``...): a column found there needs nothing, one found further out does."""


@dataclass(frozen=True)
class JoinNeed:
    """``USING (c, ...)`` or ``NATURAL`` (``columns`` None: the columns both sides have): the
    join columns are read on both sides; resolved against the catalog at check time."""

    privilege: Priv
    left: tuple[SourceRef, ...]
    """The sources joined so far."""
    right: tuple[SourceRef, ...]
    columns: frozenset[str] | None = None


ObjKind = Literal[
    "schema",
    "sequence",
    "function",
    "setting",
    "role",
    "database",
    "owner",
    "attribute",
    "predefined",
    "lock",
    "grant",
]


@dataclass(frozen=True)
class ObjNeed:
    """A privilege on something other than a table's columns, checked with a privilege function.

    ``kind`` and ``privilege``: ``schema`` USAGE / CREATE; ``sequence`` USAGE (``nextval``),
    UPDATE (``setval``), SELECT (``currval``); ``function`` EXECUTE (``name`` may match several
    overloads); ``setting`` READ (``current_setting``, ``SHOW``) / SET; ``role`` MEMBER
    (``SET ROLE``); ``database`` CREATE / TEMP; ``owner`` OWNER of a ``relation``, ``schema``,
    ``function``, ``type`` or ``database`` (``target``; ``privilege`` the relation kinds the
    command accepts, for relations); ``attribute`` CREATEROLE / CREATEDB; ``predefined`` USAGE
    of a predefined role (``pg_write_server_files`` for ``COPY ... TO 'file'``,
    ``pg_checkpoint``...); ``lock`` the lock mode of ``LOCK`` on a relation; ``grant`` some
    privilege on a relation (``GRANT``/``REVOKE`` by a role with none at all fails)."""

    kind: ObjKind
    privilege: str
    name: str
    schema: str | None = None
    when: Literal["plan", "run", "command"] = "plan"
    certain: bool = True
    """For ``run`` needs: the statement evaluates it at least once, whatever the data."""
    target: str = ""
    """For ``owner``: what is owned (``relation``, ``schema``, ``function``, ``type``,
    ``database``)."""


@dataclass(frozen=True)
class Effect:
    """What a statement changes for the statements after it in the same string."""

    role: str | None = None
    """``SET ROLE`` / ``set_config('role', ...)``: the new role (:data:`RESET_ROLE`: back to
    the session's default, :data:`SESSION_ROLE`: ``SET ROLE NONE``)."""
    search_path: str | None = None
    """``SET search_path``: the new value as the server reads it (``""``: the default)."""
    prepared: tuple[str, str] | None = None
    """``PREPARE name AS stmt``: (name, the statement's text)."""
    deallocated: str | None = None
    """``DEALLOCATE name`` (``"*"``: ALL, or ``DISCARD ALL``)."""
    replayable: bool = False
    """The statement only changes the role or ``search_path`` (a probe may replay it inside a
    savepoint to confirm a later statement's refusal)."""
    opaque: bool = False
    """It may change the role, ``search_path`` or privileges in a way pre-flight cannot follow
    (a computed ``set_config``, DDL, ``GRANT``...): later statements are not decided."""


@dataclass(frozen=True)
class Statement:
    """One statement of a text: what it needs, or why the server decides."""

    text: str
    """The statement as written (a slice of the text)."""
    needs: tuple[Need | ColNeed | JoinNeed | ObjNeed, ...] = ()
    deferred: str = ""
    """Why the analysis is not sure (the server decides); ``needs`` may still hold what is
    certain (a missing one still refuses the statement)."""
    caveats: tuple[str, ...] = ()
    """What the server checks that this analysis does not (view base tables...)."""
    explain: str | None = None
    """The statement ``EXPLAIN`` confirms a refusal with (None: not explainable)."""
    effect: Effect = field(default_factory=Effect)
    executes: str | None = None
    """``EXECUTE name``: the prepared statement it runs."""
    tx_block: bool = False
    """The command refuses to run outside a transaction block (``LOCK``, ``DECLARE``): in
    autocommit, a lone such statement fails before its privileges are checked."""
    no_tx_block: bool = False
    """The command refuses to run inside a transaction block (``CREATE DATABASE``...)."""


@dataclass(frozen=True)
class Analysis:
    """The result of :func:`tsaccess.preflight.analyze`: what a statement text needs, or why
    it is deferred."""

    needs: tuple[Need | ColNeed | JoinNeed | ObjNeed, ...] = ()
    """Every privilege the statements need."""
    deferred: str = ""
    """Why the analysis is not sure (the server decides)."""
    statements: int = 1
    """How many statements the text holds."""
    caveats: tuple[str, ...] = ()
    """What the server checks that this analysis does not (function bodies...)."""
    parts: tuple[Statement, ...] = ()
    """The statements, one by one (empty when the text could not be split)."""


RUNTIME_FUNCTIONS = frozenset(
    {
        # checked when called, by their arguments (sequences, settings: see analysis.calls)
        "nextval", "setval", "currval", "lastval", "current_setting", "set_config",
        "pg_sequence_last_value", "pg_sequence_parameters",
        # queries run from a string (their tables are checked when they run)
        "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
        "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
        "cursor_to_xml", "cursor_to_xmlschema", "schema_to_xml", "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xmlschema",
        "database_to_xml_and_xmlschema", "ts_stat", "ts_rewrite",
        # checks of the role or object they act on
        "pg_cancel_backend", "pg_terminate_backend", "pg_signal_backend",
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file",
        "lo_open", "lo_get", "lo_put", "lo_unlink", "lo_import", "lo_export", "lo_truncate",
        "lo_from_bytea", "lo_create", "lo_creat", "loread", "lowrite", "lo_lseek", "lo_tell",
        "pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
        "pg_drop_replication_slot", "pg_replication_slot_advance",
        "pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot",
        "pg_logical_slot_get_changes", "pg_logical_slot_peek_changes",
        "pg_logical_slot_get_binary_changes", "pg_logical_slot_peek_binary_changes",
        "pg_logical_emit_message", "pg_import_system_collations", "pg_get_wal_replay_pause_state",
    }
)  # fmt: skip
"""``pg_catalog`` functions with privilege checks of their own, made when they run: a call
is never "allowed" for certain unless pre-flight models it (sequences, settings)."""

OWNER_FUNCTIONS = frozenset(
    {
        "drop_chunks", "add_retention_policy", "remove_retention_policy",
        "add_compression_policy", "compress_chunk", "decompress_chunk",
        "set_chunk_time_interval", "add_dimension", "add_reorder_policy",
        "add_continuous_aggregate_policy", "refresh_continuous_aggregate",
        "convert_to_columnstore", "convert_to_rowstore", "add_columnstore_policy",
    }
)  # fmt: skip
"""TimescaleDB functions whose one privilege check is the ownership of the hypertable, chunk or
continuous aggregate named by their first argument (measured: ``must be owner of hypertable``)."""
