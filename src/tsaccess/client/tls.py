"""Certificates for the server and a report of a live connection's encryption.

``create_certificates`` replaces the tutorial's ``openssl req`` step: a private CA and a server
certificate whose subject alternative names cover the host names and IP addresses clients use,
so that clients can connect with ``sslmode=verify-full``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from psycopg.rows import tuple_row

from tsaccess._files import write_private
from tsaccess.errors import TsaccessError

__all__ = [
    "TLS_STATUS_SQL",
    "CertificateExistsError",
    "CertificatePaths",
    "TlsStatus",
    "VerifiedTls",
    "create_certificates",
    "tls_from_row",
    "tls_status",
]

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertificatePaths:
    """Where :func:`create_certificates` wrote its files."""

    ca_cert: Path
    """The CA certificate: give it to clients as ``sslrootcert``."""
    ca_key: Path
    server_cert: Path
    """``ssl_cert_file`` for the server."""
    server_key: Path
    """``ssl_key_file`` for the server (mode 0600)."""


class CertificateExistsError(TsaccessError, FileExistsError):
    """:func:`create_certificates` would replace existing files (``replace=False``)."""


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def create_certificates(
    out_dir: str | os.PathLike[str],
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    days: int = 365,
    common_name: str = "tsaccess",
    replace: bool = False,
) -> CertificatePaths:
    """Create a CA and a server certificate signed by it in ``out_dir``.

    Args:
        out_dir: created if missing. Files: ``ca.crt``, ``ca.key``, ``server.crt``,
            ``server.key``; keys are written with mode 0600.
        hosts: DNS names and IP addresses put in the certificate's subject alternative names;
            ``verify-full`` accepts exactly these.
        days: validity.
        common_name: prefix of the subjects' common names.
        replace: replace existing files. Without it, an existing CA or server certificate or
            key in ``out_dir`` raises :class:`CertificateExistsError` and nothing is written:
            a new CA breaks every client that verifies the server with the old ``ca.crt``.
    """
    if not hosts:
        raise ValueError("create_certificates needs at least one host name or IP address")
    out = Path(out_dir)
    names = ("ca.crt", "ca.key", "server.crt", "server.key")
    existing = [n for n in names if (out / n).exists() or (out / n).is_symlink()]
    if existing and not replace:
        raise CertificateExistsError(
            f"{out} already has {', '.join(existing)}; a new CA would break every client that "
            "verifies the server with the current ca.crt (sslrootcert). Choose another folder, "
            "or replace them on purpose (tsaccess certs --replace, create_certificates(..., "
            "replace=True)) and give clients the new ca.crt"
        )
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(minutes=5)
    not_after = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def key_pem(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    paths = CertificatePaths(
        ca_cert=out / "ca.crt",
        ca_key=out / "ca.key",
        server_cert=out / "server.crt",
        server_key=out / "server.key",
    )
    paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(paths.ca_key, key_pem(ca_key), replace=True)
    write_private(paths.server_key, key_pem(key), replace=True)
    return paths


@dataclass(frozen=True)
class TlsStatus:
    """Encryption of one live session, as the server reports it in ``pg_stat_ssl``."""

    ssl: bool
    """The session is encrypted."""
    version: str | None
    """TLS protocol version (``TLSv1.3``), None when unknown or not encrypted."""
    cipher: str | None
    """Cipher suite name."""
    bits: int | None
    """Key length of the cipher in bits."""
    verified: bool | None = None
    """The client verified the server's certificate (None: unknown, the connection was not
    opened by tsaccess)."""
    verification: str = ""
    """How it was verified (``verify-full: CA and host name``...), empty when it was not."""

    def __str__(self) -> str:
        if not self.ssl:
            return "NOT ENCRYPTED"
        text = f"{self.version} {self.cipher} ({self.bits} bits)"
        if self.verified is None:
            return text
        if self.verified:
            return f"{text}, server verified ({self.verification})"
        return f"{text}, server NOT verified (no root certificate)"


@runtime_checkable
class VerifiedTls(Protocol):
    """A connection that remembers the server's TLS report from when it was verified
    (:class:`tsaccess.client.connection.TsConnection`)."""

    verified_tls: TlsStatus | None


TLS_STATUS_SQL = (
    "SELECT ssl, version, cipher, bits FROM pg_catalog.pg_stat_ssl"
    " WHERE pid = pg_catalog.pg_backend_pid()"
)
"""The server's report of the session's own encryption (sync and async connections send it)."""


def tls_from_row(row: Any, ssl_in_use: bool, verified: TlsStatus | None) -> TlsStatus:
    """The :class:`TlsStatus` of a :data:`TLS_STATUS_SQL` row.

    After ``SET ROLE`` to a role without the login user's privileges, ``pg_stat_ssl`` hides the
    session's own fields: then the report taken when the session was verified, else libpq's
    view.
    """
    if row is None or row[0] is None:
        if verified is not None:
            return verified
        return TlsStatus(bool(ssl_in_use), None, None, None)
    if verified is None:
        return TlsStatus(bool(row[0]), row[1], row[2], row[3])
    return TlsStatus(bool(row[0]), row[1], row[2], row[3], verified.verified, verified.verification)


def tls_status(conn: psycopg.Connection[Any]) -> TlsStatus:
    """Ask the server whether this connection's session is encrypted.

    The answer comes from ``pg_stat_ssl`` for the session's own backend, so it is the server's
    view, not the client library's. (An async connection: ``await conn.tls_status()``.)

    Returns:
        the server's report; after ``SET ROLE`` to a role that may not read it, the report
        taken when :func:`tsaccess.connect` verified the session, else libpq's view.
    """
    was_idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # a plain tuple cursor: whatever row_factory / cursor_factory the connection has
    with psycopg.Cursor(conn, row_factory=tuple_row) as cur:
        row = cur.execute(TLS_STATUS_SQL).fetchone()
    if was_idle and not conn.autocommit:
        conn.rollback()  # leave the connection as we found it
    verified = conn.verified_tls if isinstance(conn, VerifiedTls) else None
    return tls_from_row(row, bool(conn.pgconn.ssl_in_use), verified)
