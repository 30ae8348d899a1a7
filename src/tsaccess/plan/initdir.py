"""The one container start-up script tsaccess uses with the postgres/TimescaleDB images.

Both the throwaway Docker server (``tsaccess.ephemeral``) and the rendered
``init/docker-compose.yml`` start the image through :func:`entrypoint_script`: it installs the
server certificate and key from a read-only mount (owned by ``postgres``, key mode 0600) and a
``pg_hba.conf`` that accepts only TLS with SCRAM, then hands over to the image's own
``docker-entrypoint.sh`` so its contract (``POSTGRES_*`` variables, ``-c`` arguments,
``/docker-entrypoint-initdb.d``) stays intact.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["HBA_LINES", "SSL_MOUNT", "entrypoint_script"]

SSL_MOUNT = "/tsaccess-ssl"
"""Where the folder with ``server.crt`` and ``server.key`` is mounted (read-only)."""

HBA_LINES = (
    "local all all scram-sha-256",
    "hostssl all all all scram-sha-256",
    "hostnossl all all all reject",
)
"""Unix socket and TLS logins with SCRAM only; plain TCP is rejected."""

_PGHOME = "/var/lib/postgresql"


def entrypoint_script(settings: Sequence[str] = ()) -> str:
    """The ``sh -c`` script of the container: TLS files in place, then ``docker-entrypoint.sh``.

    Args:
        settings: extra ``name=value`` server settings, passed as ``-c name=value``.
    """
    hba = "\\n".join(HBA_LINES) + "\\n"
    args = [
        "ssl=on",
        f"ssl_cert_file={_PGHOME}/server.crt",
        f"ssl_key_file={_PGHOME}/server.key",
        f"hba_file={_PGHOME}/pg_hba.conf",
        "ssl_min_protocol_version=TLSv1.2",
        "password_encryption=scram-sha-256",
        "shared_preload_libraries=timescaledb",
        *settings,
    ]
    return (
        f"cp {SSL_MOUNT}/server.crt {SSL_MOUNT}/server.key {_PGHOME}/ &&\n"
        f"printf '{hba}' > {_PGHOME}/pg_hba.conf &&\n"
        f"chown postgres {_PGHOME}/server.crt {_PGHOME}/server.key {_PGHOME}/pg_hba.conf &&\n"
        f"chmod 600 {_PGHOME}/server.key &&\n"
        "exec docker-entrypoint.sh postgres " + " ".join(f"-c {a}" for a in args)
    )
