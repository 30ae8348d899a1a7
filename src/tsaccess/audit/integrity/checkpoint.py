"""Signed checkpoints: what a seal writes outside the database, and how a proof reads them.

A checkpoint is one line of canonical JSON (keys sorted, no spaces, ASCII) ending in a newline:
the database's identity (system identifier, name, oid), the audit table, the block it seals
with that block's own description (so a chain table that was deleted can still be followed), the
position reached (leaves sealed in all), the rows and records sealed in all, the head, the times
and the signing key's id, and an Ed25519 signature (hex) over the same JSON without the
signature. A file is accepted only if it is exactly that canonical form and the signature
verifies: one changed byte anywhere refuses it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import psycopg

from tsaccess.audit.integrity.keys import SigningKey, VerifyKey
from tsaccess.errors import AuditChainError

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "DatabaseIdentity",
    "database_identity",
    "read_checkpoint",
    "read_checkpoints",
    "write_checkpoint",
]

CHECKPOINT_FORMAT = "tsaccess-audit-checkpoint/1"
_NAME = re.compile(r"^checkpoint-\d{10}-\d{8}T\d{12}Z\.json$")


@dataclass(frozen=True)
class DatabaseIdentity:
    """Which database a chain belongs to: a restored copy or another cluster differs."""

    system_identifier: str
    database: str
    database_oid: int

    def describe(self) -> str:
        return f"{self.database} (oid {self.database_oid}, system {self.system_identifier})"


def database_identity(conn: psycopg.Connection[Any]) -> DatabaseIdentity:
    row = conn.execute(
        "SELECT (SELECT s.system_identifier::text FROM pg_catalog.pg_control_system() s),"
        " d.datname::text, d.oid::bigint FROM pg_catalog.pg_database d"
        " WHERE d.datname = pg_catalog.current_database()"
    ).fetchone()
    assert row is not None
    return DatabaseIdentity(str(row[0]), str(row[1]), int(row[2]))


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint (``path``: the file it was read from or written to)."""

    system_identifier: str
    database: str
    database_oid: int
    table: str
    """The audit table, schema-qualified (``public.activity_audit``)."""
    data_schema: str
    block: int
    first_position: int
    leaf_count: int
    audit_rows: int
    data_records: int
    lo_txid: int
    hi_txid: int
    columns: tuple[str, ...]
    position: int
    """Leaves sealed in all: the next position (``first_position + leaf_count``)."""
    rows: int
    """Audit rows sealed in all."""
    records: int
    """Per-row data records sealed in all."""
    head: str
    sealed_at: str
    signed_at: str
    key_id: str
    path: Path | None = field(default=None, compare=False)

    @property
    def identity(self) -> DatabaseIdentity:
        return DatabaseIdentity(self.system_identifier, self.database, self.database_oid)

    @property
    def name(self) -> str:
        return self.path.name if self.path else f"checkpoint of block {self.block}"

    def payload(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        d["columns"] = list(self.columns)
        d["format"] = CHECKPOINT_FORMAT
        return d

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path) if self.path else None
        d["columns"] = list(self.columns)
        return d


def _canonical(d: Mapping[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signed_bytes(cp: Checkpoint, key: SigningKey) -> bytes:
    """The file content of ``cp`` signed with ``key``."""
    if cp.key_id != key.key_id:
        raise ValueError("the checkpoint names another key id")
    payload = cp.payload()
    signature = key.sign(_canonical(payload)).hex()
    return _canonical({**payload, "signature": signature}) + b"\n"


def write_checkpoint(directory: Path, cp: Checkpoint, key: SigningKey) -> Checkpoint:
    """Write ``cp`` signed into ``directory`` (a new file, never over another)."""
    stamp = dt.datetime.fromisoformat(cp.signed_at).strftime("%Y%m%dT%H%M%S%f")[:21] + "Z"
    path = directory / f"checkpoint-{cp.block:010d}-{stamp}.json"
    data = signed_bytes(cp, key)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise AuditChainError(f"cannot write the checkpoint {path}: {exc.strerror}") from None
    return Checkpoint(**{**_fields(cp), "path": path})


def _fields(cp: Checkpoint) -> dict[str, Any]:
    return {f.name: getattr(cp, f.name) for f in fields(cp)}


_TYPES: dict[str, type] = {
    f.name: {"str": str, "int": int}.get(str(f.type), object)
    for f in fields(Checkpoint)
    if f.name != "path"
}


def _refuse(path: Path, why: str) -> AuditChainError:
    return AuditChainError(f"checkpoint {path} is refused: {why}")


def read_checkpoint(path: str | os.PathLike[str], key: VerifyKey) -> Checkpoint:
    """One checkpoint file, verified with ``key``.

    Raises:
        AuditChainError: unreadable, not a checkpoint, not in canonical form (a byte changed),
            or its signature does not verify with ``key``.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise AuditChainError(f"cannot read the checkpoint {p}: {exc.strerror}") from None
    try:
        d = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _refuse(p, "not a checkpoint (not JSON): changed or damaged") from None
    want = {*_TYPES, "format", "signature"}
    if not isinstance(d, dict) or set(d) != want or d["format"] != CHECKPOINT_FORMAT:
        raise _refuse(p, f"not a {CHECKPOINT_FORMAT} checkpoint (fields differ)")
    for name, typ in _TYPES.items():
        value = d[name]
        ok = (
            isinstance(value, list) and all(isinstance(c, str) for c in value)
            if name == "columns"
            else isinstance(value, typ) and not isinstance(value, bool)
        )
        if not ok:
            raise _refuse(p, f"field {name} has the wrong type")
    sig = d["signature"]
    if not isinstance(sig, str) or not re.fullmatch(r"[0-9a-f]{128}", sig):
        raise _refuse(p, "the signature is not 64 bytes in lowercase hex")
    if _canonical(d) + b"\n" != raw:
        raise _refuse(p, "it is not byte for byte as signed (changed or reformatted)")
    payload = {k: v for k, v in d.items() if k != "signature"}
    if d["key_id"] != key.key_id:
        raise _refuse(
            p, f"it was signed with key {d['key_id']}, not with the given key {key.key_id}"
        )
    if not key.verify(bytes.fromhex(sig), _canonical(payload)):
        raise _refuse(p, f"its signature does not verify with key {key.key_id}: it was changed")
    values = {k: v for k, v in payload.items() if k != "format"}
    values["columns"] = tuple(values["columns"])
    return Checkpoint(**values, path=p)


def read_checkpoints(directory: str | os.PathLike[str], key: VerifyKey) -> list[Checkpoint]:
    """Every ``checkpoint-*.json`` in ``directory``, verified, oldest block first.

    Raises:
        AuditChainError: the directory cannot be read, or any checkpoint in it is refused.
    """
    d = Path(directory)
    try:
        names = sorted(
            e.name for e in d.iterdir() if e.name.startswith("checkpoint-") and e.is_file()
        )
    except OSError as exc:
        raise AuditChainError(f"cannot read the checkpoint directory {d}: {exc.strerror}") from None
    for n in names:
        if not _NAME.match(n):
            raise _refuse(d / n, "its name is not checkpoint-<block>-<time>.json")
    found = [read_checkpoint(d / n, key) for n in names]
    return sorted(found, key=lambda c: (c.block, c.signed_at))
