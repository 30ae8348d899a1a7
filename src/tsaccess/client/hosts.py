"""Host lists (``host=a,b,c``): every host must be reached over TCP, so TLS applies to each.

libpq applies one ``sslmode`` to every host of a list, but a Unix-socket entry (a path, an
abstract ``@name``, or an empty entry, which means the default socket) is never encrypted.
:func:`check_host_list` refuses such lists before a packet is sent; after connecting,
:func:`tsaccess.connect` still confirms with the server that the session it landed on is
encrypted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tsaccess.errors import InsecureConnectionError, TsaccessError

__all__ = ["TARGET_SESSION_ATTRS", "check_host_list"]

TARGET_SESSION_ATTRS: tuple[str, ...] = (
    "any",
    "read-write",
    "read-only",
    "primary",
    "standby",
    "prefer-standby",
)
"""The values libpq accepts for ``target_session_attrs``."""


def _split(value: Any) -> list[str]:
    return [] if value in (None, "") else [v.strip() for v in str(value).split(",")]


def check_host_list(params: Mapping[str, Any]) -> None:
    """Refuse a host list with a Unix-socket entry or mismatched lengths, and an unknown
    ``target_session_attrs``.

    Single hosts are left to the connection's own checks (a socket is refused after
    connecting, when the server reports the session as not encrypted).

    Raises:
        InsecureConnectionError: an entry of the list would not use TCP (no TLS).
        TsaccessError: ``host``, ``hostaddr`` and ``port`` lists do not line up, or
            ``target_session_attrs`` is unknown.
    """
    attrs = params.get("target_session_attrs") or os.environ.get("PGTARGETSESSIONATTRS")
    if attrs and str(attrs) not in TARGET_SESSION_ATTRS:
        raise TsaccessError(
            f"target_session_attrs={attrs!r} is not one libpq knows; use one of "
            f"{', '.join(TARGET_SESSION_ATTRS)}"
        )
    hosts = _split(params.get("host") or os.environ.get("PGHOST"))
    addrs = _split(params.get("hostaddr") or os.environ.get("PGHOSTADDR"))
    n = max(len(hosts), len(addrs))
    if n <= 1:
        return
    if hosts and addrs and len(hosts) != len(addrs):
        raise TsaccessError(
            f"host lists {len(hosts)} entries and hostaddr {len(addrs)}; give both the same "
            "number of comma-separated entries (or only one of them)"
        )
    ports = _split(params.get("port") or os.environ.get("PGPORT"))
    if len(ports) not in (0, 1, n):
        raise TsaccessError(
            f"the host list has {n} entries but port has {len(ports)}; give one port for all "
            "hosts or one per host, in the same order"
        )
    for i in range(n):
        host = hosts[i] if hosts else ""
        if addrs and addrs[i]:
            continue  # TCP to this address
        if not host or host.startswith(("/", "@")):
            what = f"{host!r} is a Unix socket" if host else "is empty (the default Unix socket)"
            raise InsecureConnectionError(
                f"entry {i + 1} of the host list {what}: a Unix-socket connection is never "
                "encrypted, so the TLS requirement cannot hold for it. List only TCP hosts "
                "(names or addresses)"
            )
