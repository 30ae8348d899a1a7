"""Pools of TLS-only, role-scoped connections: :class:`ScopedPool`, :func:`create_pool`.

Each connection is opened and verified as :func:`tsaccess.client.connection.connect` does (TLS, role
scope, ``application_name``), checked on borrow, and reset when handed back, in one round trip
(role, settings, temporary objects, every prepared statement — psycopg's own included —, locks,
listeners) and on the client (flags, factories, adapters, handlers, psycopg's statement cache:
see :mod:`tsaccess.client.reset`) so nothing leaks to the next borrower; a reset that fails discards
the connection. Behind a transaction-mode pooler the reset is client-side only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from tsaccess.client.connection import (
    TsConnection,
    _app_name,
    _apply_scope,
    _connection_class,
    _startup_params,
    _verify_tls,
)
from tsaccess.client.hosts import check_host_list
from tsaccess.client.params import secure_params, split_connection_kwargs
from tsaccess.client.pooler import autocommit_refused, check_pooler
from tsaccess.client.reset import ClientState, check_custom_names, reset_batch, run_reset
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


# libpq / server messages of a login that retrying will not fix
_LOGIN_REFUSED = re.compile(
    r"authentication failed|pg_hba\.conf|does not exist|not permitted to log in"
    r"|certificate verify failed|does not match host name|SSL"
)


def _probe_first(probe: Callable[[], None]) -> psycopg.OperationalError | None:
    """Run ``probe``; raise what retrying cannot fix, return (not raise) other failures."""
    try:
        probe()
    except psycopg.OperationalError as exc:
        if _LOGIN_REFUSED.search(str(exc)):
            raise
        return exc
    return None


def _make_reset(
    role: str | None, app_name: str, autocommit: bool, custom: Sequence[str]
) -> Callable[[TsConnection], None]:
    batch = reset_batch(role, app_name, custom)

    def reset(conn: TsConnection) -> None:
        state = conn._client_state
        if state is None:  # pragma: no cover - configure() always sets it
            raise TsaccessError("this connection was not configured by create_pool()")
        if conn.custom_unknown:
            raise TsaccessError(
                "the borrower called set_config() with a setting name that is not a literal: "
                "it may have created a custom setting that RESET ALL leaves as '' (not NULL); "
                "this connection is discarded rather than handed on"
            )
        extra = sorted(conn.custom_seen - set(custom))
        if extra:  # settings the borrower may have created: checked in the same round trip
            names = (*custom, *extra)
            run_reset(conn, reset_batch(role, app_name, names), names, state)
        else:
            run_reset(conn, batch, custom, state)  # one round trip: clean up, scope again
        conn.custom_seen.clear()
        conn.autocommit = autocommit
        conn.read_only = None
        conn.isolation_level = None
        conn.deferrable = None
        conn.set_scoped_settings()  # the borrower's actor (RESET ALL dropped it server-side)
        conn.after_reset()

    return reset


def _check(conn: TsConnection) -> None:
    """The pool's check behind a pooler: an empty query, which needs no role."""
    with conn._unscoped_block():
        ConnectionPool.check_connection(conn)


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


def _pool_kwargs(
    kwargs: Mapping[str, Any] | None, params: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """libpq parameters and psycopg connection arguments from ``kwargs`` (as psycopg_pool's)
    and ``params``."""
    merged = dict(kwargs or {})
    if "autocommit" in merged:
        raise TsaccessError("give create_pool(autocommit=...) itself, not in kwargs")
    overlap = sorted(set(merged) & set(params))
    if overlap:
        raise TsaccessError(
            f"{', '.join(overlap)} given both in kwargs and as a keyword argument; give it once"
        )
    return split_connection_kwargs({**merged, **params})


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
    **params: Any,
) -> ScopedPool:
    """A pool of TLS-verified connections for one login user, optionally scoped to ``role``.

    Parameters are validated (TLS policy) before any connection is attempted. Each connection is
    checked on borrow (``ConnectionPool.check_connection``) and reset on return; a connection
    whose reset fails is discarded.

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

    Returns:
        the pool (opened, unless ``open=False``); its connections are :class:`TsConnection`
        (:class:`~tsaccess.preflight.PreflightConnection` with ``preflight=True``).

    Raises:
        InsecureConnectionError, RoleScopeError, psycopg.OperationalError: when opening, the
            first connection's failure if retrying cannot fix it (see :meth:`ScopedPool.open`).
    """
    libpq, python = _pool_kwargs(kwargs, params)
    custom = check_custom_names(custom_settings)
    secure = secure_params(conninfo, **libpq)
    base_app = secure.kwargs.get("application_name")
    check_host_list(secure.kwargs)
    pooler = check_pooler(pooler)
    if pooler is not None and autocommit:
        raise autocommit_refused(secure.user, role)
    warn_if_unverified(secure, stacklevel=2)  # once for the pool, not per connection
    cls = _connection_class(preflight)

    def configure(conn: TsConnection) -> None:
        status = _verify_tls(conn)
        _apply_scope(conn, role, _app_name(base_app, conn.info.user, role), pooler)
        conn._init_state(secure, role, status, pooler)
        conn.after_connect(preflight=preflight)
        conn.autocommit = autocommit
        conn._client_state = ClientState.capture(conn, custom)

    resets: dict[str, Callable[[TsConnection], None]] = {}

    def reset(conn: TsConnection) -> None:
        if pooler is not None:
            _pooled_reset(conn)
            return
        fn = resets.get(conn.info.user)  # one login user per pool: built once
        if fn is None:
            app = _app_name(base_app, conn.info.user, role)
            fn = resets[conn.info.user] = _make_reset(role, app, autocommit, custom)
        fn(conn)

    connect_kwargs = {**_startup_params(secure, role, pooler), **python}

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
        check=_check if pooler is not None else ConnectionPool.check_connection,
        reset=reset,
        name=name or _app_name("tsaccess-pool", secure.user, role),
        timeout=timeout,
    )
    pool.user = secure.user
    pool.role = role
    pool.pooler = pooler
    pool._probe = probe
    if open:
        pool.open(wait=True, timeout=timeout)
    return pool
