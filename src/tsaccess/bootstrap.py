"""Deprecated: ``tsaccess.bootstrap`` moved to :mod:`tsaccess.plan.compose` (plan, apply and
render_init).

This thin re-export keeps old imports working for one release and warns once per import.
"""

import warnings

from tsaccess.plan.compose import *  # noqa: F403
from tsaccess.plan.compose import __all__ as __all__

warnings.warn(
    "tsaccess.bootstrap is deprecated and will be removed in the next release: "
    "import from tsaccess.plan.compose",
    DeprecationWarning,
    stacklevel=2,
)
