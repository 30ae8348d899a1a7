"""Connection parameters: merged as libpq merges them, checked against the TLS policy.

:func:`secure_params` is the one place that decides whether a set of connection settings
(argument, conninfo, URI, ``PGSSLMODE``, ``PGREQUIRESSL``, service file) may be used: the
effective ``sslmode`` must be ``require``, ``verify-ca`` or ``verify-full``. :func:`without_login`
is the one way to take the login out of a set of parameters (to connect as another user to the
same server).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
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
    "home_directory",
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
    sslrootcert: str | None = None
    """The root certificate given (argument, conninfo, service file, ``PGSSLROOTCERT``)."""

    def __repr__(self) -> str:
        host = self.kwargs.get("host", "")
        db = self.kwargs.get("dbname", "")
        return (
            f"SecureParams(user={self.user!r}, host={host!r}, dbname={db!r}, "
            f"sslmode={self.sslmode!r} from {self.sslmode_source})"
        )


_WHITESPACE = b" \t\n\v\f\r"  # C isspace()
_LINE_MAX = 1024  # libpq reads a service file with fgets() into a buffer of this size


def _service_file_values(service: str, servicefile: str | None) -> tuple[dict[str, str], str]:
    """The keywords of ``service`` as libpq reads them, and the file they came from.

    libpq's ``parseServiceInfo``: the ``servicefile`` keyword, else ``PGSERVICEFILE`` (both
    must name a readable file), else ``~/.pg_service.conf`` if it exists; when the service is
    not in that file, ``$PGSYSCONFDIR/pg_service.conf`` if it exists. A service defined
    nowhere is an error.

    Raises:
        InsecureConnectionError: libpq would not read the file the way it is checked here, or
            would refuse it.
    """
    tried: list[str] = []
    first: str | None
    if servicefile is not None:
        first = servicefile
    elif os.environ.get("PGSERVICEFILE") is not None:
        first = os.environ["PGSERVICEFILE"]
    else:
        first = f"{home_directory()}/.pg_service.conf"
        if not os.path.exists(first):
            first = None
    if first is not None:
        tried.append(first)
        values, found = _parse_service_file(first, service)
        if found:
            return values, first
    sysconf = f"{os.environ.get('PGSYSCONFDIR', '/etc/postgresql-common')}/pg_service.conf"
    if os.path.exists(sysconf):
        tried.append(sysconf)
        values, found = _parse_service_file(sysconf, service)
        if found:
            return values, sysconf
    raise InsecureConnectionError(
        f"service {service!r} is not defined in "
        + (" or ".join(tried) if tried else "any service file (none found)")
        + "; libpq would not connect either. Define it, or give host and sslmode directly"
    )


def home_directory() -> str:
    """libpq's ``pqGetHomeDirectory``: ``$HOME`` if set and not empty, else the passwd entry."""
    home = os.environ.get("HOME")
    if home:
        return home
    try:
        import pwd  # Unix only, like the rest of this lookup

        return pwd.getpwuid(os.geteuid()).pw_dir
    except (ImportError, KeyError):  # pragma: no cover - no passwd entry
        return ""


def _parse_service_file(path: str, service: str) -> tuple[dict[str, str], bool]:
    """libpq's ``parseServiceFile``, line for line, refusing what libpq refuses.

    Lines are read as ``fgets`` reads them (at most 1023 bytes, cut at a NUL byte; a line that
    long is an error), trimmed of whitespace; empty lines and ``#`` comments are skipped. A line
    starting with ``[`` ends the wanted section, or starts it when it begins with
    ``[<service>]`` (anything may follow the ``]``). Inside the section every line must be
    ``keyword=value``: the keyword is everything before the first ``=`` (no trimming), the value
    everything after it, and the FIRST occurrence of a keyword wins. Nothing is inherited
    (there is no ``[DEFAULT]``). Lines of other sections are never looked at, as in libpq.

    Returns:
        the keywords of the section and whether the section was found.
    """

    def refuse(lineno: int, why: str) -> InsecureConnectionError:
        return InsecureConnectionError(
            f"service file {path}, line {lineno}: {why}; fix that line so the service "
            f"{service!r} can be checked (libpq would refuse it or read it differently)"
        )

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InsecureConnectionError(
            f"cannot read service file {path} ({exc.strerror or exc.__class__.__name__}); "
            "libpq would not connect either"
        ) from None
    header = b"[" + service.encode() + b"]"
    known = _libpq_keywords() - {"requiressl"}  # requiressl is not a keyword in this file
    values: dict[str, str] = {}
    found = False
    seen_section = False
    lineno = 0
    pos = 0
    while pos < len(data):
        # fgets(buf, 1024): up to and including a newline, at most 1023 bytes
        end = data.find(b"\n", pos, pos + _LINE_MAX - 1)
        end = end + 1 if end >= 0 else min(pos + _LINE_MAX - 1, len(data))
        raw = data[pos:end].split(b"\0", 1)[0]  # C strings end at a NUL byte
        pos = end
        lineno += 1
        if len(raw) >= _LINE_MAX - 1:
            raise refuse(lineno, f"longer than {_LINE_MAX - 2} bytes")
        line = raw.strip(_WHITESPACE)
        if not line or line.startswith(b"#"):
            continue
        if line.startswith(b"["):
            if found:
                break  # end of the wanted section: later ones are not read
            seen_section = True
            found = line.startswith(header)
            continue
        if not seen_section:
            raise refuse(
                lineno,
                "a setting outside any [section] (libpq ignores it: it is no default for "
                "the services below)",
            )
        if not found:
            continue
        text = line.decode("utf-8", "surrogateescape")
        if line.startswith(b"ldap"):
            raise refuse(lineno, "an LDAP lookup, whose settings cannot be checked beforehand")
        key, eq, value = text.partition("=")
        if not eq:
            raise refuse(lineno, "not 'keyword=value' (libpq: syntax error)")
        if key == "service":
            raise refuse(lineno, "a nested service (libpq does not support it)")
        if key not in known:
            shown = key if key.isprintable() and len(key) <= 40 else key[:40].encode()
            raise refuse(
                lineno,
                f"{shown!r} is not a libpq connection keyword here (libpq: syntax error; "
                "no spaces around '=')",
            )
        values.setdefault(key, value)  # libpq keeps the first value
    return values, found


