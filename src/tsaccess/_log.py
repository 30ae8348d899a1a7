"""Library logging: stdlib loggers named ``tsaccess.*`` wrapped by ``structlog.stdlib``.

The library never configures logging. Events go to the stdlib logger ``tsaccess.<module>``,
which has a ``NullHandler``: nothing is printed until the application (or the ``tsaccess``
CLI) configures ``logging``.

Each event is first filtered by the stdlib logger's effective level
(``structlog.stdlib.filter_by_level``): an event below it is dropped before anything is
rendered. A kept event then goes

* through the application's structlog processors when it configured structlog
  (``structlog.configure``; this is also how ``structlog.testing.capture_logs()`` sees events);
* otherwise to stdlib *unrendered* (``structlog.stdlib.render_to_log_kwargs``): the event name is
  the record's message and the key/value pairs are record attributes, so the application's
  ``logging`` formatters (``structlog.stdlib.ProcessorFormatter`` with ``ExtraAdder``, or any
  other) decide the format; there is no second timestamp.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

__all__ = ["PROCESSORS", "get_logger"]

logging.getLogger("tsaccess").addHandler(logging.NullHandler())


def _hand_over(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The application's structlog processors if it configured structlog, else stdlib."""
    if structlog.is_configured():
        result: Any = event_dict
        for processor in structlog.get_config()["processors"]:
            result = processor(logger, method_name, result)
        return result
    return structlog.stdlib.render_to_log_kwargs(logger, method_name, event_dict)


PROCESSORS: list[Processor] = [structlog.stdlib.filter_by_level, _hand_over]
"""The chain of every ``tsaccess`` logger: level filter first, rendering last."""


def get_logger(name: str) -> Any:
    """A structlog bound logger over the stdlib logger ``name`` (``tsaccess.<module>``)."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )
