"""Deprecated: ``tsaccess.pool`` moved to :mod:`tsaccess.client.pool` (create_pool and ScopedPool).

This thin re-export keeps old imports working for one release and warns once per import.
"""

import warnings

from tsaccess.client.pool import *  # noqa: F403
from tsaccess.client.pool import __all__ as __all__

warnings.warn(
    "tsaccess.pool is deprecated and will be removed in the next release: "
    "import from tsaccess.client.pool",
    DeprecationWarning,
    stacklevel=2,
)
