"""Old module paths of the flat layout (before the packages), kept for one release.

``import tsaccess.params`` (and the other names in :data:`MOVED`) still works: a meta-path finder
hands back the module at its new place — the same module object, so classes and ``isinstance``
agree — with a :class:`DeprecationWarning` naming the new path. ``tsaccess.connection``,
``tsaccess.bootstrap`` and ``tsaccess.pool`` have typed re-export modules of their own;
``tsaccess.audit.install`` is :func:`tsaccess.plan.install_audit`. Removed in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "install"]

MOVED: dict[str, str] = {
    "tsaccess.catalog_timescale": "tsaccess.catalog.timescale",
    "tsaccess.cli_plan": "tsaccess.cli.plan",
    "tsaccess.cli_tools": "tsaccess.cli.tools",
    "tsaccess.demo_timescale": "tsaccess.demo.timescale",
    "tsaccess.hosts": "tsaccess.client.hosts",
    "tsaccess.matrix": "tsaccess.verify.matrix",
    "tsaccess.params": "tsaccess.client.params",
    "tsaccess.phases_slices": "tsaccess.plan.phases.slices",
    "tsaccess.phases_timescale": "tsaccess.plan.phases.timescale",
    "tsaccess.plan_format": "tsaccess.plan.format",
    "tsaccess.plan_steps": "tsaccess.plan.build",
    "tsaccess.pooler": "tsaccess.client.pooler",
    "tsaccess.prune": "tsaccess.plan.phases.prune",
    "tsaccess.render_init": "tsaccess.plan.render_init",
    "tsaccess.savedplan": "tsaccess.plan.saved",
    "tsaccess.targets": "tsaccess.plan.targets",
    "tsaccess.tls": "tsaccess.client.tls",
    "tsaccess.topology": "tsaccess.client.topology",
    "tsaccess.verify_timescale": "tsaccess.verify.timescale",
}
"""Old dotted path -> new dotted path."""


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} is deprecated and will be removed in the next release: "
            f"import from {self.new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at its new place is already loaded."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new)) if new else None


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (after the standard finders)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
