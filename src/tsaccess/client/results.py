"""Query results for humans and notebooks: typed rows that render as tables and convert to pandas
or polars.

PostgreSQL's ``numeric`` (``avg()``, ``sum()`` of numerics, ``numeric(p,s)`` columns) arrives
as Python ``Decimal``; :meth:`Results.to_pandas` and :meth:`Results.to_polars` give it as
float64, as ``pandas.read_sql`` does, unless ``exact=True`` keeps the ``Decimal`` values
(pandas ``object``, polars ``Decimal``). NULL is NaN (pandas) or null (polars) either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields
from decimal import Decimal
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import class_row, dict_row

from tsaccess._render import html_table, text_table

__all__ = ["NUMERIC_OID", "Results", "column_names", "fetch", "results", "results_async"]

R = TypeVar("R")

NUMERIC_OID = 1700
"""PostgreSQL's ``numeric`` type."""


class Results(Sequence[R], Generic[R]):
    """A typed list of rows that renders as an HTML table in Jupyter and converts to pandas."""

    def __init__(
        self, rows: Sequence[R], columns: Sequence[str], types: Sequence[int] | None = None
    ) -> None:
        self._rows = list(rows)
        self.columns = tuple(columns)
        self.types = tuple(types) if types is not None else None
        """The columns' PostgreSQL type OIDs, when the rows came from a query."""

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

    def numeric_columns(self) -> list[str]:
        """The columns of type ``numeric`` (from the query's types; for rows built by hand,
        the columns whose values are all ``Decimal`` or NULL, one at least a ``Decimal``)."""
        if self.types is not None:
            return [c for c, t in zip(self.columns, self.types, strict=False) if t == NUMERIC_OID]
        dicts = self.as_dicts()
        out = []
        for c in self.columns:
            values = [d.get(c) for d in dicts]
            if any(isinstance(v, Decimal) for v in values) and all(
                v is None or isinstance(v, Decimal) for v in values
            ):
                out.append(c)
        return out

    def to_pandas(self, *, exact: bool = False) -> Any:
        """A ``pandas.DataFrame`` with these columns (needs the optional ``pandas`` extra).

        ``numeric`` columns are float64 (NULL is NaN), as ``pandas.read_sql`` gives them;
        ``exact=True`` keeps the ``Decimal`` values (dtype ``object``, NULL is None).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install 'tsaccess[pandas]'") from None
        df = pd.DataFrame(self.as_dicts(), columns=list(self.columns))
        if not exact:
            for c in self.numeric_columns():
                df[c] = pd.to_numeric(df[c]).astype("float64")
        return df

    def to_polars(self, *, exact: bool = False) -> Any:
        """A ``polars.DataFrame`` with these columns (needs polars: ``pip install
        'tsaccess[polars]'``); ``numeric`` columns are Float64 unless ``exact=True`` (polars
        ``Decimal``)."""
        try:
            import polars as pl
        except ImportError:
            raise ImportError("to_polars() needs polars: pip install 'tsaccess[polars]'") from None
        df = pl.DataFrame(
            [[d.get(c) for c in self.columns] for d in self.as_dicts()],
            schema=list(self.columns),
            orient="row",
        )
        if not exact:
            df = df.with_columns(pl.col(c).cast(pl.Float64) for c in self.numeric_columns())
        return df

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
    connection), ``numeric`` as float64. Pre-flight checks the query as usual on a pre-flight
    connection. (Async: ``await tsaccess.client.results.results_async(conn, query)``.)
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        rows = cur.fetchall() if cur.description is not None else []
        columns = [c.name for c in cur.description or ()]
        types = [c.type_code for c in cur.description or ()]
    return Results(rows, columns, types)


async def results_async(
    conn: psycopg.AsyncConnection[Any], query: Any, params: Any = None
) -> Results[Any]:
    """:func:`results` for an async connection."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall() if cur.description is not None else []
        columns = [c.name for c in cur.description or ()]
        types = [c.type_code for c in cur.description or ()]
    return Results(rows, columns, types)


def column_names(cls: type[Any]) -> list[str]:
    """The field names of a row dataclass (the columns a helper selects)."""
    return [f.name for f in fields(cls)]


def fetch(
    conn: psycopg.Connection[Any], cls: type[R], query: Any, params: Any = None
) -> Results[R]:
    """Run a helper's query and return its rows as ``cls`` instances."""
    with conn.cursor(row_factory=class_row(cls)) as cur:
        rows = cur.execute(query, params).fetchall()
        names = [c.name for c in cur.description or ()]
        by_name = dict(zip(names, [c.type_code for c in cur.description or ()], strict=False))
    columns = column_names(cls)
    return Results(rows, columns, [by_name.get(c, 0) for c in columns])
