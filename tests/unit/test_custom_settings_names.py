"""Which custom settings a statement may create (the pool discards a connection that has one)."""

from __future__ import annotations

import pytest

from tsaccess.client.reset import custom_names_in


@pytest.mark.parametrize(
    ("text", "names", "unknown"),
    [
        ("SELECT 1", set(), False),
        ("SET search_path = public", set(), False),  # not a custom setting
        ("SET myapp.x = 'y'", {"myapp.x"}, False),
        ("set local MyApp.Tenant to 3", {"myapp.tenant"}, False),
        ('SET SESSION "MyApp".x TO 1', {"MyApp.x"}, False),
        (
            "SELECT set_config('a.b', 'v', false), set_config('application_name', 'x', false)",
            {"a.b"},
            False,
        ),
        ("SELECT set_config( 'it''s.x' , 'v', true)", {"it's.x"}, False),
        ("SELECT set_config(%s, 'v', false)", set(), True),
        ("SELECT set_config('tsaccess.actor', 'bob', false)", set(), False),  # tsaccess's own
        ("UPDATE t SET a.b = 1", {"a.b"}, False),  # conservative: a false positive only discards
    ],
)
def test_custom_names_in(text, names, unknown):
    assert custom_names_in(text) == (frozenset(names), unknown)


# --- the tokenizer: found however the statement is written, never inside a comment ---------

import re  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tsaccess.client.sqltokens import _slow, significant, tokenize  # noqa: E402


@pytest.mark.parametrize(
    ("text", "names", "unknown"),
    [
        ("""SELECT "set_config"('myapp.x','v',false)""", {"myapp.x"}, False),
        ("SET /*c*/ myapp.x = 'v'", {"myapp.x"}, False),
        ("SET /* a /* nested */ comment */ myapp.x = 'v'", {"myapp.x"}, False),
        ("SET -- c\n myapp . x = 1", {"myapp.x"}, False),
        ('SET U&"my\\0061pp".x = 1', {"myapp.x"}, False),
        ("SET U&\"my!0061pp\" UESCAPE '!'.x = 1", {"myapp.x"}, False),
        ('SET "a.b" = 1', {"a.b"}, False),
        ("""SELECT U&"\\0073et_config"('a.b', 'v', false)""", {"a.b"}, False),
        ("SELECT set_config(E'e\\x2eb', 'v', false)", {"e.b"}, False),
        ("SELECT set_config(U&'u\\002eb', 'v', false)", {"u.b"}, False),
        ("SELECT set_config($t$d.q$t$, 'v', false)", {"d.q"}, False),
        ("SELECT pg_catalog.set_config('q.r' , 'v', false)", {"q.r"}, False),
        ("DO $$ BEGIN PERFORM set_config('d.o', 'v', false); END $$", {"d.o"}, False),
        ("DO 'BEGIN EXECUTE ''SET in.str = 1''; END'", {"in.str"}, False),
        ("DO $x$ BEGIN EXECUTE 'SET ' || name || ' = 1'; END $x$", set(), True),
        ("SELECT set_config('a' \n '.b', 'v', false)", set(), True),  # concatenated literal
        (
            "SELECT set_config(setting_name => 'a.b', new_value => 'v', is_local => false)",
            set(),
            True,
        ),
        ("SELECT 1 -- set_config('no.no','v',false)", set(), False),
        ("SELECT 1 /* SET no.no = 1 */", set(), False),
        ("select 1--x\r set a.b=1", {"a.b"}, False),  # a line comment ends at CR too
        ("UPDATE t SET temperature = %s WHERE sensor_id = %s", set(), False),
    ],
)
def test_custom_names_in_reads_tokens(text, names, unknown):
    assert custom_names_in(text) == (frozenset(names), unknown)


@given(st.text())
@settings(max_examples=300)
def test_the_tokens_are_the_text(text):
    assert "".join(t.text for t in tokenize(text)) == text
    assert significant(text) == _slow(text)


_WORD = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
_GAP = st.sampled_from([" ", "  ", "\n", "\t", " /* c */ ", "/*x/*y*/z*/", " -- c\n", "--\r"])


def _ident(word: str, how: int) -> str:
    if how == 0:
        return word.upper() if len(word) % 2 else word
    if how == 1:
        return f'"{word}"'
    return 'U&"' + "".join(f"\\{ord(c):04x}" for c in word) + '"'


def _literal(value: str, how: int) -> str:
    if how == 0:
        return "'" + value.replace("'", "''") + "'"
    if how == 1:
        return "E'" + "".join(f"\\x{ord(c):02x}" for c in value) + "'"
    if how == 2:
        return "U&'" + "".join(f"\\{ord(c):04x}" for c in value) + "'"
    return "$q$" + value + "$q$"


@given(
    _WORD,
    _WORD,
    st.integers(0, 2),
    st.integers(0, 2),
    st.integers(0, 3),
    st.integers(0, 3),
    st.lists(_GAP, min_size=8, max_size=8),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_a_setting_is_found_however_it_is_written(
    prefix, name, how_prefix, how_name, how_literal, how_fn, gaps, use_set, in_comment
):
    expected_name = f"{prefix}.{name}"
    if use_set:
        mode = ["", "SESSION ", "LOCAL ", "local "][how_literal]
        stmt = (
            f"SET{gaps[0]}{mode}{_ident(prefix, how_prefix)}{gaps[1]}.{gaps[2]}"
            f"{_ident(name, how_name)}{gaps[3]}={gaps[4]}'v'"
        )
    else:
        fn = ["set_config", '"set_config"', "pg_catalog.set_config", 'U&"\\0073et_config"'][how_fn]
        stmt = (
            f"SELECT{gaps[0]}{fn}{gaps[1]}({gaps[2]}{_literal(expected_name, how_literal)}"
            f"{gaps[3]},{gaps[4]}'v', false)"
        )
    if in_comment:
        text = f"SELECT 1 /* {stmt} */" if "*/" not in stmt else f"SELECT 1 -- {stmt}"
        if re.search(r"[\n\r]", stmt) and text.startswith("SELECT 1 --"):
            return  # a line comment ends at the line break: not a comment any more
        assert custom_names_in(text) == (frozenset(), False)
    else:
        assert custom_names_in(stmt) == (frozenset({expected_name}), False), stmt
