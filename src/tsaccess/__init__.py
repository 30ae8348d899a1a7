"""tsaccess: make a TimescaleDB/PostgreSQL database safe to share."""

from tsaccess.connection import ScopedPool, connect, create_pool
from tsaccess.errors import (
    ApplyError,
    InsecureConnectionError,
    MissingPrivilege,
    PasswordSourceError,
    PolicyError,
    PreflightDenied,
    RoleScopeError,
    ServerStartError,
    TsaccessError,
)
from tsaccess.tls import TlsStatus, create_certificates, tls_status

__version__ = "0.1.0"

__all__ = [
    "ApplyError",
    "InsecureConnectionError",
    "MissingPrivilege",
    "PasswordSourceError",
    "PolicyError",
    "PreflightDenied",
    "RoleScopeError",
    "ScopedPool",
    "ServerStartError",
    "TlsStatus",
    "TsaccessError",
    "__version__",
    "connect",
    "create_certificates",
    "create_pool",
    "tls_status",
]
