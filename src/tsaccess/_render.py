"""Plain-text and HTML tables for terminals and Jupyter."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned text table."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in cells]
    return "\n".join([line.rstrip(), sep, *(b.rstrip() for b in body)])


def html_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, classes: Sequence[Sequence[str]] = ()
) -> str:
    """An HTML table; ``classes`` optionally gives a CSS class per cell."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        tds = []
        for j, v in enumerate(row):
            cls = classes[i][j] if i < len(classes) and j < len(classes[i]) else ""
            attr = f' class="{html.escape(cls)}"' if cls else ""
            tds.append(f"<td{attr}>{html.escape(cell(v))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        '<table class="tsaccess"><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )
