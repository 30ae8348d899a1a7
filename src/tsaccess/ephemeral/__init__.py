"""A throwaway PostgreSQL/TimescaleDB server with TLS and SCRAM, for the demo, examples and tests.

Backends, tried in this order by ``backend="auto"``:

1. ``dsn``: an existing server given as ``dsn=`` or ``TSACCESS_TEST_DSN`` (an admin login);
2. ``docker``: a TimescaleDB image through testcontainers, when a Docker engine answers and the
   image is present or can be pulled (else one warning line and the next backend);
3. ``local``: a cluster made with ``initdb`` / ``pg_ctl`` of the installation that
   :func:`find_installation` reports, with TimescaleDB preloaded when it is installed there.

Everything a local or Docker server made is stopped and deleted on ``stop()``, when the ``with``
block ends (also after an exception or Ctrl-C) and at interpreter exit. The library itself never
imports this package: only the CLI, the demo, the examples and the tests do.

:class:`EphemeralCluster` starts a local primary with streaming standbys and PgBouncer in front
(``docs/howto/cluster.md``).
"""

from tsaccess.ephemeral.base import ServerInfo
from tsaccess.ephemeral.cluster import ClusterInfo, EphemeralCluster
from tsaccess.ephemeral.install import PgInstallation, find_bindir, find_installation
from tsaccess.ephemeral.server import Backend, EphemeralServer

__all__ = [
    "Backend",
    "ClusterInfo",
    "EphemeralCluster",
    "EphemeralServer",
    "PgInstallation",
    "ServerInfo",
    "find_bindir",
    "find_installation",
]
