"""Fixture: a throwaway primary + 2 streaming standbys + PgBouncer (transaction mode, one server
connection per pool), started once per test module that asks for ``cluster``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tsaccess
from tsaccess.ephemeral import ClusterInfo, EphemeralCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterInfo]:
    c = EphemeralCluster(standbys=2, pgbouncer=True, pool_mode="transaction", default_pool_size=1)
    try:
        info = c.start()
    except tsaccess.ServerStartError as exc:
        pytest.fail(f"cannot start the throwaway cluster: {exc}")
    try:
        yield info
    finally:
        c.stop()
