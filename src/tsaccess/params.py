"""Connection parameters: merged as libpq merges them, checked against the TLS policy.

:func:`secure_params` is the one place that decides whether a set of connection settings
(argument, conninfo, URI, ``PGSSLMODE``, ``PGREQUIRESSL``, service file) may be used: the
effective ``sslmode`` must be ``require``, ``verify-ca`` or ``verify-full``. :func:`without_login`
is the one way to take the login out of a set of parameters (to connect as another user to the
same server).
"""

from __future__ import annotations

import configparser
import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tsaccess.errors import InsecureConnectionError, TsaccessError

__all__ = [
    "LOGIN_KEYS",
    "SECURE_SSLMODES",
    "SecureParams",
    "secure_params",
    "without_login",
]

SECURE_SSLMODES: tuple[str, ...] = ("require", "verify-ca", "verify-full")
_KNOWN_SSLMODES = (*SECURE_SSLMODES, "disable", "allow", "prefer")

LOGIN_KEYS: frozenset[str] = frozenset({"user", "password", "passfile", "dbname"})
"""The keywords that say who logs in where (dropped by :func:`without_login`)."""


def without_login(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without ``user``, ``password``, ``passfile`` and ``dbname``: the server and
    TLS settings, to connect to the same server as another user (or to another database)."""
    return {k: v for k, v in params.items() if k not in LOGIN_KEYS}


@dataclass(frozen=True, repr=False)
class SecureParams:
    """Connection parameters that passed the TLS policy.

    ``kwargs`` go to ``psycopg.connect`` unchanged; they may hold a password, so this object's
    ``repr`` shows only harmless fields.
    """

    kwargs: Mapping[str, Any]
    sslmode: str
    sslmode_source: str
    user: str

    def __repr__(self) -> str:
        host = self.kwargs.get("host", "")
        db = self.kwargs.get("dbname", "")
        return (
            f"SecureParams(user={self.user!r}, host={host!r}, dbname={db!r}, "
            f"sslmode={self.sslmode!r} from {self.sslmode_source})"
        )


def _service_file_values(service: str, servicefile: str | None) -> tuple[dict[str, str], str]:
    """The keywords of ``service`` as libpq would read them, and the file they came from."""
    candidates: list[Path] = []
    if servicefile:
        candidates.append(Path(servicefile))
    elif os.environ.get("PGSERVICEFILE"):
        candidates.append(Path(os.environ["PGSERVICEFILE"]))
    else:
        candidates.append(Path.home() / ".pg_service.conf")
    sysconf = os.environ.get("PGSYSCONFDIR", "/etc/postgresql-common")
    candidates.append(Path(sysconf) / "pg_service.conf")
    for path in candidates:
        if not path.is_file():
            continue
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise InsecureConnectionError(
                f"cannot read service file {path}: {exc.__class__.__name__}; "
                "fix its syntax so its sslmode can be checked"
            ) from None
        if parser.has_section(service):
            return dict(parser.items(service)), str(path)
    return {}, ""


def _effective(
    key: str,
    explicit: Mapping[str, Any],
    given_as_argument: Mapping[str, Any],
    service: Mapping[str, str],
    service_src: str,
    env: str,
) -> tuple[str | None, str]:
    """Value and source of ``key`` with libpq's precedence: conninfo > service > environment."""
    if explicit.get(key) not in (None, ""):
        src = "argument" if key in given_as_argument else "connection string"
        return str(explicit[key]), f"{src} {key}"
    if service.get(key):
        return service[key], f"service file {service_src}"
    if os.environ.get(env):
        return os.environ[env], f"environment variable {env}"
    return None, ""


def secure_params(conninfo: str = "", **params: Any) -> SecureParams:
    """Merge connection settings like libpq does and enforce TLS.

    Returns:
        the parameters for ``psycopg.connect`` with ``sslmode`` made explicit.

    Raises:
        InsecureConnectionError: the effective ``sslmode`` is weaker than ``require`` (or
            unknown), or GSSAPI encryption is required instead of TLS.
    """
    given = {k: v for k, v in params.items() if v is not None}
    try:
        merged = conninfo_to_dict(conninfo, **given)
    except psycopg.ProgrammingError:
        # libpq's message quotes the offending text, which may include a password.
        raise TsaccessError(
            "the connection string could not be parsed (not shown: it may contain a "
            "password); check its 'key=value' pairs or the postgresql:// URI syntax"
        ) from None
    service_name = merged.get("service") or os.environ.get("PGSERVICE")
    service: dict[str, str] = {}
    service_src = ""
    if service_name:
        servicefile = merged.get("servicefile")
        service, service_src = _service_file_values(
            str(service_name), str(servicefile) if servicefile else None
        )

    sslmode, source = _effective("sslmode", merged, given, service, service_src, "PGSSLMODE")
    if sslmode is None and os.environ.get("PGREQUIRESSL", "").startswith("1"):
        sslmode, source = "require", "environment variable PGREQUIRESSL"
    if sslmode is None:
        rootcert, _ = _effective(
            "sslrootcert", merged, given, service, service_src, "PGSSLROOTCERT"
        )
        sslmode = "verify-full" if rootcert else "require"
        source = "tsaccess default (" + ("sslrootcert given" if rootcert else "no root cert") + ")"
    if sslmode not in _KNOWN_SSLMODES:
        raise InsecureConnectionError(
            f"unknown sslmode {sslmode!r} from {source}; use one of {', '.join(SECURE_SSLMODES)}"
        )
    if sslmode not in SECURE_SSLMODES:
        raise InsecureConnectionError(
            f"sslmode={sslmode!r} from {source} allows an unencrypted connection; tsaccess "
            "only connects with sslmode=require, verify-ca or verify-full (best: verify-full "
            "with sslrootcert=<your CA certificate>). Change or remove that setting."
        )
    gss, gss_src = _effective("gssencmode", merged, given, service, service_src, "PGGSSENCMODE")
    if gss == "require":
        raise InsecureConnectionError(
            f"gssencmode=require from {gss_src} forbids TLS; tsaccess needs TLS. Remove it."
        )
    merged["sslmode"] = sslmode
    merged.setdefault("gssencmode", "disable")  # TLS, not GSSAPI encryption, is what we verify

    user, _ = _effective("user", merged, given, service, service_src, "PGUSER")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # pragma: no cover - no passwd entry
            user = ""
    return SecureParams(kwargs=merged, sslmode=sslmode, sslmode_source=source, user=user)
