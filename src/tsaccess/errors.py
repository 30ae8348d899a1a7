"""The tsaccess error hierarchy.

Every error raised on purpose by tsaccess derives from :class:`TsaccessError`. Messages say what
was checked and how to fix it; they never contain a password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg.errors
from psycopg.pq import DiagnosticField

__all__ = [
    "ApplyError",
    "AuditChainError",
    "AuditTamperedError",
    "InsecureConnectionError",
    "MissingPrivilege",
    "NoPrimaryError",
    "PasswordSourceError",
    "PolicyError",
    "PolicyErrors",
    "PreflightDenied",
    "ReplicaLagError",
    "RoleScopeError",
    "ServerStartError",
    "StandbyError",
    "TargetsError",
    "TsaccessError",
    "UnverifiedServerWarning",
]


class TsaccessError(Exception):
    """Root of every error tsaccess raises on purpose."""

    __module__ = "tsaccess"


class UnverifiedServerWarning(UserWarning):
    """The server's certificate is not verified: the session is encrypted, but anyone between
    client and server could pose as the server (and read the password). Issued once per
    target (host:port) and process; filter it with ``warnings.filterwarnings("ignore",
    category=tsaccess.UnverifiedServerWarning)`` — better, give a root certificate."""

    __module__ = "tsaccess"


class InsecureConnectionError(TsaccessError):
    """A connection would not be (or is not) protected by TLS.

    Raised before any packet is sent when the effective ``sslmode`` is weaker than ``require``,
    and after connecting when the server does not report an encrypted session.
    """

    __module__ = "tsaccess"


class RoleScopeError(TsaccessError):
    """The login user cannot be scoped to the requested group role."""

    __module__ = "tsaccess"


class PolicyError(TsaccessError):
    """A policy is invalid; ``path`` names the offending key (``users.bob.roles``), ``line`` its
    line in the file when known, ``message`` the problem and the fix."""

    __module__ = "tsaccess"

    def __init__(
        self, message: str, *, path: str = "", source: str = "", line: int | None = None
    ) -> None:
        self.path = path
        self.source = source
        self.line = line
        self.message = message
        file = f"{source}:{line}" if source and line else source
        where = " ".join(p for p in (file, f"[{path}]" if path else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class PolicyErrors(PolicyError):
    """Several errors in one policy, all reported at once; ``errors`` holds each of them.

    ``path`` and ``source`` are those of the first error.
    """

    __module__ = "tsaccess"

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        Exception.__init__(
            self,
            f"{len(self.errors)} errors in the policy:\n"
            + "\n".join(f"  {e}" for e in self.errors),
        )
        self.path = first.path
        self.source = first.source


class PasswordSourceError(TsaccessError):
    """A password could not be read safely (missing variable, unsafe passwords file...)."""

    __module__ = "tsaccess"


class ApplyError(TsaccessError):
    """Applying a plan failed; the transaction was rolled back and nothing changed."""

    __module__ = "tsaccess"


class ServerStartError(TsaccessError):
    """The throwaway server could not be started."""

    __module__ = "tsaccess"


@dataclass(frozen=True)
class MissingPrivilege:
    """One privilege a statement needs and the current user lacks."""

    privilege: str
    """``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``, ``TRUNCATE`` or ``USAGE`` (schema)."""
    object: str
    """Schema-qualified table (or schema, for ``USAGE``)."""
    columns: tuple[str, ...] = ()
    """The columns concerned, empty for a table-level need."""
    kind: str = ""
    """What ``object`` is when not a table (or a schema, for ``USAGE``): ``sequence``."""

    def __str__(self) -> str:
        cols = f" ({', '.join(self.columns)})" if self.columns else ""
        kind = self.kind or ("schema" if self.privilege == "USAGE" else "table")
        return f"{self.privilege}{cols} on {kind} {self.object}"


class PreflightDenied(TsaccessError, psycopg.errors.InsufficientPrivilege):
    """Pre-flight found that the server would refuse a statement; nothing was sent.

    It is also a ``psycopg.errors.InsufficientPrivilege`` (SQLSTATE 42501, as the server's own
    refusal would be), so an application's ``except InsufficientPrivilege`` catches it; ``diag``
    answers ``sqlstate``, ``message_primary`` and ``message_hint``. ``missing`` lists every
    missing privilege, ``user`` and ``role`` say whose privileges were checked.
    """

    __module__ = "tsaccess"

    statement: str
    """The refused statement text (as it would have been sent)."""
    missing: tuple[MissingPrivilege, ...]
    """Every privilege the statement needs and the session lacks, each confirmed live."""
    user: str
    """The login user whose privileges were checked."""
    role: str | None
    """The group role the session was scoped to, if any."""

    def __init__(
        self, statement: str, missing: Sequence[MissingPrivilege], *, user: str, role: str | None
    ) -> None:
        self.statement = statement
        self.missing = tuple(missing)
        self.user = user
        self.role = role
        who = f"user {user!r}" + (f" (as role {role!r})" if role else "")
        needs = "; ".join(str(m) for m in self.missing)
        primary = f"permission denied before sending: {who} lacks {needs}"
        hint = "Ask an administrator to grant it in the policy, or connect as a role that has it."
        info: dict[int, bytes | None] = {
            DiagnosticField.SEVERITY: b"ERROR",
            DiagnosticField.SEVERITY_NONLOCALIZED: b"ERROR",
            DiagnosticField.SQLSTATE: b"42501",
            DiagnosticField.MESSAGE_PRIMARY: primary.encode(),
            DiagnosticField.MESSAGE_HINT: hint.encode(),
        }
        super().__init__(f"{primary}. {hint}", info=info)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_preflight_denied, (self.statement, self.missing, self.user, self.role))


def _preflight_denied(
    statement: str, missing: Sequence[MissingPrivilege], user: str, role: str | None
) -> PreflightDenied:
    """Rebuild a pickled :class:`PreflightDenied`."""
    return PreflightDenied(statement, missing, user=user, role=role)


class StandbyError(TsaccessError):
    """The operation needs the primary but the connection is to a hot standby (read-only)."""

    __module__ = "tsaccess"


class NoPrimaryError(TsaccessError):
    """No read-write host (primary) could be reached, e.g. to record an audit event for a
    standby session."""

    __module__ = "tsaccess"


class ReplicaLagError(TsaccessError):
    """Some standbys had not replayed a commit within the time allowed; ``laggards`` names
    them (``application_name`` of the primary's ``pg_stat_replication``)."""

    __module__ = "tsaccess"

    def __init__(self, message: str, *, laggards: Sequence[str] = ()) -> None:
        self.laggards = tuple(laggards)
        super().__init__(message)


class TargetsError(TsaccessError):
    """A list of target databases (``--dsn`` repeated, a targets file) is invalid."""

    __module__ = "tsaccess"


class AuditChainError(TsaccessError):
    """The audit chain cannot be sealed or proved: an unreadable or changed checkpoint, a key
    that does not verify it, a checkpoint of another database, a missing key file
    (``tsaccess audit prove`` exits 2: no verdict on the trail)."""

    __module__ = "tsaccess"


class AuditTamperedError(TsaccessError):
    """The audit chain in the database no longer extends the last signed checkpoint: a seal
    refuses to sign it (``tsaccess audit seal`` exits 1; run ``tsaccess audit prove``)."""

    __module__ = "tsaccess"
