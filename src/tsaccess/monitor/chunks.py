"""Chunks that vanish without an audit row, and the writes the audit trail should mirror.

``drop_chunks`` called by a table owner fires no trigger: the rows are gone and the audit trail
says nothing (``docs/timescaledb.md``). The exporter therefore remembers which chunks each
policy hypertable has (TimescaleDB's chunk catalog, readable by anyone) and, when one is gone,
looks for the ``DROP CHUNK`` row that the audited retention job or the ``DROP TABLE`` event
trigger writes for it: a transaction that dropped it after the previous look has a transaction
id at or above that look's ``pg_snapshot_xmin``, so only those rows are read (the ``txid``
index). A chunk gone without such a row counts as dropped outside retention, unrecorded.

What it remembers lives in memory, and in ``state_file`` when one is given (JSON, rewritten
after each collection that changed it): with it a restart neither loses the count nor misses a
drop that happened while the exporter was down.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tsaccess._files import write_private
from tsaccess.audit.templates import display_name
from tsaccess.errors import TsaccessError
from tsaccess.policy import Policy

__all__ = ["ChunkWatch", "TableWrites"]

_CHUNKS_SQL = (
    "SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint,"
    " (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(h.table_name,"
    "   pg_catalog.format('%%I.%%I', c.schema_name, c.table_name))), '[]')"
    "  FROM _timescaledb_catalog.chunk c"
    "  JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id"
    "  WHERE h.schema_name = %s AND h.table_name = ANY(%s))"
)
_DROPPED_SQL = (
    "SELECT pg_catalog.substring(a.description, '^DROP CHUNK (\\S+) ') FROM {} a"
    " WHERE a.operation = 'DROP CHUNK' AND a.txid >= %s"
)
_NAME = re.compile(r'^"?([^".]+)"?\."?([^".]+)"?$')


def _plain(name: str) -> str:
    """``schema.chunk`` without identifier quotes (the catalog and the audit rows agree)."""
    m = _NAME.match(name)
    return f"{m.group(1)}.{m.group(2)}" if m else name


class ChunkWatch:
    """The chunks of the policy's hypertables, between collections."""

    def __init__(self, policy: Policy, state_file: Path | None = None) -> None:
        self._schema = policy.schema
        self._tables = [t.name for t in policy.tables if t.hypertable]
        self._dropped_sql = sql.SQL(_DROPPED_SQL).format(
            sql.Identifier(policy.schema, policy.audit.table)
        )
        self._audited = policy.audited
        self._state_file = state_file
        self._known: dict[str, str] | None = None  # chunk -> table
        self._xmin = 0
        self.unrecorded: Counter[str] = Counter()
        """table -> chunks gone without a DROP CHUNK row."""
        self._load()

    def _load(self) -> None:
        if self._state_file is None or not self._state_file.exists():
            return
        try:
            data = json.loads(self._state_file.read_text(encoding="utf-8"))
            self._known = {str(k): str(v) for k, v in data["chunks"].items()}
            self._xmin = int(data["xmin"])
            self.unrecorded = Counter({str(k): int(v) for k, v in data["unrecorded"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TsaccessError(
                f"state file {self._state_file} is not one tsaccess monitor wrote "
                f"({exc.__class__.__name__}); give another --state-file, or delete it (drops "
                "while no exporter ran are then not seen)"
            ) from None

    def _save(self) -> None:
        if self._state_file is None:
            return
        data = {"chunks": self._known, "xmin": self._xmin, "unrecorded": dict(self.unrecorded)}
        tmp = self._state_file.with_name(self._state_file.name + f".{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        write_private(tmp, json.dumps(data, sort_keys=True))
        os.replace(tmp, self._state_file)

    def read(self, conn: psycopg.Connection[Any], timescaledb: bool) -> Counter[str]:
        """Look again; returns table -> chunks gone unrecorded so far (a counter)."""
        if not self._tables or not timescaledb:
            return self.unrecorded
        row = conn.execute(_CHUNKS_SQL, (self._schema, self._tables)).fetchone()
        assert row is not None
        xmin, items = int(row[0]), row[1]
        now = {_plain(chunk): str(table) for table, chunk in items}
        changed = self._known != now
        if self._known is not None:
            gone = {c: t for c, t in self._known.items() if c not in now}
            if gone:
                recorded: set[str] = set()
                if self._audited:
                    recorded = {
                        _plain(str(r[0]))
                        for r in conn.execute(self._dropped_sql, (self._xmin,)).fetchall()
                        if r[0]
                    }
                for chunk, table in gone.items():
                    if chunk not in recorded:
                        self.unrecorded[table] += 1
        self._known, self._xmin = now, xmin
        if changed:
            self._save()
        return self.unrecorded


_WRITES_SQL = (
    "SELECT t.table_name, k.oid::bigint,"
    " pg_catalog.pg_stat_get_tuples_inserted(k.oid) + pg_catalog.pg_stat_get_tuples_updated(k.oid)"
    " + pg_catalog.pg_stat_get_tuples_deleted(k.oid)"
    " FROM (SELECT n AS table_name, %(schema)s::text AS rel_schema, n AS rel"
    "  FROM pg_catalog.unnest(%(tables)s::text[]) n{chunks}) t"
    " JOIN pg_catalog.pg_namespace n ON n.nspname = t.rel_schema"
    " JOIN pg_catalog.pg_class k ON k.relnamespace = n.oid AND k.relname = t.rel"
)
_WRITES_CHUNKS = (
    "  UNION ALL SELECT h.table_name, c.schema_name, c.table_name"
    "  FROM _timescaledb_catalog.chunk c"
    "  JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id"
    "  WHERE h.schema_name = %(schema)s AND h.table_name = ANY(%(tables)s::text[])"
)


class TableWrites:
    """Rows written to each audited table (and its chunks) by the server's statistics, as a
    counter that never goes down: a dropped chunk takes its statistics with it, so the
    increases of each relation are added up instead of summing the statistics."""

    def __init__(self, policy: Policy) -> None:
        self._schema = policy.schema
        self._tables = [t.name for t in policy.tables if t.audit != "off"]
        self._label = {t: display_name(policy, t) for t in self._tables}
        self._last: dict[int, int] = {}
        self.total: Counter[str] = Counter()

    def read(self, conn: psycopg.Connection[Any], timescaledb: bool) -> Counter[str]:
        if not self._tables:
            return self.total
        query = _WRITES_SQL.format(chunks=_WRITES_CHUNKS if timescaledb else "")
        rows = conn.execute(query, {"schema": self._schema, "tables": self._tables}).fetchall()
        now: dict[int, int] = {}
        for table, oid, n in rows:
            now[int(oid)] = int(n)
            before = self._last.get(int(oid), 0)
            label = self._label.get(str(table), str(table))
            self.total[label] += max(0, int(n) - before)  # 0 after a statistics reset
        self._last = now
        for t in self._tables:
            self.total[self._label[t]] += 0
        return self.total
