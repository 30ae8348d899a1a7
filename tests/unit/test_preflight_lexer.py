"""Statements split where the server splits them; tokens as it reads them; placeholders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsaccess.preflight.lexer import calls, parse_name, split, tokens
from tsaccess.preflight.text import explain_prefix, server_placeholders, shape


def pieces(text: str) -> list[str] | None:
    found = split(text)
    return None if found is None else [p for p, _ in found]


def test_split_at_top_level_semicolons_only():
    assert pieces("SELECT 'a;b'; SELECT 2") == ["SELECT 'a;b'", "SELECT 2"]
    assert pieces('SELECT "x;y" FROM t;;') == ['SELECT "x;y" FROM t']
    assert pieces("SELECT $$;$$; SELECT $f$ ; $f$") == ["SELECT $$;$$", "SELECT $f$ ; $f$"]
    assert pieces("SELECT 1 -- ; no\n; SELECT 2") == ["SELECT 1", "SELECT 2"]
    assert pieces("SELECT /* ; /* nested ; */ ; */ 1") == ["SELECT /* ; /* nested ; */ ; */ 1"]
    assert pieces("SELECT E'\\';'; SELECT 2") == ["SELECT E'\\';'", "SELECT 2"]
    assert pieces("  ;  ") == []


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 'open",
        "SELECT /* open",
        "SELECT $$ open",
        'SELECT "open',
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
    ],
)
def test_what_cannot_be_split_for_certain_is_not(text):
    assert split(text) is None


def test_tokens_are_relative_to_their_statement():
    (_, first), (text, second) = split("SELECT 1; /* c */ LOCK t") or []
    assert text == "LOCK t"
    assert [(t.value, t.start) for t in second] == [("lock", 0), ("t", 5)]
    assert first[0].start == 0


def test_names_and_strings():
    toks = tokens('SELECT "Mixed", U&"d\\0061t", x FROM "a""b"') or []
    assert [(t.kind, t.value) for t in toks if t.kind == "name"] == [
        ("name", "Mixed"),
        ("name", "dat"),
        ("name", 'a"b'),
    ]
    assert parse_name('"S".t') == ("S", "t")
    assert parse_name("App.T") == ("app", "t")
    assert parse_name("a.b.c") is None


def test_calls_are_names_before_parentheses_but_not_tables_and_columns():
    toks = tokens("INSERT INTO t (a) SELECT f(x), s.g(y), count(*) FROM h(1) AS z(c)") or []
    assert calls(toks) == [(None, "f"), ("s", "g"), (None, "count"), (None, "h")]


def test_leading_comments_before_explain():
    text = "-- why\n/* a /* b */ */ EXPLAIN (ANALYZE, COSTS off) SELECT 1"
    found = explain_prefix(text)
    assert found is not None and text[found[0] :] == "SELECT 1" and found[1]


def test_placeholders_become_the_servers():
    assert server_placeholders("SELECT %s, %(a)s, %(a)s, '%s', 100%%", client=True) == (
        "SELECT $1, $2, $2, '%s', 100%",
        2,
    )
    assert server_placeholders("SELECT $1, $3, '$9'", client=False) == ("SELECT $1, $3, '$9'", 3)


def test_constants_that_name_what_is_needed_keep_their_text():
    for text in [
        "SELECT nextval('s')",
        "SELECT 'x'::regclass",
        "SELECT current_setting('data_directory')",
        "SET ROLE 'x'",
        "SELECT 1; SELECT 2",
        "COPY t TO '/tmp/f'",
    ]:
        assert shape(text) is None, text
    assert shape("SELECT region FROM t") == "SELECT region FROM t"  # a word like reg...


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab;'\"$-/*\n E\\(),.", max_size=30))
def test_split_never_raises_and_keeps_every_token(text):
    found = split(text)
    if found is None:
        return
    whole = tokens(text) or []
    assert sum(len(t) for _, t in found) == len([t for t in whole if t.kind != "semi"])
