"""``EphemeralServer``: a throwaway TLS + SCRAM server from one of three backends."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

from tsaccess._log import get_logger
from tsaccess.ephemeral import docker, local
from tsaccess.ephemeral.base import ServerInfo, Started, from_dsn, has_timescaledb
from tsaccess.ephemeral.docker import DockerOptions
from tsaccess.errors import ServerStartError

__all__ = ["Backend", "EphemeralServer"]

log = get_logger("tsaccess.ephemeral")

Backend = Literal["auto", "dsn", "docker", "local"]


class EphemeralServer:
    """Start a throwaway server; use as a context manager or call ``start()`` / ``stop()``.

    Args:
        dsn: an existing server (admin login) to use instead of starting one. Defaults to
            ``TSACCESS_TEST_DSN``.
        backend: ``auto`` (dsn, then docker when its image is there, then local), or force one.
            Defaults to ``TSACCESS_TEST_BACKEND``, else ``auto``.
        image: the Docker image (default ``TSACCESS_TEST_IMAGE``, else the official
            ``timescale/timescaledb`` tag for the local PostgreSQL major).
        keep: leave the server running on ``stop()`` (the demo's ``--keep``).
        init_dir: docker backend only: a folder mounted at ``/docker-entrypoint-initdb.d``.
        environment: docker backend only: extra container variables (e.g. the passwords the
            ``init_dir`` scripts read).
        dbname: docker backend only: ``POSTGRES_DB``.
        timescaledb: False for a plain PostgreSQL server (local backend only) even where
            TimescaleDB is installed; None (default): TimescaleDB whenever available.
        settings: local backend only: more ``postgresql.conf`` settings, values quoted as in
            the file (``{"log_destination": "'jsonlog'", "logging_collector": "on"}``).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        backend: Backend | None = None,
        image: str | None = None,
        keep: bool = False,
        init_dir: Path | None = None,
        environment: Mapping[str, str] | None = None,
        dbname: str = "postgres",
        timescaledb: bool | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self._dsn = dsn if dsn is not None else os.environ.get("TSACCESS_TEST_DSN") or None
        chosen = backend or os.environ.get("TSACCESS_TEST_BACKEND") or "auto"
        if chosen not in get_args(Backend):
            raise ServerStartError(
                f"unknown backend {chosen!r} (from TSACCESS_TEST_BACKEND or backend=); use one "
                f"of {', '.join(get_args(Backend))}"
            )
        self._backend: Backend = chosen  # type: ignore[assignment]  # checked just above
        self._image = image
        self._init_dir = init_dir
        self._environment = dict(environment or {})
        self._dbname = dbname
        self._timescaledb = timescaledb
        if timescaledb is False and self._backend not in ("local", "auto"):
            raise ServerStartError(
                "timescaledb=False needs the local backend (a Docker image or an existing server "
                "has TimescaleDB or not by itself); use backend='local'"
            )
        self._settings = dict(settings or {})
        if self._settings and self._backend not in ("local", "auto"):
            raise ServerStartError(
                "settings= needs the local backend (a Docker image or an existing server is "
                "configured by itself); use backend='local'"
            )
        self.keep = keep
        self.info: ServerInfo | None = None
        self._cleanup: weakref.finalize[Any, EphemeralServer] | None = None

    def __repr__(self) -> str:
        state = (
            f"{self.info.backend} on {self.info.host}:{self.info.port}" if self.info else "stopped"
        )
        return f"<EphemeralServer {state}>"

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> ServerInfo:
        """Start (or attach to) the server and wait until a real TLS query succeeds."""
        if self.info is not None:
            return self.info
        t0 = time.perf_counter()
        backend = self._backend
        started: Started | None = None
        if backend == "auto":
            own = self._timescaledb is False or bool(self._settings)  # only local can
            backend = "dsn" if self._dsn and not own else "local"
            if not self._dsn and not own:
                started = docker.start_if_available(self._docker_options())
        if started is None:
            if backend == "dsn":
                if not self._dsn:
                    raise ServerStartError("backend 'dsn' needs dsn= or TSACCESS_TEST_DSN")
                info = from_dsn(self._dsn)
                started = info, lambda: None
            elif backend == "docker":
                started = docker.start(self._docker_options())
            else:
                started = local.start(
                    timescaledb=self._timescaledb is not False, settings=self._settings
                )
        info, stop = started
        self._cleanup = weakref.finalize(self, stop)
        try:
            info = replace(info, timescaledb=has_timescaledb(info))
        except BaseException:
            self.stop()
            raise
        self.info = info
        log.info(
            "server ready",
            backend=info.backend,
            port=info.port,
            timescaledb=info.timescaledb,
            installation=info.installation,
            seconds=round(time.perf_counter() - t0, 3),
        )
        return info

    def stop(self) -> None:
        """Stop the server and delete its files (unless ``keep``). Safe to call twice."""
        if self._cleanup is not None:
            if self.keep:
                self._cleanup.detach()  # leave it running, also at interpreter exit
            else:
                self._cleanup()
        self._cleanup = None
        self.info = None

    def _docker_options(self) -> Any:
        return DockerOptions(
            image=self._image,
            init_dir=self._init_dir,
            environment=self._environment,
            dbname=self._dbname,
        )
