"""A stable digest of plain data (dataclasses, mappings, sets): the same data, the same digest.

Sets and mappings are sorted, so the digest does not depend on hash seeds or read order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Set
from typing import Any

__all__ = ["canonical", "digest"]


def canonical(obj: Any, *, skip: frozenset[str] = frozenset()) -> Any:
    """``obj`` as JSON-able data with sets and mappings in a fixed order."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: canonical(getattr(obj, f.name), skip=skip)
            for f in dataclasses.fields(obj)
            if f.name not in skip
        }
    if isinstance(obj, Mapping):
        items = [[canonical(k, skip=skip), canonical(v, skip=skip)] for k, v in obj.items()]
        return sorted(items, key=lambda kv: json.dumps(kv[0], sort_keys=True))
    if isinstance(obj, Set):
        return sorted((canonical(x, skip=skip) for x in obj), key=json.dumps)
    if isinstance(obj, list | tuple):
        return [canonical(x, skip=skip) for x in obj]
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def digest(*objs: Any, skip: frozenset[str] = frozenset()) -> str:
    """SHA-256 (hex) of the canonical form of ``objs``."""
    text = json.dumps([canonical(o, skip=skip) for o in objs], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
