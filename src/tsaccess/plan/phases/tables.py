"""The schema phase: tables, added columns, time indexes, hypertables, and the drift of existing
columns (nullability, defaults).

Like every phase, each function compares the policy with a catalog snapshot (``None``: an empty
database, for :func:`tsaccess.plan.render_init`) and returns only the steps that make a
difference.
"""

from __future__ import annotations

import re

from psycopg import sql

from tsaccess.catalog import CatalogSnapshot, ColumnInfo
from tsaccess.errors import PolicyError
from tsaccess.policy import Column, Policy, Table
from tsaccess.steps import Step

__all__ = ["column_drift_steps", "table_steps"]

_TYPE_ALIASES = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "bool": "boolean",
    "float8": "double precision",
    "float4": "real",
    "decimal": "numeric",
    "varchar": "character varying",
    "char": "character",
    "timetz": "time with time zone",
    "time": "time without time zone",
}


def _column_sql(c: Column) -> sql.Composed:
    parts: list[sql.Composable] = [sql.Identifier(c.name), sql.SQL(c.type)]
    if not c.nullable:
        parts.append(sql.SQL("NOT NULL"))
    if c.default_function:
        parts.append(sql.SQL("DEFAULT " + c.default_function))
    elif c.default is not None:
        parts.append(sql.SQL("DEFAULT {}").format(sql.Literal(c.default)))
    return sql.SQL(" ").join(parts)


def _canonical_type(t: str) -> str:
    base, sep, rest = t.partition("(")
    arr = base.endswith("[]")
    base = base.removesuffix("[]").strip()
    base = _TYPE_ALIASES.get(base, base)
    out = base + (sep + rest if sep else "")
    return out.replace(", ", ",") + ("[]" if arr else "")


def table_steps(
    policy: Policy, t: Table, cat: CatalogSnapshot | None, ts: bool, warnings: list[str]
) -> list[Step]:
    target = sql.Identifier(policy.schema, t.name)
    info = cat.tables.get(t.name) if cat else None
    steps: list[Step] = []
    if info is None:
        steps.append(
            Step(
                sql.SQL("CREATE TABLE {} ({})").format(
                    target, sql.SQL(", ").join(_column_sql(c) for c in t.columns)
                ),
                f"create table {t.name}",
                "schema",
            )
        )
    else:
        if info.kind not in ("r", "p"):
            raise PolicyError(
                f"{policy.schema}.{t.name} exists but is not a table "
                f"(relkind {info.kind!r}); rename one of them",
                path=f"tables.{t.name}",
                source=policy.source,
            )
        live = {c.name: c for c in info.columns}
        for c in t.columns:
            lc = live.get(c.name)
            if lc is None:
                steps.append(
                    Step(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(target, _column_sql(c)),
                        f"add column {t.name}.{c.name}",
                        "schema",
                    )
                )
            elif _canonical_type(c.type) != _canonical_type(lc.type):
                raise PolicyError(
                    f"column {t.name}.{c.name} is {lc.type} in the database but {c.type} in "
                    "the policy; tsaccess does not rewrite data: migrate the column or change "
                    "the policy",
                    path=f"tables.{t.name}.columns.{c.name}",
                    source=policy.source,
                )
        extra = sorted(set(live) - {c.name for c in t.columns})
        if extra:
            warnings.append(
                f"table {t.name} has columns the policy does not list: "
                f"{', '.join(extra)} (left alone)"
            )
    if (
        t.time_column
        and not (t.hypertable and ts)
        and not (info and t.time_column in info.indexed_first_columns)
    ):  # a hypertable brings its own time index; a plain table gets the same
        steps.append(
            Step(
                sql.SQL("CREATE INDEX ON {} ({} DESC)").format(
                    target, sql.Identifier(t.time_column)
                ),
                f"index {t.name} ({t.time_column} DESC)",
                "schema",
            )
        )
    if t.hypertable and ts and not (info and info.hypertable):
        interval = (
            sql.SQL(", INTERVAL {}").format(sql.Literal(t.chunk_interval))
            if t.chunk_interval
            else sql.SQL("")
        )
        steps.append(
            Step(
                sql.SQL(
                    "SELECT create_hypertable({}::regclass, by_range({}{}), migrate_data => true)"
                ).format(sql.Literal(target.as_string(None)), sql.Literal(t.time_column), interval),
                f"make {t.name} a hypertable on {t.time_column}",
                "schema",
            )
        )
    return steps


def _literal_text(live: str) -> str:
    """``'-1'::integer`` -> ``-1``; ``'it''s'::text`` -> ``it's``; ``1.50`` -> ``1.50``."""
    m = re.fullmatch(r"'((?:[^']|'')*)'(?:::[a-z][a-z0-9 _\[\]()]*)?", live.strip())
    return m.group(1).replace("''", "'") if m else live.strip()


def _same_default(c: Column, live: ColumnInfo) -> bool:
    if c.default_function:
        return live.default is not None and live.default.lower() == c.default_function.lower()
    if c.default is None:
        return live.default is None
    if live.default is None:
        return False
    have = _literal_text(live.default)
    if isinstance(c.default, bool):
        return have.lower() in (("true", "t") if c.default else ("false", "f"))
    if isinstance(c.default, int | float):
        try:
            return float(have) == float(c.default)
        except ValueError:
            return False
    return have == c.default


def column_drift_steps(policy: Policy, t: Table, cat: CatalogSnapshot | None) -> list[Step]:
    """Nullability and defaults of the table's existing columns, as the policy says."""
    info = cat.tables.get(t.name) if cat else None
    if info is None or info.kind not in ("r", "p"):
        return []
    live = {c.name: c for c in info.columns}
    target = sql.Identifier(policy.schema, t.name)
    steps: list[Step] = []
    for c in t.columns:
        lc = live.get(c.name)
        if lc is None:
            continue
        col = sql.Identifier(c.name)
        if lc.not_null == c.nullable:
            verb = "DROP NOT NULL" if c.nullable else "SET NOT NULL"
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} {}").format(target, col, sql.SQL(verb)),
                    f"column {t.name}.{c.name}: {verb.lower()}",
                    "schema",
                    action="change",
                    object=f"table {t.name}",
                )
            )
        if not _same_default(c, lc):
            if c.default_function:
                expr: sql.Composable = sql.SQL("SET DEFAULT " + c.default_function)
                what = c.default_function
            elif c.default is not None:
                expr = sql.SQL("SET DEFAULT {}").format(sql.Literal(c.default))
                what = repr(c.default)
            else:
                expr, what = sql.SQL("DROP DEFAULT"), "none"
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} {}").format(target, col, expr),
                    f"column {t.name}.{c.name}: default {lc.default or 'none'} -> {what}",
                    "schema",
                    action="change",
                    object=f"table {t.name}",
                )
            )
    return steps
