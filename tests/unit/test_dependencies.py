"""Dependencies a library can live with (issue 26): psycopg listed once, sqlglot as a range of
releases that CI tests at both ends, the compiled sqlglotc an optional extra."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DEPS = [Requirement(d) for d in PROJECT["dependencies"]]
EXTRAS = {k: [Requirement(d) for d in v] for k, v in PROJECT["optional-dependencies"].items()}


def _named(reqs: list[Requirement], name: str) -> list[Requirement]:
    return [r for r in reqs if r.name == name]


def test_psycopg_and_its_pool_are_one_requirement():
    psycopg = _named(DEPS, "psycopg")
    assert len(psycopg) == 1 and {"binary", "pool"} <= psycopg[0].extras
    assert _named(DEPS, "psycopg-pool") == []  # the [pool] extra brings it


def test_sqlglot_is_a_range_of_releases_and_sqlglotc_is_optional():
    (sqlglot,) = _named(DEPS, "sqlglot")
    ops = {s.operator for s in sqlglot.specifier}
    assert ops == {">=", "<"}, sqlglot  # a lower and an upper bound, no ~= on one minor
    low = Version(next(s.version for s in sqlglot.specifier if s.operator == ">="))
    high = Version(next(s.version for s in sqlglot.specifier if s.operator == "<"))
    assert high.major > low.major or high.minor > low.minor + 1, "a range, not one release"
    assert _named(DEPS, "sqlglotc") == []  # no musllinux wheel: never required
    (speed,) = [r for r in EXTRAS.get("speed", []) if r.name == "sqlglotc"]
    assert speed.specifier == sqlglot.specifier  # the compiled build of the same releases


def test_ci_runs_the_preflight_tests_at_both_ends_of_the_range():
    """The nox session exists, is a default one (what CI runs), is parametrized on the oldest
    and the newest sqlglot, and takes the range from pyproject.toml (one source of truth)."""
    text = (ROOT / "noxfile.py").read_text()
    tree = ast.parse(text)
    defaults = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Attribute) and t.attr == "sessions" for t in node.targets)
    )
    names = [e.value for e in defaults.elts]  # type: ignore[attr-defined]
    assert "preflight" in names
    session = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "preflight")
    src = ast.get_source_segment(text, session) or ""
    decorators = [ast.get_source_segment(text, d) or "" for d in session.decorator_list]
    assert any(re.search(r"parametrize\(\s*\"sqlglot\"", d) for d in decorators), decorators
    assert "oldest" in text and "newest" in text
    assert "pyproject.toml" in text
    for pattern in ("tests/unit/test_preflight_*.py", "tests/integration/test_preflight*.py"):
        assert pattern in text, pattern
    assert "session.install" in src


def test_preflight_parses_with_the_compiled_sqlglot_when_it_is_installed():
    import importlib.metadata

    import pytest

    try:
        importlib.metadata.distribution("sqlglotc")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("sqlglotc (the speed extra) is not installed here")
    from tsaccess.preflight import analyze

    analyze("SELECT 1")  # loads sqlglot the way pre-flight does
    import sqlglot.parser

    assert Path(sqlglot.parser.__file__).suffix == ".so", sqlglot.parser.__file__
