"""A pool's borrowers attack each other (same login user, one connection, borrower after
borrower): nothing the first leaves behind may change what the next one runs or reads. Every
attack runs on the sync and the async pool (the ``driver`` fixture)."""

from __future__ import annotations

import pickle
import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.adapt import Dumper, Loader
from psycopg.rows import args_row, class_row, dict_row, namedtuple_row, tuple_row
from psycopg_pool import PoolTimeout

import tsaccess
from tests.helpers import apply_company
from tsaccess.client.aio import AsyncTsCursor
from tsaccess.client.connection import TsCursor


@pytest.fixture
def shop(db):
    """A login user with a table of prices and a table of events (12 rows)."""
    pw = db.create_login("shop_user")
    with db.admin(autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE prices (item text, price numeric);"
            " INSERT INTO prices VALUES ('tea', 3.50);"
            " CREATE TABLE events (id int); INSERT INTO events SELECT generate_series(1, 12);"
            " GRANT SELECT, INSERT, DELETE ON prices, events TO shop_user"
        )
    return db, pw


def _pool(db, pw: str, driver, **kw: Any) -> tsaccess.ScopedPool:
    return driver.create_pool(
        **db.params(user="shop_user", password=pw), min_size=1, max_size=1, **kw
    )


def _psycopg_name(conn: psycopg.Connection[Any], like: str) -> tuple[sql.Identifier, sql.SQL]:
    """The name psycopg gave the statement it auto-prepared for a query text like ``like``,
    and its parameter types (a forger uses the same, so psycopg's Bind message fits)."""
    row = conn.execute(
        "SELECT name, parameter_types::text[] FROM pg_prepared_statements"
        " WHERE statement LIKE %s AND NOT from_sql",
        (like,),
        prepare=False,
    ).fetchone()
    assert row is not None, "psycopg did not auto-prepare the query"
    return sql.Identifier(row[0]), sql.SQL(", ").join(sql.SQL(t) for t in row[1])


PRICE = "SELECT item, price FROM prices WHERE item = %s"


def test_forged_psycopg_statement_never_reaches_the_next_borrower(shop, driver):
    db, pw = shop
    pool = _pool(db, pw, driver, autocommit=True)
    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
            for _ in range(6):  # prepare_threshold=5: psycopg prepares it as _pg3_N
                assert conn.execute(PRICE, ("tea",)).fetchone() == ("tea", Decimal("3.50"))
            name, types = _psycopg_name(conn, "SELECT item, price FROM prices%")
            forge = sql.SQL(
                "DEALLOCATE {n}; PREPARE {n}({t}) AS SELECT 'FORGED'::text, 99.99::numeric"
            ).format(n=name, t=types)
            conn.execute(forge, prepare=False)
            conn.execute("PREPARE _pg3_evil AS SELECT 'evil'", prepare=False)
            # the attack works within the borrow: psycopg runs the forged statement
            assert conn.execute(PRICE, ("tea",)).fetchone() == ("FORGED", Decimal("99.99"))
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid  # the same session, reset
            assert (
                conn.execute("SELECT name FROM pg_prepared_statements", prepare=False).fetchall()
                == []
            )
            for _ in range(7):  # before, at and after psycopg prepares it again
                assert conn.execute(PRICE, ("tea",)).fetchone() == ("tea", Decimal("3.50"))
    finally:
        pool.close()


def test_forged_insert_does_not_become_a_delete(shop, driver):
    db, pw = shop
    pool = _pool(db, pw, driver)
    insert = "INSERT INTO events VALUES (%s)"
    try:
        with pool.connection() as conn:
            for i in range(100, 106):
                conn.execute(insert, (i,))
            conn.commit()
            name, types = _psycopg_name(conn, "INSERT INTO events%")
            forge = "DEALLOCATE {n}; PREPARE {n}({t}) AS DELETE FROM events WHERE id <> $1"
            conn.execute(sql.SQL(forge).format(n=name, t=types), prepare=False)
            conn.commit()
        with pool.connection() as conn:
            before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            cur = conn.execute(insert, (200,))
            assert cur.statusmessage == "INSERT 0 1"
            after = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            assert (before, after) == (18, 19)
    finally:
        pool.close()


