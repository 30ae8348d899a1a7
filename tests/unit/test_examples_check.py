"""The examples session fails when the executed notebook lost its inline plot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

RUN_ALL = Path(__file__).resolve().parents[2] / "examples" / "run_all.py"


@pytest.fixture
def check_outputs():
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check_outputs


def _nb(*outputs):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("display_data", data=d) for d in outputs]
    nb.cells = [cell]
    return nb


def test_a_notebook_without_its_png_fails(check_outputs):
    html = {"text/html": "<table></table>", "text/plain": "t"}
    assert check_outputs(_nb(html, {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})) == ""
    assert "image/png" in check_outputs(_nb(html, {"text/plain": "<Figure size 640x480>"}))
    assert "text/html" in check_outputs(_nb({"image/png": "iVBORw0KGgo="}))


def test_the_shipped_notebook_does_not_switch_to_a_headless_backend():
    nb = nbformat.read(RUN_ALL.parent / "analyst.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'matplotlib.use("Agg")' not in code and "%matplotlib inline" in code
    # pandas through tsaccess: to_pandas(), or read_sql with the tsaccess engine (never with a
    # psycopg connection, which warns); numeric needs no ::float cast any more
    assert ".to_pandas()" in code and "::float" not in code
    assert all("engine" in line for line in code.splitlines() if "pd.read_sql(" in line)
    assert (
        "tsaccess.create_engine(" in code and "%sql engine" in code and "pl.read_database" in code
    )
