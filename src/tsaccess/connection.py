"""Deprecated: ``tsaccess.connection`` moved to :mod:`tsaccess.client.connection` (connect,
TsConnection and the connection hooks).

This thin re-export keeps old imports working for one release and warns once per import.
"""

import warnings

from tsaccess.client.connection import *  # noqa: F403
from tsaccess.client.connection import __all__ as __all__

warnings.warn(
    "tsaccess.connection is deprecated and will be removed in the next release: "
    "import from tsaccess.client.connection",
    DeprecationWarning,
    stacklevel=2,
)
