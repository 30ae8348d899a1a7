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
    "CONNECTION_KWARGS",
    "LOGIN_KEYS",
    "SECURE_SSLMODES",
    "SECURE_TLS_VERSIONS",
    "SecureParams",
    "secure_params",
    "split_connection_kwargs",
    "without_login",
]

SECURE_SSLMODES: tuple[str, ...] = ("require", "verify-ca", "verify-full")
_KNOWN_SSLMODES = (*SECURE_SSLMODES, "disable", "allow", "prefer")

LOGIN_KEYS: frozenset[str] = frozenset({"user", "password", "passfile", "dbname"})
"""The keywords that say who logs in where (dropped by :func:`without_login`)."""

SECURE_TLS_VERSIONS: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
"""The TLS protocol versions tsaccess lets libpq negotiate (``ssl_min_protocol_version``)."""

CONNECTION_KWARGS: frozenset[str] = frozenset(
    {"row_factory", "cursor_factory", "prepare_threshold", "context"}
)
"""Keyword arguments of ``psycopg.Connection.connect`` that are not libpq parameters."""


def split_connection_kwargs(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword arguments into libpq parameters and ``psycopg.Connection.connect``
    arguments (:data:`CONNECTION_KWARGS`).

    Raises:
        TsaccessError: a keyword is neither (a typo, or a Python object given as a libpq
            parameter).
    """
    libpq: dict[str, Any] = {}
    python: dict[str, Any] = {}
    known = _libpq_keywords()
    for key, value in params.items():
        if key in CONNECTION_KWARGS:
            python[key] = value
        elif key in known:
            libpq[key] = value
        else:
            raise TsaccessError(
                f"unknown connection parameter {key!r}: it is neither a libpq keyword nor one "
                f"of psycopg's connection arguments ({', '.join(sorted(CONNECTION_KWARGS))}); "
                "check the spelling"
            )
    return libpq, python


_KEYWORDS: frozenset[str] = frozenset()


def _libpq_keywords() -> frozenset[str]:
    """Every keyword the loaded libpq accepts (``PQconndefaults``), plus ``requiressl``."""
    global _KEYWORDS
    if not _KEYWORDS:
        names = {o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()}
        _KEYWORDS = frozenset(names | {"requiressl"})
    return _KEYWORDS


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
    sslmode, source = _requiressl(conninfo, merged, service, service_src, sslmode, source)
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
    if sslmode not in SECURE_SSLMODES and "requiressl" in source:
        raise InsecureConnectionError(
            f"requiressl=0 from {source.replace(' requiressl', '')} allows an unencrypted "
            f"connection (libpq reads it as sslmode={sslmode!r}); remove requiressl and use "
            "sslmode=verify-full with sslrootcert=<your CA certificate>"
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
    _refuse_unix_sockets(merged, given, service, service_src)
    _refuse_key_log(merged, given, service, service_src)
    merged["ssl_min_protocol_version"] = _tls_versions(merged, given, service, service_src)
    merged.pop("requiressl", None)  # folded into the explicit sslmode
    merged["sslmode"] = sslmode
    merged.setdefault("gssencmode", "disable")  # TLS, not GSSAPI encryption, is what we verify

    user, _ = _effective("user", merged, given, service, service_src, "PGUSER")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # pragma: no cover - no passwd entry
            user = ""
    return SecureParams(kwargs=merged, sslmode=sslmode, sslmode_source=source, user=user)


def _requiressl(
    conninfo: str,
    merged: Mapping[str, Any],
    service: Mapping[str, str],
    service_src: str,
    sslmode: str | None,
    source: str,
) -> tuple[str | None, str]:
    """Fold the deprecated ``requiressl`` keyword into ``sslmode`` as libpq does (``1`` is
    ``require``, anything else ``prefer``), keeping its name in the source.

    libpq's parser rewrites ``requiressl`` in a connection string to ``sslmode``, so there only
    the source changes; given as an argument or in a service file it is still ``requiressl``.
    """
    if source.startswith("connection string") and "requiressl" in conninfo.lower():
        return sslmode, "connection string requiressl"
    candidates = [(merged.get("requiressl"), "argument requiressl")]
    if not source.startswith(("argument", "connection string")):  # explicit beats service
        candidates.append((service.get("requiressl"), f"service file {service_src} requiressl"))
    for value, src in candidates:
        if value in (None, ""):
            continue
        if not str(value).startswith("1"):
            return "prefer", src  # order-dependent in libpq: refuse whatever sslmode says
        if sslmode is None:
            return "require", src
    return sslmode, source


def _host_entries(
    merged: Mapping[str, Any], given: Mapping[str, Any], service: Mapping[str, str], src: str
) -> tuple[list[str], list[str], str]:
    host, host_src = _effective("host", merged, given, service, src, "PGHOST")
    addr, _ = _effective("hostaddr", merged, given, service, src, "PGHOSTADDR")
    hosts = host.split(",") if host is not None else []
    addrs = addr.split(",") if addr is not None else []
    return hosts, addrs, host_src


def _refuse_unix_sockets(
    merged: Mapping[str, Any], given: Mapping[str, Any], service: Mapping[str, str], src: str
) -> None:
    """libpq never uses TLS on a Unix-domain socket (``sslmode`` is ignored there): refuse every
    host that would be one, and no host at all (libpq's default is its socket directory)."""
    hosts, addrs, host_src = _host_entries(merged, given, service, src)
    fix = (
        "tsaccess connects over TCP with TLS only: give host=<the server's name or IP address> "
        "(e.g. host=localhost or host=127.0.0.1 on the same machine)"
    )
    if not hosts and not any(addrs):
        raise InsecureConnectionError(
            "no host given (argument, connection string, service file or PGHOST): libpq would "
            f"connect to its default Unix-domain socket, where TLS is never used; {fix}"
        )
    for i in range(max(len(hosts), len(addrs))):
        if i < len(addrs) and addrs[i].strip():
            continue  # hostaddr wins: TCP
        entry = hosts[i].strip() if i < len(hosts) else ""
        if not entry or entry.startswith(("/", "@")):
            shown = f"host={entry!r}" if entry else "an empty host entry"
            raise InsecureConnectionError(
                f"{shown} from {host_src} is a Unix-domain socket, where libpq never uses TLS "
                f"(the login would be sent unencrypted); {fix}"
            )


def _refuse_key_log(
    merged: Mapping[str, Any], given: Mapping[str, Any], service: Mapping[str, str], src: str
) -> None:
    value, where = _effective("sslkeylogfile", merged, given, service, src, "")
    if value:
        raise InsecureConnectionError(
            f"sslkeylogfile from {where} would write this session's TLS secrets to disk "
            "(anyone who reads that file can decrypt the traffic); remove it"
        )


def _tls_versions(
    merged: Mapping[str, Any], given: Mapping[str, Any], service: Mapping[str, str], src: str
) -> str:
    """The ``ssl_min_protocol_version`` to use (TLSv1.2 unless a higher one is asked for)."""
    low, low_src = _effective(
        "ssl_min_protocol_version", merged, given, service, src, "PGSSLMINPROTOCOLVERSION"
    )
    high, high_src = _effective(
        "ssl_max_protocol_version", merged, given, service, src, "PGSSLMAXPROTOCOLVERSION"
    )
    allowed = ", ".join(SECURE_TLS_VERSIONS)
    for key, value, where in (
        ("ssl_min_protocol_version", low, low_src),
        ("ssl_max_protocol_version", high, high_src),
    ):
        if value is not None and value not in SECURE_TLS_VERSIONS:
            raise InsecureConnectionError(
                f"{key}={value!r} from {where} is below what tsaccess accepts ({allowed}); "
                f"remove it or use {SECURE_TLS_VERSIONS[-1]}"
            )
    return low or SECURE_TLS_VERSIONS[0]
