"""Run every example against one throwaway server (``nox -s examples``), notebook included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "01_bootstrap.py",
    "02_security_matrix.py",
    "03_tls_check.py",
    "05_ingest_job.py",
    "04_monitoring.py",
]


EXECUTED = HERE / "_executed" / "analyst.ipynb"


def check_outputs(nb: Any) -> str:
    """What is wrong with the executed notebook's saved outputs ("" when nothing): the plot
    must be inline (an image/png output), the access table rendered as HTML."""
    kinds = [set(o.get("data", {})) for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    if not any("image/png" in k for k in kinds):
        return "no image/png output: the plot was not rendered inline"
    if not any("text/html" in k for k in kinds):
        return "no text/html output: tables did not render as HTML"
    return ""


def main() -> int:
    sys.path.insert(0, str(HERE))
    from _common import ensure_company_db

    os.environ.pop("PGHOST", None)
    ensure_company_db()  # one server for all, exported through PG* variables
    failed = []
    for script in SCRIPTS:
        print(f"\n===== {script}", flush=True)
        res = subprocess.run([sys.executable, str(HERE / script)], cwd=HERE, check=False)
        if res.returncode != 0:
            failed.append(script)
    print("\n===== analyst.ipynb", flush=True)
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(HERE / "analyst.ipynb", as_version=4)
    try:
        NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
        ).execute()
        print("notebook executed:", sum(1 for c in nb.cells if c.cell_type == "code"), "cells")
        EXECUTED.parent.mkdir(exist_ok=True)
        nbformat.write(nb, EXECUTED)
        problem = check_outputs(nb)
        if problem:
            print(f"notebook output: {problem}")
            failed.append("analyst.ipynb")
        else:
            print(f"notebook output has its plot (image/png): {EXECUTED.relative_to(HERE)}")
    except Exception as exc:
        print(f"notebook failed: {exc}"[:2000])
        failed.append("analyst.ipynb")
    print(
        f"\n{len(SCRIPTS) + 1 - len(failed)} passed, {len(failed)} failed"
        + (f": {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
