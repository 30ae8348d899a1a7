"""Async pools of TLS-only, role-scoped connections: :class:`AsyncScopedPool`,
:func:`create_async_pool`.

The twin of :mod:`tsaccess.client.pool`: the same checks before any packet
(:func:`tsaccess.client.session.prepare`), the same session opening, the same reset
(:func:`tsaccess.client.reset.reset_gen`: one round trip that restores role, settings,
temporary objects, locks, listeners and keeps only the prepared statements tsaccess can prove
are its own; the client state put back; a connection whose borrower created a custom setting
discarded), the same borrow check (skipped moments after a reset), awaited.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tsaccess.client.aio import AsyncTsConnection, async_connection_class
from tsaccess.client.base import recently_reset
from tsaccess.client.reset import (
    ClientState,
    ResetPlan,
    check_custom_names,
    present_query,
    reset_gen,
)
from tsaccess.client.session import (
    app_name,
    check_after_seconds,
    login_refused,
    pool_kwargs,
    prepare,
)
from tsaccess.client.trust import warn_if_unverified
from tsaccess.errors import TsaccessError

__all__ = [
    "AsyncScopedPool",
    "create_async_pool",
    "present_settings",
    "reset_connection_async",
]


class AsyncScopedPool(AsyncConnectionPool[AsyncTsConnection]):
    """A ``psycopg_pool.AsyncConnectionPool`` of :class:`AsyncTsConnection` for one login user
    and optional role (as :class:`tsaccess.ScopedPool`). Create it with
    :func:`create_async_pool`."""

    user: str
    """The login user of every connection."""
    role: str | None
    """The group role every connection is scoped to."""
    pooler: str | None = None
    _probe: Callable[[], Awaitable[None]] | None = None

    async def _putconn(self, conn: AsyncTsConnection, from_getconn: bool) -> None:
        """Reset a returned connection in the returning task (as
        :meth:`tsaccess.ScopedPool._putconn`), not in a worker task."""
        if from_getconn:
            await super()._putconn(conn, from_getconn)
        else:
            await self._return_connection(conn, from_getconn=False)

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool after one connection attempt made here: a refused login, a role the
        user cannot take, or a server without TLS raises at once (as
        :meth:`tsaccess.ScopedPool.open`)."""
        first: psycopg.OperationalError | None = None
        if self.closed and self._probe is not None:
            try:
                await self._probe()
            except psycopg.OperationalError as exc:
                if login_refused(exc):
                    raise
                first = exc
        try:
            await super().open(wait=wait, timeout=timeout)
        except PoolTimeout as exc:
            if first is None:
                raise
            raise PoolTimeout(f"{exc}; the first connection attempt failed: {first}") from first


async def present_settings(conn: AsyncTsConnection, names: Sequence[str]) -> frozenset[str]:
    """Which of ``names`` exist in this session (as
    :func:`tsaccess.client.reset.custom_settings_present`)."""
    if not names:
        return frozenset()
    autocommit = conn.autocommit
    await conn.set_autocommit(True)  # no transaction left open (a pool refuses a configured one)
    try:
        async with psycopg.AsyncCursor(conn, row_factory=tuple_row) as cur:
            await cur.execute(present_query(names), prepare=False)
            row = await cur.fetchone()
    finally:
        await conn.set_autocommit(autocommit)
    return frozenset(n for n, present in zip(names, row or (), strict=False) if present)


async def _restore_flags(conn: AsyncTsConnection) -> None:
    """Transaction flags back to the server's defaults (only those the borrower changed: each
    setter takes the connection's lock)."""
    if conn.read_only is not None:
        await conn.set_read_only(None)
    if conn.isolation_level is not None:
        await conn.set_isolation_level(None)
    if conn.deferrable is not None:
        await conn.set_deferrable(None)


async def reset_connection_async(
    conn: AsyncTsConnection, plan: ResetPlan, autocommit: bool
) -> None:
    """:func:`tsaccess.client.pool.reset_connection`'s twin (the same generator, awaited)."""
    state = conn._client_state
    if state is None:  # pragma: no cover - configure() always sets it
        raise TsaccessError("this connection was not configured by create_async_pool()")
    async with conn.lock:
        await conn.wait(reset_gen(conn, plan, state))
    conn._reset_at = time.monotonic()
    conn.custom_seen.clear()
    if conn.autocommit != autocommit:
        await conn.set_autocommit(autocommit)
    await _restore_flags(conn)
    conn.set_scoped_settings()  # the borrower's actor (RESET ALL dropped it server-side)
    conn.after_reset()


