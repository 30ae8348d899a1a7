"""The token scan compiled with mypyc (as sqlglotc compiles sqlglot), measured beside the pure
Python one: ``TSACCESS_BENCH_COMPILED=1 python -m bench --only preflight``.

Not a build tsaccess ships: a copy of ``src/tsaccess`` in a scratch directory gets its hot
modules (the scan, the DML heads, the text normalisation) compiled there, and a child Python
imports tsaccess from that copy and times the same shapes the same way. Needs mypy (mypyc) and
a C compiler; without them the figure is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HOT = ["tsaccess/preflight/scan.py", "tsaccess/preflight/writes.py", "tsaccess/preflight/text.py"]
SRC = Path(__file__).resolve().parents[1] / "src" / "tsaccess"

_SETUP = """
from setuptools import setup
from mypyc.build import mypycify
setup(name="tsaccess-scan-compiled", ext_modules=mypycify({hot!r}, opt_level="3"))
"""

_CHILD = """
import json, random, statistics, sys, time
import tsaccess
from tsaccess.preflight import Checker
from tsaccess.preflight import scan
params, texts, rounds = json.loads(sys.stdin.read())
assert scan.__file__.endswith(".so"), scan.__file__
with tsaccess.connect(**params, autocommit=True) as conn:
    checker = Checker(conn, ttl=3600)
    for t in texts:
        checker.check(t)
    times = []
    for rnd in range(rounds):
        checker._analyses.clear()
        checker._verdicts.clear()
        order = texts[:]
        random.Random(rnd).shuffle(order)
        for t in order:
            t0 = time.perf_counter()
            checker.check(t)
            times.append(time.perf_counter() - t0)
            conn.execute("SELECT 1", prepare=True).fetchone()
print(json.dumps([statistics.median(times), statistics.quantiles(times, n=20)[-1]]))
"""


def wanted() -> bool:
    return os.environ.get("TSACCESS_BENCH_COMPILED", "").lower() in ("1", "true", "yes")


def measure(params: dict[str, Any], texts: list[str], rounds: int) -> tuple[float, float] | str:
    """(median, p95) of checks with the compiled scan, or why it was not measured."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "no C compiler"
    try:
        import mypyc  # noqa: F401
    except ImportError:
        return "mypyc is not installed (pip install mypy)"
    with tempfile.TemporaryDirectory(prefix="tsaccess-mypyc-") as tmp:
        root = Path(tmp)
        shutil.copytree(SRC, root / "tsaccess")
        (root / "setup.py").write_text(_SETUP.format(hot=HOT))
        (root / "mypy.ini").write_text("[mypy]\nignore_missing_imports = True\n")
        build = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if build.returncode != 0:
            return "mypyc build failed: " + (build.stderr or build.stdout)[-200:]
        env = {**os.environ, "PYTHONPATH": str(root)}
        child = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=json.dumps([params, texts, rounds]),
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if child.returncode != 0:
            return "compiled run failed: " + child.stderr[-200:]
        med, p95 = json.loads(child.stdout.strip().splitlines()[-1])
        return float(med), float(p95)
