"""The chain's canonical encoding, version 1 (``docs/audit-integrity.md`` is its specification).

Everything here is pure: bytes in, bytes out. The seal function in the database computes the
same values in SQL (:mod:`tsaccess.audit.integrity.schema`); :func:`tsaccess.audit.prove`
recomputes them here from the rows. Two implementations of one specification, checked against
each other by every proof, and both against a third, independent one in the test suite.

* Values are PostgreSQL's text output of each column (the type's output function) under
  :data:`SETTINGS` — fixed, so the time zone or date style of a session changes nothing.
* An **audit row** is the composite text of its columns in column order (``ROW(c1, ...)::text``,
  the columns recorded in its block); its leaf is ``SHA-256(0x00 || UTF-8(text))``.
* A **per-row data record** (``<data_schema>.<table>``) is ``ROW(C(old_data),
  C(new_data))::text`` where ``C`` drops trailing NULL attributes of the composite (an attribute
  added to the row type later leaves sealed records unchanged); its hash is
  ``SHA-256(UTF-8(text))``. The records of one audit row in one data table form one leaf,
  ``SHA-256(0x01 || table || 0x00 || audit id || 0x00 || their hashes, sorted)``.
* Leaves are ordered by the audit row's ``(txid, id)``, the row's own leaf first, then its
  data groups by table name (bytes), ties by the leaf.
* A **block** is what one seal appended (audit rows with ``lo <= txid < hi``); the head after
  block ``b`` is ``SHA-256(head(b-1) || SHA-256(meta(b)) || SHA-256(leaves(b)))``, from 32 zero
  bytes.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Sequence

__all__ = [
    "CHAIN_FORMAT",
    "GENESIS",
    "LEAF_SIZE",
    "SETTINGS",
    "audit_leaf",
    "block_meta",
    "data_text",
    "group_leaf",
    "next_head",
    "record_hash",
    "record_text",
    "strip_trailing_nulls",
]

CHAIN_FORMAT = "tsaccess-audit-chain/1"
GENESIS = bytes(32)
LEAF_SIZE = 32

SETTINGS: tuple[tuple[str, str], ...] = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
)
"""The session settings every value's text depends on, as the seal and the proof set them."""

_TRAILING_NULLS = re.compile(r",+\)$")
_NEEDS_QUOTES = re.compile(r'[",\\()\t\n\v\f\r ]')  # C isspace(), not Unicode's


def strip_trailing_nulls(composite: str | None) -> str | None:
    """A composite's text without its trailing NULL attributes: ``(1,2,,)`` -> ``(1,2)``."""
    if composite is None:
        return None
    return _TRAILING_NULLS.sub(")", composite)


def _field(value: str | None) -> str:
    if value is None:
        return ""
    if value == "" or _NEEDS_QUOTES.search(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '""') + '"'
    return value


def record_text(values: Sequence[str | None]) -> str:
    """PostgreSQL's composite output (``record_out``) of fields given as text (None: NULL)."""
    return "(" + ",".join(_field(v) for v in values) + ")"


def audit_leaf(row_text: str) -> bytes:
    """The leaf of an audit row, from its composite text."""
    return hashlib.sha256(b"\x00" + row_text.encode("utf-8")).digest()


def data_text(old_data: str | None, new_data: str | None) -> str:
    """The text of a per-row data record, from its composites' texts."""
    return record_text([strip_trailing_nulls(old_data), strip_trailing_nulls(new_data)])


def record_hash(text: str) -> bytes:
    """The hash of a per-row data record, from :func:`data_text`."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def group_leaf(table: str, audit_id: int, hashes: Iterable[bytes]) -> bytes:
    """The leaf of one audit row's data records in one data table."""
    h = hashlib.sha256(b"\x01" + table.encode("utf-8") + b"\x00" + str(audit_id).encode() + b"\x00")
    for d in sorted(hashes):
        h.update(d)
    return h.digest()


def block_meta(
    block: int,
    first_position: int,
    leaf_count: int,
    audit_rows: int,
    data_records: int,
    lo_txid: int,
    hi_txid: int,
    columns: Sequence[str],
) -> bytes:
    """What a block says about itself, as hashed into the head."""
    out = CHAIN_FORMAT.encode() + struct.pack(
        ">7q", block, first_position, leaf_count, audit_rows, data_records, lo_txid, hi_txid
    )
    for c in columns:
        raw = c.encode("utf-8")
        out += struct.pack(">i", len(raw)) + raw
    return out


def next_head(previous: bytes, meta: bytes, leaves: bytes) -> bytes:
    """The head after a block: its meta and its leaves (concatenated) on the previous head."""
    return hashlib.sha256(
        previous + hashlib.sha256(meta).digest() + hashlib.sha256(leaves).digest()
    ).digest()
