"""Everything a connection is: parameters and the TLS policy, host lists, certificates, the
connection and its role scope, pools and their reset, the transaction-pooler scope, standbys and
the primary, typed results.

The client knows nothing of policies, plans, the audit trail or pre-flight: those plug into
:class:`~tsaccess.client.connection.TsConnection` through its typed hooks.
"""

from tsaccess.client.connection import TsConnection, connect
from tsaccess.client.pool import ScopedPool, create_pool
from tsaccess.client.results import Results, results
from tsaccess.client.tls import TlsStatus, create_certificates, tls_status

__all__ = [
    "Results",
    "ScopedPool",
    "TlsStatus",
    "TsConnection",
    "connect",
    "create_certificates",
    "create_pool",
    "results",
    "tls_status",
]