async def _pooled_reset(conn: AsyncTsConnection) -> None:
    """Behind a pooler: client-side only (as in :mod:`tsaccess.client.pool`)."""
    state = conn._client_state
    if state is None:  # pragma: no cover - configure() always sets it
        raise TsaccessError("this connection was not configured by create_async_pool()")
    state.restore(conn)
    conn.set_scoped_settings()
    await _restore_flags(conn)
    conn.prepare_threshold = None
    conn.after_reset()


async def _check(conn: AsyncTsConnection) -> None:
    """The pool's check behind a pooler: an empty query, which needs no role."""
    with conn._unscoped_block():
        await AsyncConnectionPool.check_connection(conn)


def _checker(check_after: float) -> Callable[[AsyncTsConnection], Awaitable[None]]:
    """The borrow check (as :mod:`tsaccess.client.pool`'s): skipped moments after a reset."""

    async def check(conn: AsyncTsConnection) -> None:
        if not recently_reset(conn, check_after):
            await AsyncConnectionPool.check_connection(conn)

    return check


async def create_async_pool(
    conninfo: str = "",
    *,
    min_size: int = 1,
    max_size: int | None = None,
    role: str | None = None,
    open: bool = True,
    name: str | None = None,
    autocommit: bool = False,
    preflight: bool = False,
    timeout: float = 30.0,
    pooler: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    custom_settings: Sequence[str] = (),
    check_after: float = 1.0,
    **params: Any,
) -> AsyncScopedPool:
    """An async pool of TLS-verified connections for one login user, optionally scoped to
    ``role``: ``pool = await tsaccess.create_async_pool(...)``, then ``async with
    pool.connection() as conn``.

    The arguments, guarantees and errors are those of :func:`tsaccess.create_pool`; its
    connections are :class:`AsyncTsConnection`
    (:class:`~tsaccess.preflight.aio.AsyncPreflightConnection` with ``preflight=True``).
    With ``open=False`` open it with ``await pool.open()`` or ``async with pool``.
    """
    custom = check_custom_names(custom_settings)
    recheck = check_after_seconds(check_after)
    opening = prepare(
        conninfo, pool_kwargs(kwargs, params), role=role, autocommit=autocommit, pooler=pooler
    )
    warn_if_unverified(opening.secure, stacklevel=2)  # once for the pool, not per connection
    cls = async_connection_class(preflight)

    async def configure(conn: AsyncTsConnection) -> None:
        await conn._open_session(opening, preflight)
        await conn.set_autocommit(autocommit)
        conn._client_state = ClientState.of(conn, await present_settings(conn, custom))
        conn._reset_at = time.monotonic()

    plans: dict[str, ResetPlan] = {}

    async def reset(conn: AsyncTsConnection) -> None:
        if opening.pooler is not None:
            await _pooled_reset(conn)
            return
        user = conn.login_user  # read once when it opened (info.user decodes every time)
        plan = plans.get(user)  # one login user per pool: built once
        if plan is None:
            plan = plans[user] = opening.reset_plan(user, custom)
        await reset_connection_async(conn, plan, autocommit)

    connect_kwargs = opening.connect_kwargs(pooled=True)

    async def probe() -> None:
        conn = await cls.connect(**connect_kwargs)
        try:
            await configure(conn)
        finally:
            await conn.close()

    pool = AsyncScopedPool(
        "",
        kwargs=connect_kwargs,
        connection_class=cls,
        min_size=min_size,
        max_size=max_size,
        open=False,
        configure=configure,
        check=_check if opening.pooler is not None else _checker(recheck),
        reset=reset,
        name=name or app_name("tsaccess-pool", opening.secure.user, role),
        timeout=timeout,
    )
    pool.user = opening.secure.user
    pool.role = role
    pool.pooler = opening.pooler
    pool._probe = probe
    if open:
        await pool.open(wait=True, timeout=timeout)
    return pool
