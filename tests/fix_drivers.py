"""Fixture: ``driver``, the sync and the async client behind one face, so that a test written
once runs for both (``tsaccess.connect`` / ``connect_async``, ``create_pool`` /
``create_async_pool``, ``tls_status`` / ``await conn.tls_status()``, ``check`` /
``check_async``).

The async objects run on an event loop in a background thread; :class:`Face` wraps them so the
test calls them like sync ones: coroutines are awaited on that loop, ``with`` runs ``async
with``, iteration runs ``async for``, and setting ``autocommit`` (or ``read_only``, ...) awaits
``set_autocommit``. Several test threads may use the same loop at once (a pool under load).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

import tsaccess
from tsaccess import audit
from tsaccess.preflight import check
from tsaccess.preflight.aio import check_async

_ASYNC_TYPES = (
    psycopg.AsyncConnection,
    psycopg.AsyncCursor,
    psycopg.AsyncServerCursor,
    psycopg.AsyncCopy,
    AsyncConnectionPool,
)
_SETTERS = {"autocommit", "read_only", "isolation_level", "deferrable"}


class Loop:
    """An event loop in a daemon thread; :meth:`run` waits for a coroutine from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, awaitable: Any) -> Any:
        async def wrapper() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def wrap(loop: Loop, value: Any) -> Any:
    if inspect.isawaitable(value):
        value = loop.run(value)
    if isinstance(value, _ASYNC_TYPES):
        return Face(loop, value)
    if hasattr(value, "__aenter__") and not hasattr(value, "__enter__"):
        return Face(loop, value)
    if inspect.isasyncgen(value):
        return Face(loop, value)
    return value


class Face:
    """An async object called like a sync one (see the module docstring)."""

    def __init__(self, loop: Loop, obj: Any) -> None:
        object.__setattr__(self, "_loop", loop)
        object.__setattr__(self, "raw", obj)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if inspect.ismethod(attr):
            return lambda *a, **kw: wrap(self._loop, attr(*a, **kw))
        return wrap(self._loop, attr)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SETTERS and isinstance(self.raw, psycopg.AsyncConnection):
            self._loop.run(getattr(self.raw, f"set_{name}")(value))
        else:
            setattr(self.raw, name, value)

    def __enter__(self) -> Any:
        entered = self._loop.run(self.raw.__aenter__())
        return self if entered is self.raw else wrap(self._loop, entered)

    def __exit__(self, *exc: Any) -> Any:
        return self._loop.run(self.raw.__aexit__(*exc))

    def __iter__(self) -> Iterator[Any]:
        it = self.raw.__aiter__()
        while True:
            try:
                yield self._loop.run(it.__anext__())
            except StopAsyncIteration:
                return

    def __repr__(self) -> str:
        return repr(self.raw)


@dataclass
class Driver:
    """``sync`` or ``async``: the client's entry points, called the same way."""

    name: str
    loop: Loop | None = None

    @property
    def is_async(self) -> bool:
        return self.loop is not None

    def __str__(self) -> str:
        return self.name

    def _call(self, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        return wrap(self.loop, fn(*a, **kw)) if self.loop else fn(*a, **kw)

    def connect(self, *a: Any, **kw: Any) -> Any:
        fn = tsaccess.connect_async if self.loop else tsaccess.connect
        return self._call(fn, *a, **kw)

    def create_pool(self, *a: Any, **kw: Any) -> Any:
        fn = tsaccess.create_async_pool if self.loop else tsaccess.create_pool
        return self._call(fn, *a, **kw)

    def tls_status(self, conn: Any) -> tsaccess.TlsStatus:
        return conn.tls_status() if self.loop else tsaccess.tls_status(conn)

    def check(self, conn: Any, statement: str) -> Any:
        if self.loop:
            return self.loop.run(check_async(conn.raw, statement))
        return check(conn, statement)

    def set_actor(self, conn: Any, actor: str | None, request_id: str | None = None) -> None:
        if self.loop:
            conn.set_actor(actor, request_id)
        else:
            audit.set_actor(conn, actor, request_id)

    def raw(self, obj: Any) -> Any:
        """The psycopg object behind a face (the object itself for the sync driver)."""
        return obj.raw if isinstance(obj, Face) else obj


@pytest.fixture(scope="session")
def _async_loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    """The sync client, then the async one: the same test for both."""
    if request.param == "sync":
        return Driver("sync")
    return Driver("async", request.getfixturevalue("_async_loop"))
