"""docs/architecture.md says what the import-linter contracts enforce (pyproject.toml)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_every_layer_is_on_the_page_in_contract_order():
    page = (ROOT / "docs" / "architecture.md").read_text()
    table = [line for line in page.splitlines() if line.startswith("| ") and "`tsaccess" in line]
    cells = [re.split(r"(?<!\\)\|", line) for line in table]
    doc_layers = [set(re.findall(r"`(tsaccess[\w.]*)`", c[2])) for c in cells]
    contract_layers = [
        {m.strip() for m in layer.split("|")} for layer in _contracts()["layers"]["layers"]
    ]
    flat_doc = [m for layer in doc_layers for m in sorted(layer)]
    for layer in contract_layers:
        for module in layer:
            assert module in flat_doc, f"{module} is in the contract but not on the page"
    # order: each contract layer's modules come after those of the layer above it
    position = {m: i for i, layer in enumerate(doc_layers) for m in layer}
    ranks = [min(position[m] for m in layer) for layer in contract_layers]
    assert ranks == sorted(ranks), ranks
    for module in flat_doc:
        assert any(module in layer for layer in contract_layers), f"{module} only on the page"


def test_the_other_contracts_are_described():
    page = (ROOT / "docs" / "architecture.md").read_text()
    for cid in _contracts():
        if cid != "layers":
            assert f"(`{cid}`)" in page, cid
