"""Pools of TLS-only, role-scoped connections: :class:`ScopedPool`, :func:`create_pool`.

Each connection is opened and verified as :func:`tsaccess.client.connection.connect` does (TLS, role
scope, ``application_name``), and reset when handed back, in one round trip (role, settings,
temporary objects, locks, listeners, cursors, and every prepared statement tsaccess cannot prove
is its own) and on the client (flags, factories, adapters, handlers, psycopg's statement cache:
see :mod:`tsaccess.client.reset`) so nothing leaks to the next borrower; a reset that fails
discards the connection. A borrow checks the connection with a round trip unless its reset
finished moments ago (``check_after``): that reset's round trip is the same proof of life.
Behind a transaction-mode pooler the reset is client-side only, and every borrow is checked.

The async twin, :mod:`tsaccess.client.aio_pool`, makes the same decisions
(:class:`~tsaccess.client.reset.ResetPlan`, :mod:`tsaccess.client.session`) with ``await``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from tsaccess.client.base import recently_reset
from tsaccess.client.connection import TsConnection, _connection_class
from tsaccess.client.reset import ClientState, ResetPlan, check_custom_names, reset_gen
from tsaccess.client.session import (
    app_name,
    check_after_seconds,
    login_refused,
    pool_kwargs,
    prepare,
)
from tsaccess.client.trust import warn_if_unverified
from tsaccess.errors import TsaccessError

__all__ = ["ScopedPool", "create_pool"]


class ScopedPool(ConnectionPool[TsConnection]):
    """A ``psycopg_pool.ConnectionPool`` of :class:`TsConnection` for one login user and
    optional role.

    Connections are TLS-verified and scoped when created, checked on borrow, and reset when
    handed back. Create it with :func:`create_pool`.
    """

    user: str
    """The login user of every connection."""
    role: str | None
    """The group role every connection is scoped to."""
    pooler: str | None = None
    """The transaction-mode pooler the connections go through (see :mod:`tsaccess.client.pooler`)."""
    _probe: Callable[[], None] | None = None

    def _putconn(self, conn: TsConnection, from_getconn: bool) -> None:
        """Reset a returned connection here, in the returning thread, as psycopg_pool does
        for pools without a reset function: one round trip, and the next borrower is not kept
        waiting on a worker thread's wake-up (two thread switches that cost more than the
        reset's round trip on a busy machine). A connection that failed its borrow check
        still goes to a worker."""
        if from_getconn:
            super()._putconn(conn, from_getconn)
        else:
            self._return_connection(conn, from_getconn=False)

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool (as ``psycopg_pool.ConnectionPool.open``) after one connection attempt
        made here: a refused login (wrong password, unknown user or database, ``pg_hba.conf``),
        a role the user cannot take, or a server without TLS raises at once, not as a
        ``PoolTimeout`` later. Other failures (server not up yet) leave the pool retrying as
        psycopg_pool does; a ``PoolTimeout`` then has the first failure as its cause."""
        first = _probe_first(self._probe) if self.closed and self._probe else None
        try:
            super().open(wait=wait, timeout=timeout)
        except PoolTimeout as exc:
            if first is None:
                raise
            raise PoolTimeout(f"{exc}; the first connection attempt failed: {first}") from first


def _probe_first(probe: Callable[[], None]) -> psycopg.OperationalError | None:
    """Run ``probe``; raise what retrying cannot fix, return (not raise) other failures."""
    try:
        probe()
    except psycopg.OperationalError as exc:
        if login_refused(exc):
            raise
        return exc
    return None


def reset_connection(conn: TsConnection, plan: ResetPlan, autocommit: bool) -> None:
    """Put ``conn`` back as its pool configured it, in one round trip (see
    :mod:`tsaccess.client.reset`); raises (and the pool discards the connection) when it
    cannot be."""
    state = conn._client_state
    if state is None:  # pragma: no cover - configure() always sets it
        raise TsaccessError("this connection was not configured by create_pool()")
    with conn.lock:
        conn.wait(reset_gen(conn, plan, state))
    conn._reset_at = time.monotonic()
    conn.custom_seen.clear()
    # each setter takes the connection's lock: only those the borrower changed
    if conn.autocommit != autocommit:
        conn.autocommit = autocommit
    if conn.read_only is not None:
        conn.read_only = None
    if conn.isolation_level is not None:
        conn.isolation_level = None
    if conn.deferrable is not None:
        conn.deferrable = None
    conn.set_scoped_settings()  # the borrower's actor (RESET ALL dropped it server-side)
    conn.after_reset()