class _Hijack(Loader):
    def load(self, data: Any) -> str:
        return "HIJACKED"


class _HijackDumper(Dumper):
    def dump(self, obj: Any) -> bytes:
        return b"HIJACKED"


class _MyCursor(psycopg.Cursor[Any]):
    pass


class _MyAsyncCursor(psycopg.AsyncCursor[Any]):
    pass


def test_client_state_is_restored_for_the_next_borrower(shop, driver):
    db, pw = shop
    pool = _pool(db, pw, driver, autocommit=True)
    heard: list[str] = []
    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
            conn.adapters.register_loader("numeric", _Hijack)
            conn.adapters.register_dumper(str, _HijackDumper)
            conn.add_notice_handler(lambda d: heard.append(f"notice {d.message_primary}"))
            conn.add_notify_handler(lambda n: heard.append(f"notify {n.payload}"))
            conn.cursor_factory = _MyAsyncCursor if driver.is_async else _MyCursor
            conn.row_factory = dict_row
            conn.prepare_threshold = None
            conn.prepared_max = 1
            assert conn.execute("SELECT 1.5::numeric AS n").fetchone() == {"n": "HIJACKED"}
            conn.execute("LISTEN chan")
            conn.execute("NOTIFY chan, 'left behind'")  # delivered while this borrower listens
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            heard.clear()
            assert conn.execute("SELECT 1.5::numeric, %s::text", ("tea",)).fetchone() == (
                Decimal("1.5"),
                "tea",
            )
            expected = AsyncTsCursor if driver.is_async else TsCursor
            assert type(driver.raw(conn.cursor())) is expected  # the cursor the pool configured
            assert (conn.prepare_threshold, conn.prepared_max) == (5, 100)
            conn.execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")
            conn.execute("LISTEN chan")
            conn.execute("NOTIFY chan, 'for the second borrower'")
            assert [n.payload for n in conn.notifies(timeout=0, stop_after=5)] == [
                "for the second borrower"
            ]
            assert heard == []
    finally:
        pool.close()


def test_custom_setting_reads_null_for_the_next_borrower(shop, driver):
    db, pw = shop
    with db.admin(autocommit=True) as admin:
        admin.execute("ALTER ROLE shop_user SET myapp.tenant = 't1'")
    pool = _pool(db, pw, driver, custom_settings=["myapp.x", "myapp.tenant"])  # in transactions
    probe = "SELECT current_setting('myapp.x', true), current_setting('myapp.tenant', true)"
    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
            conn.execute("SET myapp.tenant = 'evil'")  # a setting of the role: RESET ALL restores
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid  # kept: nothing the reset cannot undo
            assert conn.execute(probe).fetchone() == (None, "t1")
            conn.execute("SET myapp.x = 'y'")
        with pool.connection() as conn:
            assert conn.execute(probe).fetchone() == (None, "t1")
            assert conn.info.backend_pid != pid  # the placeholder's session was discarded
    finally:
        pool.close()


@pytest.mark.parametrize(
    "how",
    [
        "SET myapp.x = 'y'",
        "SET SESSION \"MyApp\".x TO 'y'",
        "SELECT set_config('myapp.x', 'y', false)",
        "BEGIN; SET LOCAL myapp.x = 'y'; COMMIT",
        "SELECT set_config(%s, 'y', false)",  # a name tsaccess cannot read: fail closed
        "DO $$ BEGIN PERFORM set_config('myapp.x', 'y', false); END $$",
    ],
)
def test_undeclared_custom_setting_reads_null_for_the_next_borrower(shop, how, driver):
    """Without custom_settings=: whatever custom setting a borrower's statements create, the
    next borrower reads NULL (the connection that holds its placeholder is discarded)."""
    db, pw = shop
    pool = _pool(db, pw, driver)
    names = ["myapp.x", "MyApp.x"]
    probe = "SELECT current_setting('myapp.x', true), current_setting('\"MyApp\".x', true)"
    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
            conn.execute("SELECT 1")  # an ordinary borrower keeps the connection
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            if "%s" in how:
                conn.execute(how, (names[0],))
            else:
                conn.execute(how)
        with pool.connection() as conn:
            assert conn.execute(probe).fetchone() == (None, None)
            assert conn.info.backend_pid != pid
    finally:
        pool.close()


