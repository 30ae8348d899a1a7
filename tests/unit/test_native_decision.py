"""When ``apply`` makes the compiled trigger functions (pure logic: tsaccess.native.use_native),
and the triggers it asks for with them."""

from __future__ import annotations

import dataclasses

import pytest

from tsaccess.audit import ddl
from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog.postgres import FunctionInfo
from tsaccess.errors import TsaccessError
from tsaccess.native import AUDIT_SYMBOL, VERSION, use_native
from tsaccess.policy import parse_policy

POLICY = {
    "database": {"name": "d"},
    "tables": {
        "s": {"columns": {"time": "timestamptz", "v": "int"}, "audit": "statement"},
        "r": {"columns": {"time": "timestamptz", "v": "int"}, "audit": "row"},
        "odd": {"columns": {"time": "timestamptz", "ordinality": "int"}, "audit": "row"},
    },
}


def _cat(**kw: object) -> CatalogSnapshot:
    base: dict[str, object] = dict(
        database="d",
        database_owner="admin",
        database_acl=frozenset(),
        schema="public",
        schema_exists=True,
        schema_owner="admin",
        schema_acl=frozenset(),
        roles={},
        members=frozenset(),
        tables={},
        functions={},
        triggers={},
        extensions=frozenset(),
        timescaledb_available=False,
        timescaledb_preloaded=False,
        current_user="admin",
        superuser=True,
        queries=0,
        native_version=VERSION,
    )
    base.update(kw)
    return CatalogSnapshot(**base)  # type: ignore[arg-type]


def _policy(native: str = "prefer"):
    raw = dict(POLICY, database={"name": "d", "native": native})
    return parse_policy(raw)


def test_prefer_uses_it_only_where_the_server_has_this_version_and_apply_may_create_it():
    policy = _policy()
    assert use_native(policy, _cat())
    assert not use_native(policy, None)  # init scripts: no server to ask
    assert not use_native(policy, _cat(native_version=None))
    assert not use_native(policy, _cat(native_version="0"))
    assert not use_native(policy, _cat(superuser=False))
    assert not use_native(_policy("off"), _cat())


def test_a_role_that_is_not_a_superuser_keeps_it_once_it_is_in_place():
    """The monitor's drift plan and a non-superuser administrator must not plan it away."""
    stmt = FunctionInfo(
        "tsaccess_audit_stmt", "tsaccess_audit", False, (), AUDIT_SYMBOL, frozenset()
    )
    cat = _cat(superuser=False, functions={"tsaccess_audit_stmt": stmt})
    assert use_native(_policy(), cat)
    plpgsql = dataclasses.replace(stmt, source="BEGIN ... END")
    assert not use_native(_policy(), _cat(superuser=False, functions={"x": plpgsql}))
    # with hypertables the gate must be compiled too: one PL/pgSQL function left means apply
    # would have to create a C function, which only a superuser may
    raw = dict(POLICY, database={"name": "d"})
    raw["tables"] = {
        n: dict(
            t,
            hypertable=True,
            time_column="time",
            columns={**t["columns"], "time": "timestamptz not null"},
        )
        for n, t in POLICY["tables"].items()
    }
    hyper = parse_policy(raw)
    gate = dataclasses.replace(stmt, name="tsaccess_chunk_acl", source="tsaccess_native_gate")
    both = {"tsaccess_audit_stmt": stmt, "tsaccess_chunk_acl": gate}
    assert use_native(hyper, _cat(superuser=False, functions=both))
    half = {"tsaccess_audit_stmt": stmt, "tsaccess_chunk_acl": plpgsql}
    assert not use_native(hyper, _cat(superuser=False, functions=half))


@pytest.mark.parametrize(
    ("cat", "why"),
    [
        (_cat(native_version=None), "no tsaccess_native library"),
        (_cat(native_version="0"), "version 0"),
        (_cat(superuser=False), "not a superuser"),
    ],
)
def test_require_says_why_and_how_to_fix(cat, why):
    with pytest.raises(TsaccessError, match=why) as err:
        use_native(_policy("require"), cat)
    assert "tsaccess native install" in str(err.value)


def test_with_it_every_statement_trigger_calls_the_compiled_function_with_its_targets():
    policy = _policy()
    specs = {
        (s.table, s.name.split("_")[2]): s.statement.as_string(None)
        for t in policy.tables
        for s in ddl._trigger_specs(policy, t, False, native=True)
    }
    audit = """'"public"."activity_audit"'"""
    assert f"('s', 'counted', {audit})" in specs["s", "ins"]
    assert f"('s', 'plain', {audit})" in specs["s", "trn"]
    assert f"""('r', 'rows', {audit}, '"tsaccess_audit"."tsaccess_flush_""" in specs["r", "upd"]
    assert specs["r", "upd"].endswith("""'"tsaccess_audit"."r"')""")  # its bulk path
    # a per-row table with a column named ordinality keeps the PL/pgSQL per-row function
    assert '"tsaccess_audit"."odd"(' in specs["odd", "ins"]
    assert f"('odd', 'plain', {audit})" in specs["odd", "trn"]
    # and the compressed DELETE fallback stays a row trigger of the PL/pgSQL function
    fallback = [s for s in ddl._trigger_specs(policy, policy.table("r"), True, True)]
    assert any("FOR EACH ROW" in s.statement.as_string(None) for s in fallback)


def test_install_without_a_pg_config_names_the_flag(tmp_path):
    from tsaccess.native import install

    with pytest.raises(TsaccessError, match="--pg-config"):
        install(str(tmp_path / "no-pg_config"))


def test_the_package_ships_what_the_build_needs():
    """`tsaccess native install` copies these from the installed package (package data)."""
    import tomllib
    from pathlib import Path

    from tsaccess.native import LIBRARY, VERSION, source_dir

    files = {p.name for p in source_dir().iterdir()}
    assert {f"{LIBRARY}.c", "Makefile", f"{LIBRARY}.control", f"{LIBRARY}--{VERSION}.sql"} <= files
    control = (source_dir() / f"{LIBRARY}.control").read_text()
    assert f"default_version = '{VERSION}'" in control
    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = data["package-data"]["tsaccess"]
    assert {"native/*.c", "native/Makefile", "native/*.control", "native/*.sql"} <= set(shipped)
