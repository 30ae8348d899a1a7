"""What every benchmark shares: timing, reporting, scratch databases."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
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


def report(key: str, value: float, unit: str, note: str = "") -> None:
    RESULTS[key] = {"value": value, "unit": unit, "note": note}
    shown = f"{value:10.3f} {unit}" if unit != "x" else f"{value:10.2f} x"
    print(f"  {key:58} {shown}  {note}")


def create_db(info: ServerInfo, name: str) -> ServerInfo:
    with tsaccess.connect(**info.params(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return info.with_database(name)
