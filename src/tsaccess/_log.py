"""Library logging: stdlib loggers named ``tsaccess.*`` wrapped by structlog.

The library never configures logging. Events go to the stdlib logger ``tsaccess.<module>``,
which has a ``NullHandler``: nothing is printed until the application (or the ``tsaccess``
CLI) configures ``logging`` or structlog. ``structlog.testing.capture_logs()`` sees them.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

logging.getLogger("tsaccess").addHandler(logging.NullHandler())


def get_logger(name: str) -> Any:
    """A structlog bound logger over the stdlib logger ``name`` (``tsaccess.<module>``)."""
    return structlog.wrap_logger(
        logging.getLogger(name), wrapper_class=structlog.stdlib.BoundLogger
    )
