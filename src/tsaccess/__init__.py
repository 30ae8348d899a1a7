"""tsaccess: make a TimescaleDB/PostgreSQL database safe to share."""

from tsaccess.connection import ScopedPool, TsConnection, connect, create_pool
from tsaccess.errors import (
    ApplyError,
    InsecureConnectionError,
    MissingPrivilege,
    NoPrimaryError,
    PasswordSourceError,
    PolicyError,
    PolicyErrors,
    PreflightDenied,
    ReplicaLagError,
    RoleScopeError,
    ServerStartError,
    StandbyError,
    TargetsError,
    TsaccessError,
)
from tsaccess.preflight import connection as _preflight  # noqa: F401  plugs connect(preflight=True)
from tsaccess.tls import TlsStatus, create_certificates, tls_status

__version__ = "0.1.0"

__all__ = [
    "ApplyError",
    "InsecureConnectionError",
    "MissingPrivilege",
    "NoPrimaryError",
    "PasswordSourceError",
    "PolicyError",
    "PolicyErrors",
    "PreflightDenied",
    "ReplicaLagError",
    "RoleScopeError",
    "ScopedPool",
    "ServerStartError",
    "StandbyError",
    "TargetsError",
    "TlsStatus",
    "TsConnection",
    "TsaccessError",
    "__version__",
    "connect",
    "create_certificates",
    "create_pool",
    "tls_status",
]