def _effective(
    key: str,
    explicit: Mapping[str, Any],
    given_as_argument: Mapping[str, Any],
    service: Mapping[str, str],
    service_src: str,
    env: str,
) -> tuple[str | None, str]:
    """Value and source of ``key`` with libpq's precedence: conninfo > service > environment.

    As in libpq, a value that is given counts even when it is empty (``host=''`` is not "no
    host": it is the default Unix-domain socket, and ``PGHOST`` is not read).
    """
    if explicit.get(key) is not None:
        src = "argument" if key in given_as_argument else "connection string"
        return str(explicit[key]), f"{src} {key}"
    if key in service:
        return service[key], f"service file {service_src}"
    if env and os.environ.get(env) is not None:
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
    # libpq: a service given (even empty) is looked up; PGSERVICE only when none is given
    service_name = merged.get("service")
    if service_name is None:
        service_name = os.environ.get("PGSERVICE")
    service: dict[str, str] = {}
    service_src = ""
    if service_name is not None:
        servicefile = merged.get("servicefile")
        service, service_src = _service_file_values(
            str(service_name), str(servicefile) if servicefile is not None else None
        )

    sslmode, source = _effective("sslmode", merged, given, service, service_src, "PGSSLMODE")
    sslmode, source = _requiressl(conninfo, merged, sslmode, source)
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
    # What was checked is what gets used: psycopg splits host lists and resolves host names
    # itself, reading PGHOST, PGHOSTADDR and PGPORT but never the service file, and would pass
    # its own explicit host to libpq. Explicit values are what libpq would use anyway.
    for key, env in (("host", "PGHOST"), ("hostaddr", "PGHOSTADDR"), ("port", "PGPORT")):
        value, _ = _effective(key, merged, given, service, service_src, env)
        if value is not None:
            merged[key] = value
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
    rootcert, _ = _effective("sslrootcert", merged, given, service, service_src, "PGSSLROOTCERT")
    return SecureParams(
        kwargs=merged, sslmode=sslmode, sslmode_source=source, user=user, sslrootcert=rootcert
    )


def _requiressl(
    conninfo: str,
    merged: Mapping[str, Any],
    sslmode: str | None,
    source: str,
) -> tuple[str | None, str]:
    """Fold the deprecated ``requiressl`` keyword into ``sslmode`` as libpq does (``1`` is
    ``require``, anything else ``prefer``), keeping its name in the source.

    libpq's parser rewrites ``requiressl`` in a connection string to ``sslmode``, so there only
    the source changes; given as an argument it is still ``requiressl`` (in a service file it
    is a syntax error for libpq, refused while the file is read).
    """
    if source.startswith("connection string") and "requiressl" in conninfo.lower():
        return sslmode, "connection string requiressl"
    value = merged.get("requiressl")
    if value is None:
        return sslmode, source
    if not str(value).startswith("1"):  # libpq: anything else, even '', is prefer
        return "prefer", "argument requiressl"  # order-dependent in libpq: refuse regardless
    if sslmode is None:
        return "require", "argument requiressl"
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
            shown = f"host={entry!r}" if entry else "an empty host entry (libpq's default socket)"
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
        if value and value not in SECURE_TLS_VERSIONS:  # '' is libpq's "no limit"
            raise InsecureConnectionError(
                f"{key}={value!r} from {where} is below what tsaccess accepts ({allowed}); "
                f"remove it or use {SECURE_TLS_VERSIONS[-1]}"
            )
    return low or SECURE_TLS_VERSIONS[0]
