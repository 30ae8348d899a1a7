"""Query results for humans and notebooks: typed rows that render as tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import class_row, dict_row

from tsaccess._render import html_table, text_table

__all__ = ["Results", "column_names", "fetch", "results"]

R = TypeVar("R")


class Results(Sequence[R], Generic[R]):
    """A typed list of rows that renders as an HTML table in Jupyter and converts to pandas."""

    def __init__(self, rows: Sequence[R], columns: Sequence[str]) -> None:
        self._rows = list(rows)
        self.columns = tuple(columns)

    def __getitem__(self, i: Any) -> Any:
        return self._rows[i]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[R]:
        return iter(self._rows)

    repr_rows = 10
    """How many rows ``repr`` (a REPL, a notebook's text output) shows."""

    def __repr__(self) -> str:
        shown = self.as_dicts(self.repr_rows)
        n = len(self)
        more = f"\n... {n - len(shown)} more rows" if n > len(shown) else ""
        table = text_table(self.columns, [list(d.values()) for d in shown])
        return f"<Results: {n} row{'s' if n != 1 else ''}>\n{table}{more}"

    def as_dicts(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The rows as dicts (the first ``limit`` rows)."""
        return [_as_dict(r, self.columns) for r in self._rows[:limit]]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` with these columns (needs the optional ``pandas`` extra)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install 'tsaccess[pandas]'") from None
        return pd.DataFrame(self.as_dicts(), columns=list(self.columns))

    def to_text(self) -> str:
        return text_table(self.columns, [list(d.values()) for d in self.as_dicts()])

    def _repr_html_(self) -> str:
        return html_table(self.columns, [list(d.values()) for d in self.as_dicts()])


def _as_dict(row: Any, columns: Sequence[str]) -> dict[str, Any]:
    if hasattr(row, "__dataclass_fields__"):
        return asdict(row)
    if isinstance(row, dict):
        return dict(row)
    return dict(zip(columns, row, strict=False))  # a tuple or a named tuple


def results(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Results[Any]:
    """Run ``query`` and return its rows as a :class:`Results` (dict rows, in column order).

    For notebooks: the table renders itself, and ``tsaccess.results(conn, query).to_pandas()``
    is a DataFrame without pandas' SQLAlchemy warning (``pd.read_sql`` warns for any psycopg
    connection). Pre-flight checks the query as usual on a pre-flight connection.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        rows = cur.fetchall() if cur.description is not None else []
        columns = [c.name for c in cur.description or ()]
    return Results(rows, columns)


def column_names(cls: type[Any]) -> list[str]:
    """The field names of a row dataclass (the columns a helper selects)."""
    return [f.name for f in fields(cls)]


def fetch(
    conn: psycopg.Connection[Any], cls: type[R], query: Any, params: Any = None
) -> Results[R]:
    """Run a helper's query and return its rows as ``cls`` instances."""
    with conn.cursor(row_factory=class_row(cls)) as cur:
        rows = cur.execute(query, params).fetchall()
    return Results(rows, column_names(cls))
