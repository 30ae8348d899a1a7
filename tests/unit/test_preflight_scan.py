"""The token scan (pre-flight's fast path for new query shapes) on a hand-made snapshot: what it
may allow without parsing, and every form that must send the statement to the full analysis.

The server is the judge in ``tests/integration/test_preflight_differential.py``; these cases pin
the rules down one by one, so that a broken rule fails here with its name."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tsaccess.preflight.scan import scan_read
from tsaccess.preflight.snapshot import SYSTEM_COLUMNS, Rel, Snapshot
from tsaccess.preflight.text import shape

_NO = {"SELECT": False, "INSERT": False, "UPDATE": False, "DELETE": False, "TRUNCATE": False}


def _rel(oid: int, schema: str, name: str, cols: list[str], granted: set[str] | None) -> Rel:
    """``granted`` None: table-level SELECT; else SELECT on those columns only."""
    rel = Rel(
        oid,
        schema,
        name,
        schema != "hidden",
        {**_NO, "SELECT": granted is None},
        {"SELECT": granted is None or bool(granted), "INSERT": False, "UPDATE": False},
    )
    rel.columns = [
        (c, {"SELECT": granted is None or c in granted, "INSERT": False, "UPDATE": False})
        for c in [*cols, *sorted(SYSTEM_COLUMNS)]
    ]
    return rel


def _notes() -> Rel:
    """A table written through column grants: INSERT (id, body, author), UPDATE (body),
    SELECT (id, body), DELETE; ``id`` defaults to a sequence the role may not use."""
    rel = _rel(8, "public", "notes", ["id", "body", "author", "secret"], {"id", "body"})
    rel.table["DELETE"] = True
    rel.any.update(INSERT=True, UPDATE=True)
    for name, privs in rel.columns or []:
        privs["INSERT"] = name in ("id", "body", "author")
        privs["UPDATE"] = name == "body"
    rel.sequences = (("id", 99, "public.notes_id_seq"),)
    return rel


def _snapshot() -> Snapshot:
    rels = [
        _rel(
            1,
            "public",
            "readings",
            ["time", "sensor_id", "temp", "secret"],
            {"time", "sensor_id", "temp"},
        ),
        _rel(2, "public", "sensors", ["id", "name", "site_id"], None),
        _rel(3, "public", "sites", ["id", "name"], None),
        _rel(4, "public", "vault", ["id", "code"], set()),
        _rel(5, "hidden", "h", ["x"], None),
        _rel(6, "app", "readings", ["time", "secret"], {"time"}),
        _rel(7, "pg_catalog", "pg_authid", ["rolname", "rolpassword"], set()),
        _notes(),
    ]
    return Snapshot(
        "u",
        "u",
        ("pg_catalog", "public"),
        {(r.schema, r.name): r for r in rels},
        {"public": True, "hidden": False, "app": True, "pg_catalog": True},
        frozenset({"pg_class"}),
        0.0,
        1,
    )


def _loaded(rels: object) -> None:
    """The columns are already there."""


def scan(sql: str) -> tuple[str, ...] | None:
    shaped = shape(sql)
    return None if shaped is None else scan_read(shaped, _snapshot(), _loaded)


ALLOWED = [
    "SELECT r.temp, s.name FROM readings r JOIN sensors s ON s.id = r.sensor_id",
    "SELECT s.name AS n, avg(r.temp) FROM readings r JOIN sensors s ON s.id = r.sensor_id"
    " JOIN sites x ON x.id = s.site_id WHERE r.time > now() - interval '1 day' GROUP BY 1",
    "WITH recent AS (SELECT sensor_id, max(time) AS t FROM readings GROUP BY sensor_id)"
    " SELECT r.temp FROM readings r JOIN recent ON recent.sensor_id = r.sensor_id",
    "SELECT count(*) FROM readings",
    "SELECT 1 FROM readings WHERE false",
    "SELECT readings.temp FROM readings",
    'SELECT "R".temp FROM readings "R"',
    "SELECT R.TEMP FROM READINGS R",
    "SELECT r.temp FROM readings AS r, sensors s WHERE s.id = r.sensor_id",
    "SELECT r.temp FROM readings r WHERE r.sensor_id IN (SELECT id FROM sensors)",
    "SELECT * FROM sensors",
    "SELECT s FROM sensors s",  # a whole row of a table read in full
    "EXPLAIN SELECT r.temp FROM readings r",
    "SELECT r.temp FROM readings r WHERE r.sensor_id = %s",
    "SELECT x FROM generate_series(1, 3) x",
    "SELECT relname FROM pg_class",
    "SELECT 1",
    "SELECT x.n FROM (SELECT s.name AS n FROM sensors s) x",
    "SELECT v.a FROM (VALUES (1), (2)) v(a), readings r WHERE r.temp > v.a",
    "WITH a AS (SELECT temp FROM readings), b AS (SELECT temp FROM a) SELECT temp FROM b",
    "SELECT r.temp AS from_temp FROM readings r WHERE r.time IS DISTINCT FROM now()",
    "SELECT extract(epoch FROM r.time) FROM readings r",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed_without_parsing(sql):
    assert scan(sql) is not None


ANALYSE = {
    # a column that is not granted, however it is spelled
    "secret column": "SELECT r.secret FROM readings r",
    "secret, upper case": "SELECT R.SECRET FROM readings R",
    "secret, quoted": 'SELECT r."secret" FROM readings r',
    "secret in WHERE": "SELECT r.temp FROM readings r WHERE secret IS NULL",
    "secret in a subquery": "SELECT (SELECT max(secret) FROM readings) FROM sensors",
    "secret in USING": "SELECT 1 FROM readings JOIN app.readings USING (secret)",
    "system column": "SELECT ctid FROM readings",
    "system column, qualified": "SELECT r.xmin FROM readings r",
    # whole-row references
    "alias alone": "SELECT r FROM readings r",
    "table alone": "SELECT readings FROM readings",
    "table alone after a comma": "SELECT s.name, readings FROM sensors s, readings",
    "alias after a comma": "SELECT s.name, r FROM sensors s, readings r",
    "function of the row": "SELECT row_to_json(r) FROM readings r",
    "field of the row": "SELECT (r).temp FROM readings r",
    "functional notation": "SELECT temp(r) FROM readings r",
    "cast": "SELECT r::text FROM readings r",
    "GROUP BY the row": "SELECT count(*) FROM readings r GROUP BY r",
    "IS DISTINCT FROM the row": "SELECT 1 FROM readings r WHERE NULL IS DISTINCT FROM r",
    "LATERAL function of the row": "SELECT 1 FROM readings r, LATERAL row_to_json(r) j",
    "scalar subquery of the row": "SELECT (SELECT r) FROM readings r",
    "attribute notation": "SELECT r.label FROM readings r",
    # stars and joins that read unnamed columns
    "star": "SELECT * FROM readings",
    "qualified star": "SELECT r.* FROM readings r",
    "count of the row": "SELECT count(r.*) FROM readings r",
    "star in a CTE": "WITH c AS (SELECT * FROM readings) SELECT temp FROM c",
    "natural join": "SELECT 1 FROM readings NATURAL JOIN sensors",
    "column alias list": "SELECT x.a FROM readings AS x(a, b, c, d)",
    # statements that need more than SELECT or cannot be scanned
    "FOR UPDATE": "SELECT r.temp FROM readings r FOR UPDATE",
    "INTO": "SELECT temp INTO TEMP t FROM readings",
    "writable CTE": "WITH d AS (DELETE FROM sensors RETURNING id) SELECT * FROM d",
    "two statements": "SELECT 1; SELECT r.temp FROM readings r",
    "Unicode name": 'SELECT U&"\\0073ecret" FROM readings',
    "not a SELECT": "UPDATE sensors SET name = 'x'",
    "parenthesised start": "(SELECT r.temp FROM readings r)",
    "TABLE": "WITH c AS (TABLE readings) SELECT 1 FROM c",
    # relations
    "missing relation": "SELECT 1 FROM nowhere",
    "unreadable relation": "SELECT v.id FROM vault v",
    "schema without USAGE": "SELECT x FROM hidden.h",
    "unbalanced": "SELECT (r.temp FROM readings r",
    "name over 63 characters": "SELECT 1 FROM sensors " + "a" * 70,
    # found by attacking the scan (each was allowed)
    "alias after ONLY (t)": "SELECT r FROM ONLY (readings) r",
    "column aliases after ONLY (t)": "SELECT 1 FROM ONLY (readings) x(a, b, c, d) WHERE d IS NULL",
    "parenthesised join with an alias": "SELECT 1 FROM (readings CROSS JOIN sensors) j WHERE j IS NOT NULL",
    "TABLE in EXISTS": "SELECT 1 FROM sensors WHERE EXISTS (TABLE readings)",
    "TABLE as the statement": "WITH x AS (SELECT 1) TABLE readings",
    "column label distinct": "SELECT r AS distinct FROM readings r",
    "alias values": "SELECT r FROM sensors AS values, readings r",
    "bare alias values": "SELECT r FROM sensors values, readings r",
    "alias where after AS": "SELECT r FROM sensors AS where, readings r",
    "IS DISTINCT FROM in ON": "SELECT 1 FROM readings JOIN sensors ON null IS NOT DISTINCT FROM readings",
    "comment ended by CR": "SELECT temp --\r, secret FROM readings",
    "WINDOW s AS () is no CTE": "SELECT 1 FROM nowhere WINDOW nowhere AS ()",
    "CTE of another scope": "SELECT (WITH nowhere AS (SELECT 1) SELECT 1) FROM nowhere",
    "CTE of a later sibling": "WITH a AS (SELECT 1 FROM nowhere), nowhere AS (SELECT 1) SELECT 1 FROM a",
    "unreadable catalog": "SELECT 1 FROM pg_authid",
}


@pytest.mark.parametrize("sql", ANALYSE.values(), ids=ANALYSE.keys())
def test_sent_to_the_analysis(sql):
    assert scan(sql) is None


ALLOWED_WRITES = [
    "DELETE FROM notes WHERE id = 1",
    "DELETE FROM notes n WHERE n.body IS NULL RETURNING n.id",
    "UPDATE notes SET body = 'x' WHERE id = 1",
    "UPDATE notes n SET body = n.body || 'x' WHERE n.id IN (SELECT s.id::int FROM sensors s)",
    "INSERT INTO notes (id, body) VALUES (1, 'b')",
    "INSERT INTO notes AS n (id, body) VALUES (1, 'b') RETURNING n.id",
    "INSERT INTO notes (id, body) SELECT s.site_id, s.name FROM sensors s",
]


@pytest.mark.parametrize("sql", ALLOWED_WRITES)
def test_writes_allowed_without_parsing(sql):
    assert scan(sql) is not None


ANALYSE_WRITES = {
    "a column not granted for UPDATE": "UPDATE notes SET author = 'x' WHERE id = 1",
    "a column not readable in WHERE": "UPDATE notes SET body = 'x' WHERE secret = 'y'",
    "a column not readable in RETURNING": "DELETE FROM notes WHERE id = 1 RETURNING secret",
    "RETURNING *": "DELETE FROM notes WHERE id = 1 RETURNING *",
    "a whole row": "UPDATE notes n SET body = n::text WHERE id = 1",
    "a column not granted for INSERT": "INSERT INTO notes (id, secret) VALUES (1, 'x')",
    "INSERT without a column list": "INSERT INTO notes VALUES (1, 'b')",
    "a sequence default left to run": "INSERT INTO notes (body) VALUES ('b')",
    "ON CONFLICT": "INSERT INTO notes (id, body) VALUES (1, 'b') ON CONFLICT (id) DO NOTHING",
    "SET of a tuple": "UPDATE notes SET (body) = ROW('x') WHERE id = 1",
    "UPDATE ... FROM": "UPDATE notes SET body = s.name FROM sensors s WHERE s.id = 'x'",
    "DELETE ... USING": "DELETE FROM notes USING sensors s WHERE s.id = 'x'",
    "a write in a subquery": "DELETE FROM notes WHERE id IN (SELECT 1 FROM sensors FOR UPDATE)",
    "no DELETE privilege": "DELETE FROM sensors WHERE id = 'x'",
    "a CTE that writes": "WITH d AS (DELETE FROM notes RETURNING id) SELECT 1 FROM d",
    "two targets": "UPDATE notes SET body = 'x'; UPDATE notes SET body = 'y'",
}


@pytest.mark.parametrize("sql", ANALYSE_WRITES.values(), ids=ANALYSE_WRITES.keys())
def test_writes_sent_to_the_analysis(sql):
    assert scan(sql) is None


_SET_WORDS = ["body", "author", "secret", "id", "n", "notes", "'x'", "1"]
_TAIL = ["", " WHERE ", " RETURNING ", ",", "=", "(", ")", ".", "*", " AND ", "::text"]


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.sampled_from(_SET_WORDS + _TAIL), min_size=1, max_size=10),
    st.sampled_from(["UPDATE notes SET ", "UPDATE notes n SET ", "DELETE FROM notes n WHERE "]),
)
@example(parts=[".", "'x'", "n"], head="DELETE FROM notes n WHERE ")  # a dot before a constant
def test_no_write_of_an_ungranted_column_is_ever_allowed(parts, head):
    """Invariant over token soups: an allowed write names no column it may not read or set,
    and never the table or its alias as a value."""
    sql = head + " ".join(parts)
    shaped = shape(sql)
    if shaped is None or scan_read(shaped, _snapshot(), _loaded) is None:
        return
    words = re.findall(r"[a-z_]+", sql.lower())
    assert "secret" not in words and "author" not in words, sql
    toks = re.findall(r"[a-z_][a-z0-9_]*|[.()*,]", sql.lower())  # operators separate only
    watched = ("notes", "n") if " n " in head else ("notes",)
    for i, t in enumerate(toks):
        if t in watched and i > 0:
            after = toks[i + 1] if i + 1 < len(toks) else ""
            assert toks[i - 1] in (".", "notes", "from", "update") or after in (".", "("), sql


def test_caveats_name_what_the_server_still_checks():
    assert scan("SELECT s.name FROM sensors s") == ()
    assert scan("SELECT upper(s.name) FROM sensors s") == ()  # a catalog function: judged


def test_functions_to_look_at_closer_go_to_the_analysis():
    # checked when they run (sequences, settings, files): never allowed from the tokens
    for sql in [
        "SELECT nextval('s'), s.name FROM sensors s",
        "SELECT current_setting('data_directory') FROM sensors",
        "SELECT pg_read_file('x') FROM sensors",
        "SELECT s.name FROM sensors s WHERE s.id = pg_catalog.pg_ls_dir('.')",
    ]:
        assert scan(sql) is None, sql
    snap = _snapshot()
    from tsaccess.preflight.snapshot import Func

    snap.funcs["label"] = [Func("public", False, False, False)]  # not executable
    shaped = shape("SELECT label(s.name) FROM sensors s")
    assert shaped is not None and scan_read(shaped, snap, _loaded) is None


def test_a_second_from_is_no_shape_the_scan_knows():
    for sql in [
        "SELECT  FROM  sensors r  WHERE  FROM readings r",
        "SELECT r.temp FROM readings r FROM sensors",
        "SELECT 1 FROM sensors s GROUP BY s.id FROM readings",
    ]:
        assert scan(sql) is None, sql
    # FROM inside an expression or a later query is still understood
    assert scan("SELECT extract(epoch FROM r.time) FROM readings r") is not None
    assert scan("SELECT s.id FROM sensors s UNION SELECT x.id FROM sites x") is not None


_WORDS = ["r", "s", "readings", "sensors", "temp", "secret", "time", "name", "id", "x"]
_PUNCT = [",", ".", "(", ")", "*", "=", "::text", " AS ", " JOIN ", " ON ", " FROM ", " WHERE "]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_WORDS + _PUNCT), min_size=1, max_size=14))
@example([" FROM ", "sensors", "r", " WHERE "])  # two FROM lists: once allowed, r as a value
@example([" FROM ", "sensors", "r", "s", " AS "])  # AS FROM in a FROM list, then a second FROM
def test_no_ungranted_column_and_no_lone_row_is_ever_allowed(parts):
    """Invariant over token soups: an allowed text names no ungranted column of a relation it
    names, and never uses ``readings`` (or ``r`` when it is its alias) as a value."""
    sql = "SELECT " + " ".join(parts) + " FROM readings r"
    shaped = shape(sql)
    if shaped is None or scan_read(shaped, _snapshot(), _loaded) is None:
        return
    words = sql.lower().replace("(", " ").replace(")", " ").replace(",", " ").split()
    assert "secret" not in words
    assert "ctid" not in words
    toks = re.findall(r"[a-z_][a-z0-9_]*|[.()*,]", sql.lower())  # operators separate only
    for i, t in enumerate(toks):
        if t in ("r", "readings") and i + 1 < len(toks):
            before, after = toks[i - 1], toks[i + 1]
            assert before in ("from", ".", "readings") or after in (".", "("), sql


_OLD_NUMBER = re.compile(  # the plain spelling the faster pattern in text.py must equal
    r"(?<![A-Za-z0-9_$.])(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?![A-Za-z0-9_$])"
)
_OLD_PREFIXED = re.compile(r"[A-Za-z0-9_&]''")


@settings(max_examples=5000, deadline=None)
@given(st.text(alphabet="ab_$.0123456789eE+- ()'x,&", max_size=16))
def test_shape_patterns_equal_their_plain_spelling(s):
    from tsaccess.preflight import text

    assert text._NUMBER.sub("0", s) == _OLD_NUMBER.sub("0", s)
    assert bool(text._PREFIXED.search(s)) == bool(_OLD_PREFIXED.search(s))