def test_kwargs_are_connection_arguments_as_in_psycopg_pool(shop, driver):
    db, pw = shop
    params = db.params(user="shop_user", password=pw)
    t0 = time.monotonic()
    pool = driver.create_pool(**params, kwargs={"row_factory": dict_row}, timeout=60)
    try:
        assert time.monotonic() - t0 < 30  # not retried until the timeout
        with pool.connection() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
            conn.row_factory = tuple_row
        with pool.connection() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    finally:
        pool.close()
    with pytest.raises(tsaccess.TsaccessError, match="unknown connection parameter 'bogus'"):
        driver.create_pool(**params, kwargs={"bogus": 1})


@pytest.mark.parametrize("open_how", ["create_pool", "with"])
def test_wrong_password_or_role_raises_the_cause_at_once(shop, open_how, driver):
    db, pw = shop
    with db.admin(autocommit=True) as admin:
        admin.execute("CREATE ROLE not_granted NOLOGIN")
    cases = [
        (
            db.params(user="shop_user", password=pw + "x"),
            {},
            psycopg.OperationalError,
            "password authentication failed",
        ),
        (
            db.params(user="shop_user", password=pw),
            {"role": "not_granted"},
            tsaccess.RoleScopeError,
            "not a member of role 'not_granted'",
        ),
    ]
    for params, extra, error, message in cases:
        t0 = time.monotonic()
        with pytest.raises(error, match=message) as caught:
            if open_how == "create_pool":
                driver.create_pool(**params, **extra, timeout=120)
            else:
                with driver.create_pool(**params, **extra, timeout=120, open=False) as pool:
                    pool.getconn()
        assert not isinstance(caught.value, PoolTimeout)
        assert time.monotonic() - t0 < 60  # the cause, long before the timeout


FACTORIES = {
    "tuple": tuple_row,
    "dict": dict_row,
    "namedtuple": namedtuple_row,
    "class": class_row(lambda **kw: kw),
    "args": args_row(lambda *a: a),
}


@pytest.mark.parametrize("factory", FACTORIES.values(), ids=FACTORIES.keys())
def test_every_row_factory_works(db, factory, driver):
    company = apply_company(db)
    pw = company.passwords["alice"].reveal()
    params = db.params(user="alice", password=pw)
    for preflight in (False, True):
        with driver.connect(
            **params, role="data_analysts", row_factory=factory, preflight=preflight
        ) as conn:
            assert conn.row_factory is factory
            assert driver.tls_status(conn).ssl
            conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
    pool = driver.create_pool(
        **params, role="data_analysts", kwargs={"row_factory": factory}, preflight=True, max_size=1
    )
    try:
        for _ in range(2):
            with pool.connection() as conn:
                assert conn.row_factory is factory
                assert driver.tls_status(conn).ssl
                conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
                conn.execute("SET work_mem = '8MB'")  # a change the reset undoes
    finally:
        pool.close()


def test_preflight_denied_is_insufficient_privilege(db, driver):
    company = apply_company(db)
    with driver.connect(**company.params("alice"), preflight=True) as conn:
        try:
            conn.execute("UPDATE sensor_readings SET temperature = 0")
        except psycopg.errors.InsufficientPrivilege as exc:  # an application's existing handler
            caught = exc
        assert isinstance(caught, tsaccess.PreflightDenied)
        assert isinstance(caught, tsaccess.TsaccessError)
        assert caught.sqlstate == caught.diag.sqlstate == "42501"
        assert "UPDATE" in (caught.diag.message_primary or "")
        assert (caught.user, caught.role) == ("alice", None)
        assert [m.privilege for m in caught.missing] == ["UPDATE"]
        assert caught.statement == "UPDATE sensor_readings SET temperature = 0"
        assert type(caught).__module__ == "tsaccess"
        again = pickle.loads(pickle.dumps(caught))  # noqa: S301  our own bytes
        assert (type(again), str(again), again.missing, again.diag.sqlstate) == (
            tsaccess.PreflightDenied,
            str(caught),
            caught.missing,
            "42501",
        )
        # the server's own refusal of the same statement carries the same SQLSTATE
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as server:
            conn.rollback()
            conn.cursor_factory = psycopg.AsyncCursor if driver.is_async else psycopg.Cursor
            conn.execute("UPDATE sensor_readings SET temperature = 0")
        assert server.value.sqlstate == caught.sqlstate


