"""Pure analysis (no server): what a statement needs, and fuzzing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tsaccess.preflight import ColNeed, Need, TableRef, analyze
from tsaccess.preflight.text import shape


def needs(sql: str) -> set:
    a = analyze(sql)
    assert not a.deferred, a.deferred
    return {
        (
            n.privilege,
            str(n.table),
            tuple(sorted(n.columns or ())) if n.columns else None,
            n.first_n,
        )
        if isinstance(n, Need)
        else (n.privilege, n.column)
        for n in a.needs
    }


def test_select_columns_and_any():
    assert needs("SELECT a FROM s.t WHERE b > 1") == {
        ("SELECT", "s.t", None, 0),
        ("SELECT", "a"),
        ("SELECT", "b"),
    }
    assert needs("SELECT count(*) FROM t") == {("SELECT", "t", None, 0)}


def test_update_set_alone_needs_no_select():
    assert needs("UPDATE t SET a = 1") == {("UPDATE", "t", ("a",), 0)}
    assert needs("UPDATE t SET a = b") == {("UPDATE", "t", ("a",), 0), ("SELECT", "b")}


def test_insert_without_column_list_needs_first_n():
    assert ("INSERT", "t", None, 2) in needs("INSERT INTO t VALUES (1, 2)")


def test_on_conflict():
    got = needs("INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = excluded.c")
    assert {
        ("INSERT", "t", ("a", "b"), 0),
        ("SELECT", "t", ("a",), 0),
        ("UPDATE", "t", ("b",), 0),
        ("SELECT", "t", ("c",), 0),
    } <= got


def test_cte_shadows_table_and_quoted_case_is_kept():
    got = needs('WITH t AS (SELECT 1 AS x) SELECT x FROM t JOIN "T" ON true')
    assert ("SELECT", "T", None, 0) in got
    assert ("SELECT", "t", None, 0) not in got


def test_locking_clause_needs_update():
    assert ("UPDATE", "t", None, 0) in needs("SELECT a FROM t FOR UPDATE")


def test_deferrals():
    for stmt in [
        "LISTEN chan",
        "DO $$ BEGIN END $$",
        "CALL p()",
        "EXPLAIN EXECUTE p",
        "SELECT set_config('role', 'x', false); SELECT a FROM t",
        "SELECT a FROM t WHERE b IN (" + ", ".join(map(str, range(20_000))) + ")",  # > 64 KB
        "SELECT " + ", ".join(f"c{i}" for i in range(3000)) + " FROM t",  # > 16 KB, no lists
        "SET ROLE x",
        "PREPARE p AS SELECT 1",
        "LOCK t",
        "",
    ]:
        assert analyze(stmt).deferred, stmt[:80]


def test_merge_per_action():
    got = needs(
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.x"
        " WHEN NOT MATCHED THEN INSERT (id, a) VALUES (s.id, s.x)"
    )
    assert {
        ("SELECT", "s", None, 0),
        ("SELECT", "t", ("id",), 0),
        ("UPDATE", "t", ("a",), 0),
        ("INSERT", "t", ("a", "id"), 0),
        ("SELECT", "s", ("x",), 0),
    } <= got
    assert ("DELETE", "t", None, 0) in needs(
        "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE"
    )


def test_unqualified_column_levels():
    a = analyze("SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.x = a)")
    col_needs = [n for n in a.needs if isinstance(n, ColNeed) and n.column == "a"]
    assert col_needs[-1].levels == ((TableRef(None, "u"),), (TableRef(None, "t"),))


def _invariants(text: str, has_params: bool = False) -> None:
    """What every analysis must satisfy, whatever the text."""
    a = analyze(text, has_params=has_params)  # never raises: anything unexpected defers
    assert a == analyze(text, has_params=has_params)  # deterministic
    if a.deferred:
        assert a.needs == ()  # a deferral never carries needs a checker could refuse on
    else:
        assert a.statements >= 1
        for n in a.needs:
            assert n.privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
    shaped = shape(text)
    if shaped is not None:  # the verdict cache shares verdicts between texts of one shape
        b = analyze(shaped, has_params=has_params)
        if b.deferred.startswith("zero-length name"):
            return  # a string where a name belongs: a syntax error for the server
        # Texts of one shape share allowed/deferred verdicts (both send the statement to the
        # server; a denial is never shared, it is confirmed live for each text). What must
        # hold: whenever both are decided, they need exactly the same privileges; and a text
        # is never decided differently from its shape for anything but a parse failure.
        if not a.deferred and not b.deferred:
            assert b.needs == a.needs, shaped
        else:
            assert (a.needs if not a.deferred else b.needs) == () or "not parsed" in (
                a.deferred or b.deferred
            ), (shaped, a, b)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_only_defers(text):
    _invariants(text)


SQLISH = st.lists(
    st.sampled_from(
        [
            "SELECT",
            "INSERT",
            "INTO",
            "UPDATE",
            "SET",
            "DELETE",
            "FROM",
            "WHERE",
            "t",
            "u",
            "s.t",
            "a",
            "b",
            "*",
            ",",
            "(",
            ")",
            "=",
            "1",
            "'x'",
            "JOIN",
            "ON",
            "WITH",
            "AS",
            "UNION",
            ";",
            "RETURNING",
            "VALUES",
            "ON CONFLICT",
            "DO",
            "NOTHING",
            '"Q"',
            "%s",
            "$1",
            "COPY",
            "TO",
            "STDOUT",
            "FOR UPDATE",
            "EXISTS",
            "NATURAL",
            "USING",
            "TRUNCATE",
            "NATURAL JOIN",
            "LATERAL",
            "EXPLAIN",
            "'lit''s'",
            "2.5e3",
            "IN (1, 2, 3)",
            "t.*",
            "(t).a",
            'U&"\\0061"',
            "set_config('role', 'r', false)",
        ]
    ),
    max_size=25,
).map(" ".join)


@settings(max_examples=1000, deadline=None)
@given(SQLISH)
def test_fuzz_sql_like_tokens_only_defers(text):
    _invariants(text)
    _invariants(text, has_params=True)


def test_whole_row_references_name_their_source():
    for stmt in ["SELECT f FROM t f", "SELECT row_to_json(f) FROM t f", "SELECT (f).a FROM t f"]:
        col_needs = [n for n in analyze(stmt).needs if isinstance(n, ColNeed)]
        assert [(n.column, n.aliases) for n in col_needs] == [("f", (("f",),))], stmt
    assert ("SELECT", "t", ("*",), 0) in needs("SELECT count(t.*) FROM t")


def test_join_using_and_natural_are_join_needs():
    from tsaccess.preflight.model import JoinNeed

    a = analyze("SELECT 1 FROM a, b JOIN c USING (x) NATURAL JOIN d")
    joins = [n for n in a.needs if isinstance(n, JoinNeed)]
    b, c, d = TableRef(None, "b"), TableRef(None, "c"), TableRef(None, "d")
    assert joins == [
        JoinNeed("SELECT", (b,), (c,), frozenset({"x"})),  # the comma ends a's join tree
        JoinNeed("SELECT", (b, c), (d,)),
    ]


def test_lateral_sees_the_items_before_it():
    got = needs("SELECT 1 FROM t, LATERAL (SELECT u.a FROM u WHERE u.x = t.y) s")
    assert {("SELECT", "t", ("y",), 0), ("SELECT", "u", ("a",), 0)} <= got
    assert ("SELECT", "t", ("y",), 0) in needs("SELECT x FROM t, LATERAL unnest(ARRAY[t.y]) x")


def test_explain_needs_what_it_explains():
    for prefix in ["EXPLAIN ", "EXPLAIN (COSTS OFF, FORMAT JSON) ", "explain analyze verbose "]:
        assert ("UPDATE", "t", ("a",), 0) in needs(prefix + "UPDATE t SET a = 1")


def test_unicode_escaped_names_are_decoded():
    assert ("SELECT", "amount") in needs('SELECT U&"\\0061mount" FROM t')
    assert ("SELECT", "data") in needs("SELECT U&\"d!0061ta\" UESCAPE '!' FROM t")
    assert ("SELECT", "U&", None, 0) in needs('SELECT 1 FROM "U&"')


def test_set_config_defers_later_statements_only_for_role_and_search_path():
    for name in ["role", "ROLE", "search_path", "session_authorization"]:
        assert analyze(f"SELECT set_config('{name}', 'x', false); SELECT a FROM t").deferred
    assert analyze("SELECT set_config(%s, 'x', false); SELECT a FROM t", has_params=True).deferred
    assert not analyze(
        "SELECT set_config('application_name', 'x', false); SELECT a FROM t"
    ).deferred
    assert not analyze("SELECT set_config('role', 'x', false)").deferred  # nothing after it


def test_shape_shares_keys_only_between_constants():
    assert shape("SELECT a FROM t WHERE b = 'x' AND c > 1.5") == shape(
        "SELECT a FROM t WHERE b = 'it''s' AND c > 42"
    )
    assert shape("SELECT a FROM t") != shape("SELECT b FROM t")
    assert shape('SELECT "1" FROM t1') == 'SELECT "1" FROM t1'  # names are not constants
    for unsure in ["SELECT E'\\x' FROM t", "SELECT $$x$$", "SELECT /* c */ 1", "SELECT U&'x'"]:
        assert shape(unsure) is None, unsure
    long = "SELECT a FROM t WHERE b IN (" + ", ".join(map(str, range(5000))) + ")"
    assert shape(long) == "SELECT a FROM t WHERE b IN (0)"
    rows = "INSERT INTO t VALUES " + ", ".join(f"({i}, 'v{i}')" for i in range(500))
    assert shape(rows) == "INSERT INTO t VALUES (0, '')"
