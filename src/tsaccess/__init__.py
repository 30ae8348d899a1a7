"""tsaccess: make a TimescaleDB/PostgreSQL database safe to share."""

from tsaccess import _compat
from tsaccess.audit import runtime as _audit  # noqa: F401  plugs TsConnection.record_refusal
from tsaccess.client.aio import AsyncTsConnection, connect_async
from tsaccess.client.aio_pool import AsyncScopedPool, create_async_pool
from tsaccess.client.connection import TsConnection, connect
from tsaccess.client.engine import create_async_engine, create_engine
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
    UnverifiedServerWarning,
)
from tsaccess.preflight import aio as _preflight_aio  # noqa: F401  plugs connect_async(preflight=True)
from tsaccess.preflight import connection as _preflight  # noqa: F401  plugs connect(preflight=True)
from tsaccess.preflight.access import my_access

_compat.install()  # old module paths (tsaccess.params, ...) for one release

__version__ = "0.1.0"

__all__ = [
    "ApplyError",
    "AsyncScopedPool",
    "AsyncTsConnection",
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
    "UnverifiedServerWarning",
    "__version__",
    "connect",
    "connect_async",
    "create_async_engine",
    "create_async_pool",
    "create_certificates",
    "create_engine",
    "create_pool",
    "my_access",
    "results",
    "tls_status",
]
