"""tsaccess: make a TimescaleDB/PostgreSQL database safe to share."""

from tsaccess import _compat
from tsaccess.audit import runtime as _audit  # noqa: F401  plugs TsConnection.record_refusal
from tsaccess.client.connection import TsConnection, connect
from tsaccess.client.pool import ScopedPool, create_pool
from tsaccess.client.results import Results, results
from tsaccess.client.tls import TlsStatus, create_certificates, tls_status
from tsaccess.errors import (
    ApplyError,
    AuditChainError,
    AuditTamperedError,
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
from tsaccess.preflight.access import my_access

_compat.install()  # old module paths (tsaccess.params, ...) for one release

__version__ = "0.1.0"

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
