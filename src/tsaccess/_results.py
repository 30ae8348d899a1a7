"""Query results for humans and notebooks: typed rows that render as tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import class_row

from tsaccess._render import html_table, text_table

__all__ = ["Results", "column_names", "fetch"]

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

    def __repr__(self) -> str:
        return f"<Results {len(self)} rows: {', '.join(self.columns)}>"

    def as_dicts(self) -> list[dict[str, Any]]:
        return [
            asdict(r) if hasattr(r, "__dataclass_fields__") else dict(r)  # type: ignore[call-overload]
            for r in self._rows
        ]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (needs the optional ``pandas`` extra)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install 'tsaccess[pandas]'") from None
        return pd.DataFrame(self.as_dicts(), columns=list(self.columns))

    def to_text(self) -> str:
        return text_table(self.columns, [list(d.values()) for d in self.as_dicts()])

    def _repr_html_(self) -> str:
        return html_table(self.columns, [list(d.values()) for d in self.as_dicts()])


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