def _statements(conn: Any) -> list[tuple[str, str, list[str], bool]]:
    return conn.execute(
        "SELECT name, statement, parameter_types::text[], from_sql FROM pg_prepared_statements"
        " ORDER BY name",
        prepare=False,
    ).fetchall()


def _runs(conn: Any, name: str) -> int:
    """How often the server executed prepared statement ``name``."""
    row = conn.execute(
        "SELECT generic_plans + custom_plans FROM pg_prepared_statements WHERE name = %s",
        (name,),
        prepare=False,
    ).fetchone()
    return row[0] if row else -1


def test_a_borrowers_queries_stay_prepared_for_the_next_borrower(shop, driver):
    """psycopg's statements survive the reset (tsaccess prepared them again itself), and the
    next borrower's query runs them: no parse and plan per borrow."""
    db, pw = shop
    pool = _pool(db, pw, driver, autocommit=True)
    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
            for _ in range(6):
                conn.execute(PRICE, ("tea",)).fetchone()
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            statements = _statements(conn)
            assert [(s[1], s[3]) for s in statements] == [
                ("SELECT item, price FROM prices WHERE item = $1", False)
            ]
            name = statements[0][0]
            before = _runs(conn, name)
            assert conn.execute(PRICE, ("tea",)).fetchone() == ("tea", Decimal("3.50"))
            assert _runs(conn, name) == before + 1  # the borrower's query ran prepared
    finally:
        pool.close()


ECHO = "SELECT %s || ''"  # a text parameter: psycopg lets the server infer its type


@pytest.mark.parametrize("when", ["while psycopg prepares it", "in a later borrow"])
def test_statement_forged_with_other_parameter_types_never_reaches_the_next_borrower(
    shop, driver, when
):
    """The same name and text, prepared through libpq with another parameter type: the
    server reads '007' as the integer 7. The next borrower reads '007'."""
    db, pw = shop
    pool = _pool(db, pw, driver, autocommit=True)

    def forge(conn: Any) -> None:
        (name,) = conn.execute(
            "SELECT name FROM pg_prepared_statements WHERE NOT from_sql", prepare=False
        ).fetchone()
        conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)), prepare=False)
        conn.pgconn.prepare(name.encode(), b"SELECT $1 || ''", [23])  # int4
        assert conn.execute(ECHO, ("007",)).fetchone() == ("7",)  # the attack works here

    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
            for _ in range(6):
                assert conn.execute(ECHO, ("007",)).fetchone() == ("007",)
            if when == "while psycopg prepares it":
                forge(conn)
        if when == "in a later borrow":
            with pool.connection() as conn:
                forge(conn)
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            for _ in range(7):
                assert conn.execute(ECHO, ("007",)).fetchone() == ("007",)
            assert all(s[2] != ["integer"] for s in _statements(conn))
    finally:
        pool.close()


def test_statement_prepared_by_the_borrower_is_deallocated_with_the_rest(shop, driver):
    db, pw = shop
    pool = _pool(db, pw, driver, autocommit=True)
    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
            for _ in range(6):
                conn.execute(PRICE, ("tea",))
        with pool.connection() as conn:
            assert len(_statements(conn)) == 1  # psycopg's, kept
            conn.pgconn.prepare(b"borrowers_own", b"SELECT 'left behind'")
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            assert _statements(conn) == []  # nobody vouches for it: everything goes
            for _ in range(7):
                assert conn.execute(PRICE, ("tea",)).fetchone() == ("tea", Decimal("3.50"))
    finally:
        pool.close()


