"""The Python API builds policies too: every field that reaches SQL is checked the same way as
when read from TOML, whatever built the policy (constructors, dataclasses.replace,
with_database)."""

from __future__ import annotations

import dataclasses

import pytest

from tsaccess import PolicyError
from tsaccess.demo import company_policy
from tsaccess.policy import Column, GroupRole, Policy, Table, User

INJECTION = "int); DROP TABLE victim; --"


def _policy(**table: object) -> Policy:
    cols = table.pop("columns", (Column("t", "timestamptz", nullable=False),))
    return Policy(
        database="d",
        tables=(Table("m", cols, time_column="t", **table),),  # type: ignore[arg-type]
        roles=(GroupRole("r", (("m", frozenset({"SELECT"})),)),),
        users=(User("u", ("r",)),),
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda: Column("c", INJECTION),
        lambda: Column("c", "int not null"),  # nullability is a field, not part of the type
        lambda: Column("c", "text default 'x'"),
        lambda: Column("c", "numeric(5,2)); DROP TABLE victim; --"),
        lambda: Column("c", "text", default_function="now(); DROP TABLE victim"),
        lambda: Column("c", "text", default=object()),  # type: ignore[arg-type]
        lambda: Column("c", "text", default="a\x00b"),
        lambda: Column("c", "text", default="x", default_function="now()"),
        lambda: Column("c", "text", nullable="no"),  # type: ignore[arg-type]
        lambda: Column("c\x00", "text"),
        lambda: Column("c", 42),  # type: ignore[arg-type]
    ],
)
def test_column_attacks_are_refused_when_built(build) -> None:
    with pytest.raises(PolicyError, match=r"\[columns\.c"):
        build()


@pytest.mark.parametrize(
    "interval", ["7 days'); DROP TABLE victim; --", "1 fortnight", "", 7, "1 day; x"]
)
def test_chunk_interval_is_checked_from_python(interval: object) -> None:
    with pytest.raises(PolicyError, match="chunk_interval"):
        _policy(hypertable=True, chunk_interval=interval)


@pytest.mark.parametrize("limit", [-2, -100, 2**31, 2**63, "5", 1.5, True, None])
def test_connection_limit_is_checked_before_plan(limit: object) -> None:
    with pytest.raises(PolicyError, match="connection_limit"):
        User("u", ("r",), limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [-1, 0, 5, 2**31 - 1])
def test_valid_connection_limits(limit: int) -> None:
    assert User("u", ("r",), limit).connection_limit == limit


def test_types_are_canonical_whatever_the_spelling() -> None:
    assert Column("c", "  NUMERIC( 5 , 2 ) ").type == "numeric(5,2)"
    assert Column("c", "Double   Precision").type == "double precision"
    assert Column("c", "text[]").type == "text[]"


def test_replace_and_with_database_validate_again() -> None:
    good = company_policy()
    bad_table = dataclasses.replace(good.tables[0], chunk_interval="1 day")
    assert dataclasses.replace(good, tables=(bad_table, *good.tables[1:])).tables[0] == bad_table
    evil = object.__new__(Column)  # a column that skipped its own checks
    for field, value in (("name", "c"), ("type", INJECTION), ("nullable", True)):
        object.__setattr__(evil, field, value)
    object.__setattr__(evil, "default", None)
    object.__setattr__(evil, "default_function", None)
    smuggled = dataclasses.replace(good.tables[0], columns=(*good.tables[0].columns, evil))
    with pytest.raises(PolicyError, match=r"tables\.sensor_readings\.columns\.c\.type"):
        dataclasses.replace(good, tables=(smuggled, *good.tables[1:]))
    with pytest.raises(PolicyError, match="timescaledb"):
        dataclasses.replace(good, timescaledb="maybe")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match=r"database\.name"):
        good.with_database("x\x00y")
    with pytest.raises(PolicyError, match="default_mode"):
        dataclasses.replace(
            good,
            audit=dataclasses.replace(good.audit, default_mode="all"),  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("user", "pg_read_all_data"),
        ("user", "pg_signal_backend"),
        ("user", "PUBLIC"),
        ("user", "current_user"),
        ("role", "pg_monitor"),
        ("role", "session_user"),
        ("user", "x\x00y"),
    ],
)
def test_system_role_names_are_refused_from_python(kind: str, name: str) -> None:
    good = company_policy()
    with pytest.raises(PolicyError, match=r"reserved|NUL"):
        if kind == "user":
            dataclasses.replace(good, users=(*good.users, User(name, ("auditors",))))
        else:
            dataclasses.replace(good, roles=(*good.roles, GroupRole(name)))


def test_user_roles_are_checked_as_names() -> None:
    good = company_policy()
    with pytest.raises(PolicyError, match=r"users\.zed\.roles"):
        dataclasses.replace(good, users=(*good.users, User("zed", ("pg_write_all_data",))))
