"""The Docker backend: a postgres/TimescaleDB image through testcontainers.

The image must keep the official image's contract (``POSTGRES_PASSWORD``, ``POSTGRES_DB``,
``-c name=value`` arguments, ``/docker-entrypoint-initdb.d``): ``timescale/timescaledb`` or a
local build of it (``TSACCESS_TEST_IMAGE``). The container starts through the same script as the
rendered ``init/docker-compose.yml`` (:func:`tsaccess.plan.initdir.entrypoint_script`): TLS on, SCRAM,
plain TCP rejected.

Networking: with a bridge network the container's 5432 is mapped to a free host port; where the
engine has no bridge network (``dockerd --bridge=none``) the container shares the host's network
and listens on a free port of 127.0.0.1 only. ``TSACCESS_DOCKER_NETWORK=host|bridge`` chooses.
``DOCKER_HOST`` is honoured (through the Docker SDK).

Containers carry the labels ``tsaccess.ephemeral`` and ``tsaccess.pid``; they are removed on
``stop()``, at interpreter exit, and — for a process that was killed before it could — by the next
start on the same machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tsaccess._log import get_logger
from tsaccess.client.tls import create_certificates
from tsaccess.ephemeral.base import ADMIN, ServerInfo, Started, free_port, wait_ready
from tsaccess.ephemeral.engine import probe
from tsaccess.ephemeral.install import find_installation
from tsaccess.errors import ServerStartError
from tsaccess.plan.initdir import SSL_MOUNT, entrypoint_script

__all__ = ["DockerOptions", "ImageUnavailable", "default_image", "start", "start_if_available"]

log = get_logger("tsaccess.ephemeral")

_LABEL = "tsaccess.ephemeral"
_PID_LABEL = "tsaccess.pid"
_HOST_LABEL = "tsaccess.host"


class ImageUnavailable(ServerStartError):
    """The Docker engine answers but the image is neither present nor pullable."""

    __module__ = "tsaccess"


@dataclass(frozen=True)
class DockerOptions:
    """What the docker backend should start."""

    image: str | None = None
    init_dir: Path | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    dbname: str = "postgres"


def default_image() -> str:
    """``TSACCESS_TEST_IMAGE``, else the official TimescaleDB tag for the local major."""
    env = os.environ.get("TSACCESS_TEST_IMAGE")
    if env:
        return env
    try:
        major = find_installation().major
    except ServerStartError:
        major = 17
    return f"timescale/timescaledb:latest-pg{major}"


def _client() -> Any | None:
    """A Docker SDK client when an engine answers (honours ``DOCKER_HOST``), else None."""
    try:
        import docker  # type: ignore[import-untyped]  # testcontainers' dependency
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:
        return None
    return client


def _ensure_image(client: Any, image: str) -> None:
    import docker

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise ImageUnavailable(f"cannot inspect Docker image {image!r}: {exc}") from None
    try:
        log.info("pulling image", image=image)
        client.images.pull(image)
    except docker.errors.APIError as exc:
        reason = str(exc).splitlines()[0][:200]
        raise ImageUnavailable(
            f"Docker image {image!r} is not present and cannot be pulled ({reason}). Pull or "
            "build it (e.g. '../shared/docker/build-image.sh' prints a local image name), set "
            "TSACCESS_TEST_IMAGE to an image you have, or use backend='local'."
        ) from None


def _network_mode(client: Any) -> str:
    chosen = os.environ.get("TSACCESS_DOCKER_NETWORK", "").strip().lower()
    if chosen in ("host", "bridge"):
        return chosen
    if chosen:
        raise ServerStartError(
            f"TSACCESS_DOCKER_NETWORK={chosen!r} is not understood; use 'host' or 'bridge'"
        )
    return "bridge" if client.networks.list(names=["bridge"]) else "host"


def _reap(client: Any) -> None:
    """Remove containers of tsaccess processes on this machine that died before their cleanup."""
    me = socket.gethostname()
    for c in client.containers.list(all=True, filters={"label": _LABEL}):
        labels = c.labels or {}
        if labels.get(_HOST_LABEL) != me:
            continue
        try:
            os.kill(int(labels.get(_PID_LABEL, "0")), 0)
            continue  # its owner still runs
        except (OSError, ValueError):
            pass
        with contextlib.suppress(Exception):
            c.remove(force=True, v=True)
            log.info("removed a container left by a dead process", container=c.short_id)


def start_if_available(opts: DockerOptions) -> Started | None:
    """``backend="auto"``: a container when Docker answers and the image is there, else None.

    A missing image is one warning line, then the caller falls back to the local backend.
    """
    client = _client()
    if client is None:
        return None
    image = opts.image or default_image()
    try:
        _ensure_image(client, image)
    except ImageUnavailable:
        log.warning(
            "Docker answers but the image is unavailable (not present, pull failed): using the"
            " local backend; set TSACCESS_TEST_IMAGE to an image you have to use Docker",
            image=image,
        )
        client.close()
        return None
    client.close()
    return start(opts)


def start(opts: DockerOptions) -> Started:
    """Start a container; returns it and the function that removes it."""
    client = _client()
    if client is None:
        cause = probe() or "no Docker engine answers (checked DOCKER_HOST or the local socket)"
        raise ServerStartError(
            f"{cause}; start one (e.g. 'dockerd'), set DOCKER_HOST, or use backend='local'"
        )
    try:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer
    except ImportError:  # pragma: no cover - the 'docker' extra is missing
        raise ServerStartError(
            "the docker backend needs testcontainers: pip install 'tsaccess[docker]'"
        ) from None
    image = opts.image or default_image()
    _ensure_image(client, image)
    _reap(client)
    network = _network_mode(client)
    client.close()
    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        # The reaper is an image of its own, unavailable offline; tsaccess removes its
        # containers itself (stop(), atexit, and _reap for killed processes).
        testcontainers_config.ryuk_disabled = True

    workdir = Path(tempfile.mkdtemp(prefix="tsaccess-docker-"))
    create_certificates(workdir, ("localhost", "127.0.0.1", "::1"))
    password = secrets.token_urlsafe(24)
    settings: list[str] = []
    container = DockerContainer(image)
    if network == "host":
        port = free_port()
        settings.append("listen_addresses=127.0.0.1")
        container = container.with_env("PGPORT", str(port))
        kwargs: dict[str, Any] = {"network_mode": "host"}
    else:
        port = 0
        container = container.with_exposed_ports(5432)
        kwargs = {}
    container = (
        container.with_env("POSTGRES_PASSWORD", password)
        .with_env("POSTGRES_USER", ADMIN)
        .with_env("POSTGRES_DB", opts.dbname)
        .with_env("TIMESCALEDB_TELEMETRY", "off")
        .with_volume_mapping(str(workdir), SSL_MOUNT, "ro")
        .with_kwargs(
            entrypoint=["sh", "-c", entrypoint_script(settings)],
            labels={
                _LABEL: "1",
                _PID_LABEL: str(os.getpid()),
                _HOST_LABEL: socket.gethostname(),
            },
            **kwargs,
        )
    )
    for key, value in opts.environment.items():
        container = container.with_env(key, value)
    if opts.init_dir is not None:
        container = container.with_volume_mapping(
            str(Path(opts.init_dir).resolve()), "/docker-entrypoint-initdb.d", "ro"
        )
    stop = partial(_remove, container, workdir)
    try:
        container.start()
        if network == "bridge":
            host = container.get_container_host_ip()
            port = int(container.get_exposed_port(5432))
        else:
            host = "127.0.0.1"
        info = ServerInfo(
            host=host,
            port=port,
            user=ADMIN,
            password=password,
            dbname=opts.dbname,
            sslrootcert=str(workdir / "ca.crt"),
            backend="docker",
            workdir=workdir,
            installation=f"Docker image {image} ({network} network)",
        )
        wait_ready(info, timeout=180, log_tail=partial(_logs, container))
    except BaseException:
        stop()
        raise
    return info, stop


def _logs(container: Any) -> str:
    try:
        out, err = container.get_logs()
        return str((out + err).decode(errors="replace")[-2000:])
    except Exception as exc:
        return f"(no logs: {exc.__class__.__name__})"


def _remove(container: Any, workdir: Path) -> None:
    with contextlib.suppress(Exception):
        container.stop()  # removes the container and its anonymous volumes
    shutil.rmtree(workdir, ignore_errors=True)