def test_borrow_check_is_skipped_only_moments_after_a_reset(shop, driver):
    """A connection whose backend died while it sat in the pool is replaced by the borrow
    check once ``check_after`` has passed since its reset (0: every borrow is checked)."""
    db, pw = shop
    for check_after in (0, 0.2):
        pool = _pool(db, pw, driver, autocommit=True, check_after=check_after)
        try:
            with pool.connection() as conn:
                pid = conn.info.backend_pid
            with db.admin(autocommit=True) as admin:
                # waits until the backend is gone
                admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            time.sleep(check_after)
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
                assert conn.info.backend_pid != pid
        finally:
            pool.close()
    with pytest.raises(tsaccess.TsaccessError, match="check_after"):
        _pool(db, pw, driver, check_after=-1)


def test_session_authorization_is_reset_for_a_superuser_login(shop, driver):
    """A borrower of a superuser login's pool takes another identity (``SET SESSION
    AUTHORIZATION``, which turns the reported ``is_superuser`` off): the next borrower is the
    login again."""
    db, _pw = shop
    pool = driver.create_pool(**db.params(), min_size=1, max_size=1, autocommit=True)
    try:
        with pool.connection() as conn:
            login = conn.info.user
            pid = conn.info.backend_pid
            conn.execute("SET SESSION AUTHORIZATION shop_user")
            assert conn.execute("SELECT session_user").fetchone() == ("shop_user",)
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            row = conn.execute("SELECT session_user, current_user").fetchone()
            assert row == (login, login)
    finally:
        pool.close()


def test_session_authorization_is_reset_in_a_role_scoped_superuser_pool(shop, driver):
    """The same in a pool scoped to a plain role (``role=``), where the session reports the
    role's ``is_superuser`` (off) from the start: a borrower who becomes another login that is a
    member of the role would otherwise stay that login for every later borrower (their audit
    rows would name it)."""
    db, _pw = shop
    with db.admin(autocommit=True) as conn:
        conn.execute("CREATE ROLE shop_group NOLOGIN; GRANT shop_group TO shop_user")
    pool = driver.create_pool(
        **db.params(), role="shop_group", min_size=1, max_size=1, autocommit=True
    )
    try:
        with pool.connection() as conn:
            login = conn.info.user
            pid = conn.info.backend_pid
            assert conn.execute("SHOW is_superuser").fetchone() == ("off",)
            conn.execute("SET SESSION AUTHORIZATION shop_user")
            assert conn.execute("SELECT session_user").fetchone() == ("shop_user",)
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            row = conn.execute("SELECT session_user, current_user").fetchone()
            assert row == (login, "shop_group")
    finally:
        pool.close()


@pytest.mark.parametrize("deallocated", [False, True], ids=["kept", "deallocated"])
def test_a_returned_connection_is_reset_before_anyone_borrows_it_again(shop, driver, deallocated):
    """The reset is done when ``with pool.connection()`` exits, not when the connection is
    next borrowed: the advisory lock a borrower left and its temporary table are gone at once
    for everyone else, while the connection sits in the pool borrowed by nobody; also when the
    borrower deallocated, behind psycopg's back, the statements the pool keeps (the list the
    reset reads is then empty)."""
    db, pw = shop
    pool = _pool(db, pw, driver, autocommit=True)
    try:
        with pool.connection() as conn:
            for _ in range(6):  # prepared by psycopg, then kept by the pool
                conn.execute("SELECT count(*) FROM events").fetchone()
        with pool.connection() as conn:
            assert _statements(conn), "the pool keeps the prepared statement"
            pid = conn.info.backend_pid
            if deallocated:
                conn.execute("DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$")
            conn.execute("SELECT pg_advisory_lock(4242)")
            conn.execute("CREATE TEMP TABLE left_behind (x int)")
            conn.execute("LISTEN left_behind")
        with db.admin(autocommit=True) as admin:
            locks = "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'"
            assert admin.execute(locks, (pid,)).fetchone() == (0,)
            temp = "SELECT count(*) FROM pg_class WHERE relname = 'left_behind'"
            assert admin.execute(temp).fetchone() == (0,)
            assert admin.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (True,)
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (12,)
    finally:
        pool.close()
