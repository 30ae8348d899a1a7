"""Pure analysis (no server): what a statement needs, and fuzzing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tsaccess.preflight import ColNeed, Need, TableRef, analyze


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
        "EXPLAIN SELECT 1",
        "DO $$ BEGIN END $$",
        "CALL p()",
        "SELECT * FROM t NATURAL JOIN u",
        "SET ROLE x",
        "PREPARE p AS SELECT 1",
        "LOCK t",
        "",
    ]:
        assert analyze(stmt).deferred, stmt


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


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_only_defers(text):
    a = analyze(text)  # must not raise
    assert a.deferred or a.needs or not text.strip() or a.statements >= 0


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
        ]
    ),
    max_size=25,
).map(" ".join)


@settings(max_examples=1000, deadline=None)
@given(SQLISH)
def test_fuzz_sql_like_tokens_only_defers(text):
    analyze(text)
    analyze(text, has_params=True)
