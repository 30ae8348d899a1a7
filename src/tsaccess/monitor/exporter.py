"""The Prometheus face of :class:`~tsaccess.monitor.collect.Monitor`: ``/metrics`` over HTTP
(``prometheus-client``, the optional extra ``tsaccess[monitor]``).

The database is read on a fixed interval, not per HTTP request: however many Prometheus servers
scrape, the database sees one collection per interval, and ``/metrics`` serves the latest
reading (``tsaccess_collect_timestamp_seconds`` says when it was taken).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from tsaccess._log import get_logger
from tsaccess.monitor.collect import Monitor, Reading
from tsaccess.monitor.metrics import METRICS

__all__ = ["Exporter", "exposition", "require_prometheus_client"]

log = get_logger("tsaccess.monitor.exporter")

EXTRA_HINT = "pip install 'tsaccess[monitor]'"


def require_prometheus_client() -> ModuleType:
    """The ``prometheus_client`` module, or :class:`ImportError` naming the extra."""
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(
            f"tsaccess monitor needs the prometheus-client library: {EXTRA_HINT}"
        ) from None
    return prometheus_client


class _ReadingCollector:
    """A ``prometheus_client`` collector that serves a reading (the latest, by default)."""

    def __init__(self, source: Monitor | Reading) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        reading = self._source.last if isinstance(self._source, Monitor) else self._source
        if reading is None:
            return  # nothing collected yet: no sample rather than a false tsaccess_up 0
        families: dict[str, Any] = {}
        for m in METRICS:
            cls = CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily
            families[m.name] = cls(m.name, m.help, labels=list(m.labels))
        for m, labels, value in reading.samples():
            families[m.name].add_metric(list(labels), value)
        for family in families.values():
            if family.samples:
                yield family


def exposition(reading: Reading) -> bytes:
    """``reading`` in Prometheus's text format (what ``/metrics`` serves)."""
    pc = require_prometheus_client()
    registry = pc.CollectorRegistry(auto_describe=False)
    registry.register(_ReadingCollector(reading))
    data: bytes = pc.generate_latest(registry)
    return data


class Exporter:
    """Serve ``/metrics`` for ``monitor`` and collect every ``interval`` seconds."""

    def __init__(self, monitor: Monitor, interval: float) -> None:
        self.pc = require_prometheus_client()
        self.monitor = monitor
        self.interval = interval
        self._server: Any = None
        self._stop = threading.Event()

    def listen(
        self, host: str, port: int, *, certfile: str | None = None, keyfile: str | None = None
    ) -> tuple[str, int]:
        """Start the HTTP server (a daemon thread); returns the address it listens on."""
        registry = self.pc.CollectorRegistry(auto_describe=False)
        registry.register(_ReadingCollector(self.monitor))
        server, _thread = self.pc.start_http_server(
            port, addr=host, registry=registry, certfile=certfile, keyfile=keyfile
        )
        self._server = server
        bound = server.server_address
        log.info("monitor listening", host=bound[0], port=bound[1])
        return str(bound[0]), int(bound[1])

    def run(self, *, collections: int | None = None) -> None:
        """Collect now and every ``interval`` until :meth:`stop` (or ``collections`` times)."""
        done = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            reading = self.monitor.collect()
            log.info(
                "monitor collected",
                up=reading.up,
                seconds=round(reading.seconds, 3),
                drift=reading.drift_steps,
            )
            done += 1
            if collections is not None and done >= collections:
                break
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def stop(self) -> None:
        """End :meth:`run` and the HTTP server."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
