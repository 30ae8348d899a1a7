"""The tsaccess error hierarchy.

Every error raised on purpose by tsaccess derives from :class:`TsaccessError`. Messages say what
was checked and how to fix it; they never contain a password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ApplyError",
    "InsecureConnectionError",
    "MissingPrivilege",
    "PasswordSourceError",
    "PolicyError",
    "PreflightDenied",
    "RoleScopeError",
    "ServerStartError",
    "TsaccessError",
]


class TsaccessError(Exception):
    """Root of every error tsaccess raises on purpose."""

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
    """A policy is invalid; ``path`` names the offending key (``users.bob.roles``)."""

    __module__ = "tsaccess"

    def __init__(self, message: str, *, path: str = "", source: str = "") -> None:
        self.path = path
        self.source = source
        where = " ".join(p for p in (source, f"[{path}]" if path else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


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


class PreflightDenied(TsaccessError):
    """Pre-flight found that the server would refuse a statement; nothing was sent.

    ``missing`` lists every missing privilege, ``user`` and ``role`` say whose privileges were
    checked.
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
        super().__init__(
            f"permission denied before sending: {who} lacks {needs}. "
            "Ask an administrator to grant it in the policy, or connect as a role that has it."
        )
