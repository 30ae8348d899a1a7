"""A tamper-evident audit trail: a hash chain over the audit rows and their per-row data,
sealed in the database and signed outside it (``docs/audit-integrity.md``).

Rooms: :mod:`~.encoding` (the canonical encoding, pure), :mod:`~.schema` (the chain's objects
as plan steps, and the seal function's SQL), :mod:`~.keys` (Ed25519 keys),
:mod:`~.checkpoint` (signed checkpoint files), :mod:`~.chain` (the stored blocks),
:mod:`~.sealing` (:func:`seal`), :mod:`~.proof` (:func:`prove`), :mod:`~.verdict` (what a proof
finds).
"""

from __future__ import annotations

from tsaccess.audit.integrity.checkpoint import Checkpoint, read_checkpoints
from tsaccess.audit.integrity.keys import (
    KeyPair,
    SigningKey,
    VerifyKey,
    keygen,
    load_signing_key,
    load_verify_key,
)
from tsaccess.audit.integrity.proof import prove
from tsaccess.audit.integrity.sealing import SealResult, seal
from tsaccess.audit.integrity.verdict import Break, Proof

__all__ = [
    "Break",
    "Checkpoint",
    "KeyPair",
    "Proof",
    "SealResult",
    "SigningKey",
    "VerifyKey",
    "keygen",
    "load_signing_key",
    "load_verify_key",
    "prove",
    "read_checkpoints",
    "seal",
]