def _check(conn: TsConnection) -> None:
    """The pool's check behind a pooler: an empty query, which needs no role."""
    with conn._unscoped_block():
        ConnectionPool.check_connection(conn)


def _checker(check_after: float) -> Callable[[TsConnection], None]:
    """The borrow check: psycopg_pool's empty query, unless the connection's reset (or
    configuration) round trip finished less than ``check_after`` seconds ago."""

    def check(conn: TsConnection) -> None:
        if not recently_reset(conn, check_after):
            ConnectionPool.check_connection(conn)

    return check


def _pooled_reset(conn: TsConnection) -> None:
    """Behind a pooler the server connection is not ours between transactions: nothing to
    clean there (each transaction sets role and settings locally); forget the borrower's
    actor and client-side flags."""
    state = conn._client_state
    if state is None:  # pragma: no cover - configure() always sets it
        raise TsaccessError("this connection was not configured by create_pool()")
    state.restore(conn)  # adapters, handlers, factories (no server round trip)
    conn.set_scoped_settings()
    conn.read_only = None
    conn.isolation_level = None
    conn.deferrable = None
    conn.prepare_threshold = None
    conn.after_reset()


def create_pool(
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
) -> ScopedPool:
    """A pool of TLS-verified connections for one login user, optionally scoped to ``role``.

    Parameters are validated (TLS policy) before any connection is attempted. Each connection is
    reset on return (a connection whose reset fails is discarded) and checked on borrow
    (``ConnectionPool.check_connection``) unless that reset finished less than ``check_after``
    seconds ago.

    Args:
        conninfo, params: as in :func:`connect` (libpq keywords, and psycopg's connection
            arguments such as ``row_factory``).
        min_size, max_size, open, name, timeout: as in ``psycopg_pool.ConnectionPool``.
        role: group role to ``SET ROLE`` on every connection.
        autocommit: the state every borrower gets.
        preflight: check statements before sending them.
        pooler: ``"pgbouncer"``: the connections go through a transaction-mode pooler (see
            :func:`connect`); the reset on return is then client-side only.
        kwargs: as psycopg_pool's ``kwargs``: arguments of each ``connect()`` call, psycopg's
            (``row_factory``, ``cursor_factory``, ``prepare_threshold``, ``context``) or libpq's.
        custom_settings: names of custom settings the application uses (``myapp.tenant``): a
            connection whose borrower created one is discarded on return, so the next borrower
            reads NULL, not ``''`` (see :mod:`tsaccess.client.reset`).
        check_after: seconds; a borrow within this time of the connection's last reset (or
            of its opening) skips the check round trip, which would prove again what that
            round trip just did (default 1; 0: check every borrow, as before). Behind a
            ``pooler`` every borrow is checked.

    Returns:
        the pool (opened, unless ``open=False``); its connections are :class:`TsConnection`
        (:class:`~tsaccess.preflight.PreflightConnection` with ``preflight=True``).

    Raises:
        InsecureConnectionError, RoleScopeError, psycopg.OperationalError: when opening, the
            first connection's failure if retrying cannot fix it (see :meth:`ScopedPool.open`).
    """
    custom = check_custom_names(custom_settings)
    recheck = check_after_seconds(check_after)
    opening = prepare(
        conninfo, pool_kwargs(kwargs, params), role=role, autocommit=autocommit, pooler=pooler
    )
    warn_if_unverified(opening.secure, stacklevel=2)  # once for the pool, not per connection
    cls = _connection_class(preflight)

    def configure(conn: TsConnection) -> None:
        conn._open_session(opening, preflight)
        conn.autocommit = autocommit
        conn._client_state = ClientState.capture(conn, custom)
        conn._reset_at = time.monotonic()

    plans: dict[str, ResetPlan] = {}

    def reset(conn: TsConnection) -> None:
        if opening.pooler is not None:
            _pooled_reset(conn)
            return
        user = conn.login_user  # read once when it opened (info.user decodes every time)
        plan = plans.get(user)  # one login user per pool: built once
        if plan is None:
            plan = plans[user] = opening.reset_plan(user, custom)
        reset_connection(conn, plan, autocommit)

    connect_kwargs = opening.connect_kwargs(pooled=True)

    def probe() -> None:
        conn = cls.connect(**connect_kwargs)
        try:
            configure(conn)
        finally:
            conn.close()

    pool = ScopedPool(
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
        pool.open(wait=True, timeout=timeout)
    return pool
