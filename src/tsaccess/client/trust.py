"""Whether the server's certificate is verified, and the warning when it is not.

``sslmode=require`` is the floor (:mod:`tsaccess.client.params` refuses anything weaker): the
session is encrypted, but without a root certificate libpq does not check who answers.
:func:`server_verification` decides it as libpq does; :func:`warn_if_unverified` makes it heard
(:class:`~tsaccess.UnverifiedServerWarning`, once per target and process), called by
``connect()`` and ``create_pool()``.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

from tsaccess.client.params import SecureParams, home_directory
from tsaccess.errors import UnverifiedServerWarning

__all__ = ["libpq_verification", "server_verification", "warn_if_unverified"]


def server_verification(sslmode: str, sslrootcert: str | None) -> str | None:
    """How libpq verifies the server's certificate with these effective settings, or None when
    it does not (the session is encrypted, the server unproven).

    ``verify-full`` checks the CA and the host name, ``verify-ca`` the CA. ``require`` checks the
    CA when a root certificate file exists (``sslrootcert``, else ``~/.postgresql/root.crt``):
    libpq then behaves as ``verify-ca`` (``fe-secure-openssl.c``, ``initialize_SSL``).
    """
    if sslmode == "verify-full":
        return "verify-full: CA and host name"
    if sslmode == "verify-ca":
        return "verify-ca: CA, not the host name"
    root = sslrootcert or f"{home_directory()}/.postgresql/root.crt"
    if root == "system":
        return "verify-full: the system's CAs"  # libpq 16+ refuses anything weaker with it
    if sslmode == "require" and os.path.isfile(root):
        return f"verify-ca: sslmode=require with the root certificate {root}, not the host name"
    return None


def libpq_verification(pgconn: Any) -> str | None:
    """How libpq verified the server of this open connection (its effective ``sslmode`` and
    ``sslrootcert``, whatever source set them), or None when it did not."""
    used = {o.keyword: o.val for o in pgconn.info}
    mode, root = used.get(b"sslmode"), used.get(b"sslrootcert")
    return server_verification(mode.decode() if mode else "", root.decode() if root else None)


_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def warn_if_unverified(secure: SecureParams, *, stacklevel: int = 2) -> bool:
    """Issue :class:`~tsaccess.UnverifiedServerWarning` when the server will not be verified,
    once per target (``host:port``) and process; returns whether it warned.

    ``stacklevel`` counts from the caller of this function (2: the caller's caller).
    """
    if server_verification(secure.sslmode, secure.sslrootcert) is not None:
        return False
    host = secure.kwargs.get("host") or secure.kwargs.get("hostaddr") or ""
    target = f"{host}:{secure.kwargs.get('port') or 5432}"
    with _WARNED_LOCK:
        if target in _WARNED:
            return False
        _WARNED.add(target)
    warnings.warn(
        UnverifiedServerWarning(
            f"the server certificate of {target} is not verified (sslmode={secure.sslmode} "
            "without a root certificate): the session is encrypted, but anyone in between could "
            "pose as the server and read the password. Verify it: give sslrootcert=<the "
            "server's CA certificate> (then tsaccess uses sslmode=verify-full), set "
            "PGSSLROOTCERT, or put the CA certificate at ~/.postgresql/root.crt"
        ),
        stacklevel=stacklevel + 1,
    )
    return True
