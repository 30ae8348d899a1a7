"""The committed init/ is exactly what render-init makes from examples/company.toml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tsaccess.plan.compose import render_init
from tsaccess.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]


def test_committed_init_scripts_are_current(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    written = render_init(load_policy("examples/company.toml"), tmp_path)
    for path in written:
        committed = ROOT / "init" / path.name
        assert committed.read_text() == path.read_text(), (
            f"init/{path.name} is stale: run "
            "`tsaccess render-init --policy examples/company.toml --out init/`"
        )
    assert sorted(p.name for p in (ROOT / "init").iterdir()) == sorted(p.name for p in written)


def test_no_key_material_is_committed():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "ssl"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(tracked) == ["ssl/.gitignore", "ssl/README.md"]
