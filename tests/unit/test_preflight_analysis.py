"""Pure analysis (no server): what a statement needs, and fuzzing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tsaccess.preflight import ColNeed, Need, TableRef, analyze
from tsaccess.preflight.model import JoinNeed, ObjNeed
from tsaccess.preflight.text import shape


def needs(sql: str) -> set:
    """The table and column needs (functions called are left out: every call has one)."""
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
        if isinstance(n, Need | ColNeed)
    }


def objects(sql: str) -> set:
    """The needs on other objects: (kind, privilege, schema, name, when, certain)."""
    return {
        (n.kind, n.privilege, n.schema, n.name, n.when, n.certain)
        for n in analyze(sql).needs
        if isinstance(n, ObjNeed) and n.kind != "function"
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
        "DO $$ BEGIN END $$",
        "GRANT SELECT ON SCHEMA s TO u",
        "SELECT a FROM t WHERE b IN (" + ", ".join(map(str, range(20_000))) + ")",  # > 64 KB
        "SELECT " + ", ".join(f"c{i}" for i in range(3000)) + " FROM t",  # > 16 KB, no lists
        "SELECT nextval(x) FROM t",  # which sequence: computed
        "SELECT 'unterminated",
        "",
    ]:
        assert analyze(stmt).deferred, stmt[:80]


def test_commands_are_read_to_their_first_check():
    assert objects("SET ROLE x") == {("role", "MEMBER", None, "x", "command", True)}
    assert objects("SET ROLE NONE") == set()
    assert objects("LOCK t") == {("lock", "UPDATE|DELETE|TRUNCATE", None, "t", "command", True)}
    assert objects("LOCK TABLE s.t IN ACCESS SHARE MODE") == {
        ("lock", "SELECT", "s", "t", "command", True)
    }
    assert objects("LOCK t IN ROW EXCLUSIVE MODE NOWAIT") == {
        ("lock", "INSERT|UPDATE|DELETE|TRUNCATE", None, "t", "command", True)
    }
    assert objects("SHOW data_directory") == {
        ("setting", "READ", None, "data_directory", "command", True)
    }
    assert objects("COPY t TO '/tmp/f'") == {
        ("predefined", "USAGE", None, "pg_write_server_files", "command", True)
    }
    assert objects("COPY t FROM PROGRAM 'cat'") == {
        ("predefined", "USAGE", None, "pg_execute_server_program", "command", True)
    }
    assert objects("CREATE TABLE s.n (a int)") == {("schema", "CREATE", None, "s", "command", True)}
    assert objects("CREATE TEMP TABLE n AS SELECT 1") == {
        ("database", "TEMP", None, "", "command", True)
    }
    assert objects("SELECT a INTO TEMP n FROM t") == {
        ("database", "TEMP", None, "", "command", True)
    }
    for stmt in ["DROP TABLE s.t", "ALTER TABLE s.t ADD b int", "COMMENT ON TABLE s.t IS 'x'"]:
        (need,) = objects(stmt)
        assert need[:4] == ("owner", need[1], "s", "t"), stmt
    assert objects("COMMENT ON COLUMN s.t.c IS 'x'") == {
        ("owner", "rpvmfc", "s", "t", "command", True)
    }
    # PREPARE parses only: a schema named needs USAGE, the tables nothing yet
    assert objects("PREPARE p AS SELECT a FROM s.t") == {
        ("schema", "USAGE", None, "s", "command", True)
    }
    assert needs("PREPARE p AS SELECT a FROM s.t") == set()
    # DECLARE plans and starts its query
    assert ("SELECT", "a") in needs("DECLARE c CURSOR FOR SELECT a FROM t")


def test_calls_checked_when_they_run_are_certain_only_where_always_evaluated():
    assert ("sequence", "USAGE", None, "s", "run", True) in objects("SELECT nextval('s')")
    assert ("sequence", "USAGE", None, "s", "run", False) in objects("SELECT nextval('s') FROM t")
    assert ("sequence", "UPDATE", "app", "s", "run", True) in objects(
        "INSERT INTO t (a) VALUES (setval('app.s', 1))"
    )
    # a schema named in a constant cast to regclass is looked up when parsed
    assert ("schema", "USAGE", None, "app", "plan", True) in objects("SELECT nextval('app.s')")
    assert ("schema", "USAGE", None, "h", "plan", True) in objects("SELECT 'h.t'::regclass")
    assert ("setting", "READ", None, "data_directory", "run", True) in objects(
        "SELECT current_setting('data_directory')"
    )
    assert ("setting", "READ", None, "data_directory", "run", False) in objects(
        "SELECT CASE WHEN a THEN current_setting('data_directory') END FROM t"
    )


def test_folded_branches_check_no_table_but_their_outer_references():
    got = needs("SELECT 1 FROM t WHERE false AND EXISTS (SELECT u.a FROM u WHERE u.b = t.c)")
    assert ("SELECT", "t", ("c",), 0) in got  # an outer reference: checked
    # a conjunct EXISTS may become a join: kept (EXPLAIN decides)
    assert ("SELECT", "u", None, 0) in got
    for folded in [
        "SELECT CASE WHEN false THEN (SELECT a FROM u) END",
        "SELECT CASE WHEN true THEN 1 ELSE (SELECT a FROM u) END",
        "SELECT 1 WHERE true OR EXISTS (SELECT a FROM u)",
        "SELECT coalesce(1, (SELECT a FROM u))",
        "SELECT false AND EXISTS (SELECT a FROM u)",
        "SELECT 1 FROM t WHERE false AND (true OR EXISTS (SELECT a FROM u))",
    ]:
        assert not any(n[1] == "u" for n in needs(folded)), folded
    # a schema named in a folded branch is still looked up
    assert ("schema", "USAGE", None, "h", "plan", True) in objects(
        "SELECT CASE WHEN false THEN (SELECT 1 FROM h.t) END"
    )


def test_recursive_ctes_see_each_other():
    got = needs("WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a")
    assert not any(n[1] == "b" for n in got)
    got = needs("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a")
    assert ("SELECT", "b", ("*",), 0) in got  # without RECURSIVE, b is the table


def test_forms_once_deferred():
    assert {("SELECT", "b"), ("SELECT", "c")} <= needs(
        "SELECT a FROM t WINDOW w AS (PARTITION BY b ORDER BY c)"
    )
    assert ("UPDATE", "t", ("a", "b"), 0) in needs("UPDATE t SET (a, b) = ROW(1, 2)")
    assert ("UPDATE", "t", ("a",), 0) in needs("UPDATE t SET (a) = (SELECT 1)")
    assert ("SELECT", "t", ("c",), 0) in needs("SELECT public.t.c FROM t")
    assert ("SELECT", "a") in needs("SELECT a FROM t AS x(a, b)")
    assert ("INSERT", "t", ("id",), 0) in needs(
        "INSERT INTO t (id) OVERRIDING SYSTEM VALUE VALUES (1)"
    )
    assert ("SELECT", "a") in needs("SELECT a FROM t ORDER BY a USING >")
    assert ("SELECT", "t", None, 0) in needs("-- c\n/* d */ EXPLAIN SELECT a FROM t")
    got = needs("SELECT 1 FROM (SELECT a FROM t) s FOR UPDATE")
    assert ("UPDATE", "t", None, 0) in got  # the lock reaches into the subquery


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
    if not a.deferred:
        assert a.statements >= 1
    for n in a.needs:
        if isinstance(n, ObjNeed):
            assert n.when in ("plan", "run", "command")
        else:
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
    got = needs("SELECT x FROM t, LATERAL unnest(ARRAY[t.y]) x")
    assert ("SELECT", "t", ("y",), 0) in got


def test_explain_needs_what_it_explains():
    for prefix in ["EXPLAIN ", "EXPLAIN (COSTS OFF, FORMAT JSON) ", "explain analyze verbose "]:
        assert ("UPDATE", "t", ("a",), 0) in needs(prefix + "UPDATE t SET a = 1")


def test_unicode_escaped_names_are_decoded():
    assert ("SELECT", "amount") in needs('SELECT U&"\\0061mount" FROM t')
    assert ("SELECT", "data") in needs("SELECT U&\"d!0061ta\" UESCAPE '!' FROM t")
    assert ("SELECT", "U&", None, 0) in needs('SELECT 1 FROM "U&"')


def test_role_and_search_path_changes_are_followed():
    a = analyze("SELECT set_config('role', 'x', false); SELECT a FROM t")
    assert a.parts[0].effect.role == "x" and a.parts[0].effect.replayable
    a = analyze('SET search_path = app, "B"; SET ROLE y; RESET ROLE; SELECT a FROM t')
    assert a.parts[0].effect.search_path == 'app, "B"'
    assert a.parts[1].effect.role == "y" and a.parts[2].effect.role == ""
    a = analyze("SELECT set_config(%s, 'x', false); SELECT a FROM t", has_params=True)
    assert a.parts[0].effect.opaque  # which setting: unknown, the next are not decided
    a = analyze("SELECT set_config('application_name', 'x', false); SELECT a FROM t")
    assert a.parts[0].effect.role is None and not a.parts[0].effect.opaque


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
