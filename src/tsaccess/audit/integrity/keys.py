"""Ed25519 keys for signed checkpoints: create a pair, load either half.

The private key is a PKCS#8 PEM file created with mode 0600 (:func:`tsaccess._files.write_private`)
and refused when others may read it; its object shows only the key id (``repr``, logs,
errors), never key material, and cannot be pickled. The public key (``KEY.pub``, PEM) is
what an auditor needs.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tsaccess._files import write_private
from tsaccess.errors import AuditChainError

__all__ = ["KeyPair", "SigningKey", "VerifyKey", "keygen", "load_signing_key", "load_verify_key"]


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class VerifyKey:
    """An Ed25519 public key that verifies checkpoints."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self.key_id = _key_id(key)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"VerifyKey(key_id={self.key_id!r})"


class SigningKey:
    """An Ed25519 private key that signs checkpoints; only its key id is ever shown."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = _key_id(key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self._key.public_key())

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SigningKey is not pickled: it holds a private key")


@dataclass(frozen=True)
class KeyPair:
    """Where :func:`keygen` wrote the pair, and the key id checkpoints will carry."""

    private: Path
    public: Path
    key_id: str


def keygen(out: str | os.PathLike[str]) -> KeyPair:
    """Write a new Ed25519 key pair: ``out`` (private, mode 0600) and ``out.pub`` (public).

    Raises:
        AuditChainError: either file exists (nothing is overwritten) or cannot be written.
    """
    private = Path(out)
    public = Path(f"{private}.pub")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public.exists():
        raise AuditChainError(f"{public} exists: choose another --out, or move the old pair away")
    try:
        write_private(private, pem)
    except FileExistsError:
        raise AuditChainError(
            f"{private} exists: choose another --out, or move the old pair away"
        ) from None
    except OSError as exc:
        raise AuditChainError(f"cannot write {private}: {exc.strerror}") from None
    try:
        fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(pub)
    except OSError as exc:
        private.unlink(missing_ok=True)
        raise AuditChainError(f"cannot write {public}: {exc.strerror}") from None
    return KeyPair(private, public, _key_id(key.public_key()))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AuditChainError(f"cannot read the {what} {path}: {exc.strerror}") from None


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """The private key written by :func:`keygen`.

    Raises:
        AuditChainError: the file is missing, readable by others (``chmod 600`` it), or not an
            Ed25519 private key in PEM (its content is never shown).
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise AuditChainError(f"cannot read the private key {p}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditChainError(
            f"the private key {p} may be read by others (mode {stat.S_IMODE(mode):o}): "
            f"chmod 600 {p}, and consider it exposed"
        )
    data = _read(p, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditChainError(
            f"{p} is not an unencrypted Ed25519 private key in PEM: create one with "
            "`tsaccess audit keygen --out KEY`"
        )
    return SigningKey(key)


def load_verify_key(path: str | os.PathLike[str]) -> VerifyKey:
    """A public key (``KEY.pub``).

    Raises:
        AuditChainError: the file is missing or holds no Ed25519 key.
    """
    p = Path(path)
    data = _read(p, "public key")
    key: object
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        key = None
    if isinstance(key, Ed25519PublicKey):
        return VerifyKey(key)
    raise AuditChainError(
        f"{p} is not an Ed25519 public key in PEM: use the KEY.pub written by "
        "`tsaccess audit keygen`"
    )
