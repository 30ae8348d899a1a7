"""SQLAlchemy engines whose connections come from tsaccess: :func:`create_engine`,
:func:`create_async_engine` (the optional extra ``tsaccess[sqlalchemy]``).

SQLAlchemy 2's ``postgresql+psycopg`` dialect takes a ``creator`` (``async_creator`` for the
async engine): each DBAPI connection is a :class:`~tsaccess.client.connection.TsConnection`
(an :class:`~tsaccess.client.aio.AsyncTsConnection`) opened and scoped as
:func:`tsaccess.connect` does. SQLAlchemy's own pool keeps them; tsaccess adds its reset on
return (the pool's ``reset`` event): the same one round trip as :func:`tsaccess.create_pool`
(role, settings, temporary objects, prepared statements, locks, listeners, the client state),
and a connection that cannot be reset is invalidated, never handed on. A reconnect (after
``pool_pre_ping`` finds a dead connection, or ``invalidate()``) opens and scopes a new one.

Pre-flight refusals surface as SQLAlchemy wraps any DBAPI error: a
``sqlalchemy.exc.ProgrammingError`` whose ``.orig`` is the :class:`~tsaccess.PreflightDenied`.
``pandas.read_sql(query, engine)`` and ``DataFrame.to_sql(name, engine)`` work through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import pq

from tsaccess.client.connection import TsConnection, _connection_class
from tsaccess.client.pool import reset_connection
from tsaccess.client.reset import ClientState, ResetPlan, check_custom_names
from tsaccess.client.session import Opening, prepare
from tsaccess.errors import TsaccessError

__all__ = ["create_async_engine", "create_engine"]

_URL = "postgresql+psycopg://"
_REFUSED = ("row_factory", "cursor_factory")


def _sqlalchemy() -> Any:
    try:
        import sqlalchemy
    except ImportError:
        raise ImportError(
            "tsaccess.create_engine() needs SQLAlchemy 2: pip install 'tsaccess[sqlalchemy]'"
        ) from None
    if int(sqlalchemy.__version__.split(".")[0]) < 2:
        raise ImportError(
            f"tsaccess.create_engine() needs SQLAlchemy 2 (found {sqlalchemy.__version__}): "
            "pip install 'tsaccess[sqlalchemy]'"
        )
    return sqlalchemy


def _opening(conninfo: str, role: str | None, params: Mapping[str, Any]) -> Opening:
    refused = sorted(set(params) & set(_REFUSED))
    if refused:
        raise TsaccessError(
            f"{', '.join(refused)}: SQLAlchemy makes its own cursors and rows; leave them out "
            "(use tsaccess.connect() for psycopg's row factories)"
        )
    return prepare(conninfo, params, role=role)


def _engine_kwargs(
    pool_size: int,
    max_overflow: int,
    pool_recycle: float,
    pool_pre_ping: bool,
    pool_timeout: float,
    engine_kwargs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_recycle": pool_recycle,
        "pool_pre_ping": pool_pre_ping,
        "pool_timeout": pool_timeout,
    }
    for key in ("creator", "async_creator", "poolclass", "pool", "url"):
        if key in (engine_kwargs or {}):
            raise TsaccessError(f"engine_kwargs: {key} is tsaccess's to set; leave it out")
    return {**kw, **(engine_kwargs or {})}


def _plan_for(plans: dict[str, ResetPlan], opening: Opening, user: str, custom: Any) -> ResetPlan:
    plan = plans.get(user)
    if plan is None:
        plan = plans[user] = ResetPlan(opening.role, opening.app_name(user), custom)
    return plan


def create_engine(
    conninfo: str = "",
    *,
    role: str | None = None,
    preflight: bool = False,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_recycle: float = -1,
    pool_pre_ping: bool = False,
    pool_timeout: float = 30.0,
    custom_settings: Sequence[str] = (),
    engine_kwargs: Mapping[str, Any] | None = None,
    **params: Any,
) -> Any:
    """A SQLAlchemy 2 ``Engine`` whose connections are TLS-verified tsaccess connections,
    scoped to ``role`` and reset when returned to its pool.

    Args:
        conninfo, params: as in :func:`tsaccess.connect` (libpq keywords); checked against the
            TLS policy here, before any packet is sent.
        role, preflight: as in :func:`tsaccess.connect`.
        pool_size, max_overflow, pool_recycle, pool_pre_ping, pool_timeout: SQLAlchemy's pool
            settings (its ``QueuePool``), passed on.
        custom_settings: as in :func:`tsaccess.create_pool`.
        engine_kwargs: more arguments of ``sqlalchemy.create_engine`` (``echo``,
            ``isolation_level``, ...).

    Raises:
        ImportError: SQLAlchemy 2 is not installed (``pip install 'tsaccess[sqlalchemy]'``).
        InsecureConnectionError, TsaccessError: as :func:`tsaccess.connect`, before any packet.
    """
    sa = _sqlalchemy()
    opening = _opening(conninfo, role, params)
    custom = check_custom_names(custom_settings)
    cls = _connection_class(preflight)
    connect_kwargs = opening.connect_kwargs()

    def creator() -> TsConnection:
        conn = cls.connect(**connect_kwargs)
        try:
            conn._open_session(opening, preflight)
        except BaseException:
            conn.close()
            raise
        return conn

    engine = sa.create_engine(
        _URL,
        creator=creator,
        **_engine_kwargs(
            pool_size, max_overflow, pool_recycle, pool_pre_ping, pool_timeout, engine_kwargs
        ),
    )
    plans: dict[str, ResetPlan] = {}

    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if isinstance(dbapi_conn, TsConnection) and dbapi_conn._client_state is None:
            # after SQLAlchemy's own connect hooks: the state its dialect set is kept
            dbapi_conn._client_state = ClientState.capture(dbapi_conn, custom)

    def reset(dbapi_conn: Any, record: Any, state: Any) -> None:
        if state.terminate_only or not isinstance(dbapi_conn, TsConnection):
            return  # being discarded
        if dbapi_conn.info.transaction_status != pq.TransactionStatus.IDLE:
            dbapi_conn.rollback()
        plan = _plan_for(plans, opening, dbapi_conn.info.user, custom)
        reset_connection(dbapi_conn, plan, autocommit=False)  # raises: invalidated

    sa.event.listen(engine.pool, "checkout", checkout)
    sa.event.listen(engine.pool, "reset", reset)
    return engine


def create_async_engine(
    conninfo: str = "",
    *,
    role: str | None = None,
    preflight: bool = False,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_recycle: float = -1,
    pool_pre_ping: bool = False,
    pool_timeout: float = 30.0,
    custom_settings: Sequence[str] = (),
    engine_kwargs: Mapping[str, Any] | None = None,
    **params: Any,
) -> Any:
    """:func:`create_engine` for asyncio: a SQLAlchemy ``AsyncEngine`` whose connections are
    :class:`~tsaccess.client.aio.AsyncTsConnection` (``connect_async``), reset on return the
    same way (SQLAlchemy runs the pool's events in its greenlet, where the reset is awaited).
    """
    sa = _sqlalchemy()
    from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

    from tsaccess.client.aio import AsyncTsConnection, async_connection_class
    from tsaccess.client.aio_pool import present_settings, reset_connection_async

    await_ = getattr(sa.util, "await_", None) or sa.util.await_only
    opening = _opening(conninfo, role, params)
    custom = check_custom_names(custom_settings)
    cls = async_connection_class(preflight)
    connect_kwargs = opening.connect_kwargs()

    async def creator() -> AsyncTsConnection:
        conn = await cls.connect(**connect_kwargs)
        try:
            await conn._open_session(opening, preflight)
        except BaseException:
            await conn.close()
            raise
        return conn

    engine = sa_create_async_engine(
        _URL,
        async_creator=creator,
        **_engine_kwargs(
            pool_size, max_overflow, pool_recycle, pool_pre_ping, pool_timeout, engine_kwargs
        ),
    )
    plans: dict[str, ResetPlan] = {}

    def _conn(dbapi_conn: Any) -> AsyncTsConnection | None:
        conn = getattr(dbapi_conn, "_connection", None)  # SQLAlchemy's adapter around it
        return conn if isinstance(conn, AsyncTsConnection) else None

    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        conn = _conn(dbapi_conn)
        if conn is not None and conn._client_state is None:
            conn._client_state = ClientState.of(conn, await_(present_settings(conn, custom)))

    def reset(dbapi_conn: Any, record: Any, state: Any) -> None:
        conn = _conn(dbapi_conn)
        if conn is None or state.terminate_only or not state.asyncio_safe:
            return  # being discarded (or garbage-collected outside the event loop)
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            await_(conn.rollback())
        plan = _plan_for(plans, opening, conn.info.user, custom)
        await_(reset_connection_async(conn, plan, autocommit=False))

    sa.event.listen(engine.sync_engine.pool, "checkout", checkout)
    sa.event.listen(engine.sync_engine.pool, "reset", reset)
    return engine
