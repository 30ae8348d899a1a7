"""Generated query shapes for the pre-flight benchmark: joins of 1-4 tables, CTEs, subqueries,
windows, aggregates and DML, over tables an analyst may read in full and tables granted by
column. Every shape is allowed for the bench's analyst (the common case); each is distinct."""

from __future__ import annotations

import random

SCHEMA = """
CREATE TABLE sensor_readings (time timestamptz NOT NULL, sensor_id text, temperature numeric(5,2),
                              humidity int, location text, department text);
CREATE TABLE sensors (id text, name text, department_id int, site_id int);
CREATE TABLE sites (id int, name text, region text);
CREATE TABLE departments (id int, name text, budget numeric);
CREATE TABLE notes (id serial, sensor_id text, body text, author text);
INSERT INTO sensor_readings SELECT now() - i * interval '1 min', 's' || (i % 5), 20, 40, 'A', 'Eng'
  FROM generate_series(1, 200) i;
"""

GRANTS = """
GRANT SELECT (time, sensor_id, temperature, humidity) ON sensor_readings TO {user};
GRANT SELECT ON sensors, sites, departments TO {user};
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO {user};
GRANT USAGE ON SEQUENCE notes_id_seq TO {user};
"""

# (alias, table, readable columns, join key to sensors: (own column, sensors column))
TABLES = [
    ("r", "sensor_readings", ["time", "sensor_id", "temperature", "humidity"], ("sensor_id", "id")),
    ("s", "sensors", ["id", "name", "department_id", "site_id"], ("id", "id")),
    ("d", "departments", ["id", "name", "budget"], ("id", "department_id")),
    ("x", "sites", ["id", "name", "region"], ("id", "site_id")),
]
AGGS = ["count(*)", "avg({c})", "max({c})", "min({c})", "sum({c})", "count(DISTINCT {c})"]
NUMERIC = {"temperature", "humidity", "budget", "department_id", "site_id"}


def _select(rng: random.Random, n_tables: int, tag: int) -> str:
    chosen = [TABLES[1], *rng.sample([TABLES[0], TABLES[2], TABLES[3]], n_tables - 1)]
    if n_tables == 1:
        chosen = [rng.choice(TABLES)]
    rng.shuffle(chosen)
    first = chosen[0]
    joins = f"{first[1]} {first[0]}"
    for alias, table, _cols, key in chosen[1:]:
        anchor = next((c for c in chosen if c[1] == "sensors"), first)
        on = (
            f"{alias}.{key[0]} = {anchor[0]}.{key[1]}"
            if anchor[1] == "sensors" and alias != anchor[0]
            else f"{alias}.{key[0]}::text = {first[0]}.{first[3][0]}::text"
        )
        joins += rng.choice(
            [f" JOIN {table} {alias} ON {on}", f" LEFT JOIN {table} {alias} ON {on}"]
        )
    cols = [(a, c) for a, _t, cs, _k in chosen for c in cs]
    group = [f"{a}.{c}" for a, c in rng.sample(cols, min(len(cols), rng.randint(1, 2)))]
    num = [(a, c) for a, c in cols if c in NUMERIC] or cols
    agg_col = "{}.{}".format(*rng.choice(num))
    agg = rng.choice(AGGS).format(c=agg_col)
    where_col = "{}.{}".format(*rng.choice(cols))
    where = rng.choice(
        [
            "",
            f" WHERE {where_col} IS NOT NULL",
            f" WHERE {where_col}::text LIKE 'a%'",
            " WHERE r.time > now() - interval '1 day'" if any(c[0] == "r" for c in chosen) else "",
        ]
    )
    kind = rng.choice(["group", "plain", "window", "order"])
    label = f"c{tag}"
    if kind == "group":
        body = f"SELECT {', '.join(group)}, {agg} AS {label} FROM {joins}{where} GROUP BY {', '.join(group)}"
    elif kind == "window":
        part = group[0]
        body = (
            f"SELECT {', '.join(group)}, {agg.replace('DISTINCT ', '')} OVER (PARTITION BY {part})"
            f" AS {label} FROM {joins}{where}"
        )
    elif kind == "order":
        body = f"SELECT {', '.join(group)} AS {label} FROM {joins}{where} ORDER BY 1 LIMIT 10"
    else:
        body = f"SELECT {', '.join(group)}, 1 AS {label} FROM {joins}{where}"
    wrap = rng.choice(["", "", "cte", "sub", "in", "exists"])
    if wrap == "cte":
        return f"WITH q AS ({body}) SELECT * FROM q"
    if wrap == "sub":
        return f"SELECT count(*) FROM ({body}) q"
    if wrap == "in":
        return (
            f"SELECT s2.name AS n{tag} FROM sensors s2 WHERE s2.id IN"
            f" (SELECT r2.sensor_id FROM sensor_readings r2 WHERE r2.temperature > 20)"
        )
    if wrap == "exists":
        return (
            f"SELECT s2.name AS n{tag} FROM sensors s2 WHERE EXISTS ({body.split(' FROM ', 1)[0]}"
            f" FROM {joins}{where}) ORDER BY 1"
        )
    return body


def _dml(rng: random.Random, tag: int) -> str:
    kind = rng.choice(["insert", "insert_select", "update", "delete"])
    back = f" RETURNING id AS r{tag}"  # a distinct shape, not only distinct constants
    if kind == "insert":
        return f"INSERT INTO notes (sensor_id, body, author) VALUES ('s1', 'b', 'me'){back}"
    if kind == "insert_select":
        return (
            "INSERT INTO notes (sensor_id, body) SELECT r.sensor_id, 'n' FROM sensor_readings r"
            f" WHERE r.temperature > 10 LIMIT 5{back}"
        )
    if kind == "update":
        col = rng.choice(["body", "author"])
        return f"UPDATE notes SET {col} = 'u' WHERE id = 1 AND sensor_id IS NOT NULL{back}"
    return f"DELETE FROM notes WHERE id = 1 AND author = 'x'{back}"


def shapes(n: int = 240, seed: int = 22) -> list[str]:
    """``n`` distinct statements (distinct shapes: each carries a different name or clause)."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    tag = 0
    while len(out) < n:
        tag += 1
        stmt = _dml(rng, tag) if rng.random() < 0.2 else _select(rng, rng.randint(1, 4), tag)
        if stmt not in seen:
            seen.add(stmt)
            out.append(stmt)
    return out
