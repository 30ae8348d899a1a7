"""The layout's rules, swept over every module of src/tsaccess (not a list of known offenders).

* no import cycle between top-level parts (``tsaccess.plan``, ``tsaccess.audit``, ...) and none
  between the modules of any package (``policy``, ``ephemeral``, ...), function-level imports
  included;
* at most 12 plain modules at the top of ``src/tsaccess``; no module of 500 lines or more;
* the old import paths answer, with a ``DeprecationWarning`` naming the new place.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "tsaccess"

# old paths kept for one release: they import from their new place, so they point "up"
COMPAT = {"tsaccess.connection", "tsaccess.bootstrap", "tsaccess.pool", "tsaccess._compat"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every tsaccess module ``name`` imports, at any depth of the file (TYPE_CHECKING too)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tsaccess")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if not mod.startswith("tsaccess"):
                continue
            for a in node.names:  # "from pkg import submodule" imports the submodule
                sub = f"{mod}.{a.name}"
                out.add(sub if sub in known else mod)
    return {m for m in out if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(m, p, known) for m, p in mods.items() if m not in COMPAT}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _part(module: str, depth: int) -> str:
    return ".".join(module.split(".")[:depth])


def test_no_cycle_between_top_level_parts():
    edges: dict[str, set[str]] = defaultdict(set)
    for src, targets in _graph().items():
        if src == "tsaccess":  # the facade re-exports the public API
            continue
        for dst in targets:
            a, b = _part(src, 2), _part(dst, 2)
            if a != b and b != "tsaccess":
                edges[a].add(b)
    assert _cycles(edges) == []


def test_no_cycle_inside_any_package():
    graph = _graph()
    packages = {m for m, p in _modules().items() if p.name == "__init__.py"}
    for pkg in sorted(packages):
        depth = pkg.count(".") + 2
        edges: dict[str, set[str]] = defaultdict(set)
        for src, targets in graph.items():
            if not src.startswith(pkg + ".") or src in packages:
                continue  # a package's facade re-exports its rooms
            for dst in targets:
                if dst.startswith(pkg + ".") and dst not in packages:
                    a, b = _part(src, depth), _part(dst, depth)
                    if a != b:
                        edges[a].add(b)
        assert _cycles(edges) == [], pkg


def test_the_sweep_finds_a_cycle_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_at_most_twelve_plain_modules_at_the_top():
    plain = [p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(plain) <= 12, sorted(plain)


def test_no_module_of_500_lines_or_more():
    long = {
        str(p.relative_to(SRC)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) >= 500
    }
    assert long == {}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("tsaccess.connection", "tsaccess.client.connection"),
        ("tsaccess.bootstrap", "tsaccess.plan.compose"),
        ("tsaccess.pool", "tsaccess.client.pool"),
        *sorted(importlib.import_module("tsaccess._compat").MOVED.items()),
    ],
)
def test_old_import_paths_answer_with_a_deprecation_warning(old, new):
    """In a fresh interpreter: the old path imports, warns naming the new one, and is the same
    module (or re-exports the same objects)."""
    code = (
        "import warnings, importlib\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        "msgs = [str(w.message) for w in seen if w.category is DeprecationWarning]\n"
        f"assert any({new!r} in m for m in msgs), msgs\n"
        "assert old is new or all(getattr(old, n) is getattr(new, n) for n in new.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_audit_install_answers_with_a_deprecation_warning():
    from tsaccess import audit
    from tsaccess.plan import install_audit

    with pytest.warns(DeprecationWarning, match=r"tsaccess\.plan\.install_audit"):
        assert audit.install is install_audit
