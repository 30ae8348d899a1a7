"""tsaccess: make a TimescaleDB/PostgreSQL database safe to share."""

from tsaccess._results import Results, results
from tsaccess.audit import runtime as _audit  # noqa: F401  plugs TsConnection.record_refusal
from tsaccess.connection import TsConnection, connect
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
from tsaccess.pool import ScopedPool, create_pool
from tsaccess.preflight import connection as _preflight  # noqa: F401  plugs connect(preflight=True)
from tsaccess.preflight.access import my_access
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
    "Results",
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
    "my_access",
    "results",
    "tls_status",
]
