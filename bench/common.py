"""What every benchmark shares: timing, reporting, scratch databases."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psycopg import sql

import tsaccess
from tsaccess.ephemeral import ServerInfo

RESULTS: dict[str, Any] = {}
"""Every figure of the run, by key (written with ``--json``)."""


def median_of(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    rounds: int,
    per_round: int,
    prepare: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one figure per round (the median of its
    ``per_round`` calls in that round). Within a round the variants take turns call by call
    (the order rotating), so that drift and bursts of load on a shared machine hit all of
    them alike. ``prepare(label)`` runs before each variant's first call of a round."""
    labels = list(variants)
    out: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        calls: dict[str, list[float]] = {label: [] for label in labels}
        for label in labels:
            if prepare is not None:
                prepare(label)
            variants[label]()  # warm
        for i in range(per_round):
            k = (i + r) % len(labels)
            for label in labels[k:] + labels[:k]:
                fn = variants[label]
                t0 = time.perf_counter()
                fn()
                calls[label].append(time.perf_counter() - t0)
        for label in labels:
            out[label].append(statistics.median(calls[label]))
    return out


def spread(samples: Sequence[float], scale: float = 1.0) -> str:
    """``[min-max, n rounds]`` of per-round figures."""
    return f"[{min(samples) * scale:.3g}-{max(samples) * scale:.3g}, {len(samples)} rounds]"


def ratio_spread(samples: Sequence[float], base: Sequence[float]) -> tuple[float, str]:
    """The ratio of medians, and the spread of the per-round ratios (rounds are paired: both
    variants ran in the same round)."""
    per_round = [s / b for s, b in zip(samples, base, strict=True)]
    ratio = statistics.median(samples) / statistics.median(base)
    return ratio, f"round ratios {min(per_round):.2f}-{max(per_round):.2f}"


def report(key: str, value: float, unit: str, note: str = "") -> None:
    RESULTS[key] = {"value": value, "unit": unit, "note": note}
    shown = f"{value:10.3f} {unit}" if unit != "x" else f"{value:10.2f} x"
    print(f"  {key:58} {shown}  {note}")


def create_db(info: ServerInfo, name: str) -> ServerInfo:
    with tsaccess.connect(**info.params(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return info.with_database(name)
