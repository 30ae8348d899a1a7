"""The pool's custom-setting scan against the server: what PostgreSQL created, the scan found.

Statements written every way the tokenizer must see through (comments, quoted and ``U&``
identifiers, ``E''``/``U&''``/dollar-quoted names, ``"set_config"``, DO bodies) are run on a real
session; every custom setting the server then has was reported by
:func:`tsaccess.client.reset.custom_names_in` (or the scan said it cannot know).
"""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tsaccess
from tests.unit.test_custom_settings_names import _GAP, _WORD, _ident, _literal
from tsaccess.client.reset import custom_names_in

_counter = itertools.count()


def _statement(
    prefix: str, name: str, hows: tuple[int, int, int, int], gaps: list[str], form: int
) -> str:
    how_prefix, how_name, how_literal, how_fn = hows
    if form == 0:
        return (
            f"SET{gaps[0]}{_ident(prefix, how_prefix)}{gaps[1]}.{gaps[2]}{_ident(name, how_name)}"
            f"{gaps[3]}={gaps[4]}'v'"
        )
    fn = ["set_config", '"set_config"', "pg_catalog.set_config", 'U&"\\0073et_config"'][how_fn]
    call = f"{fn}{gaps[1]}({gaps[2]}{_literal(f'{prefix}.{name}', how_literal)}, 'v', false)"
    if form == 1:
        return f"SELECT{gaps[0]}{call}"
    return f"DO $body$ BEGIN PERFORM {call}; END $body$"


@given(
    _WORD,
    _WORD,
    st.tuples(*[st.integers(0, 2)] * 2, st.integers(0, 3), st.integers(0, 3)),
    st.lists(_GAP, min_size=5, max_size=5),
    st.integers(0, 2),
)
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_setting_the_server_made_was_found(pg_server: Any, prefix, name, hows, gaps, form):
    prefix = f"{prefix}_{next(_counter)}"  # a name this session never saw
    stmt = _statement(prefix, name, hows, gaps, form)
    expected = f"{prefix}.{name}"
    with tsaccess.connect(**pg_server.params(), autocommit=True) as conn:
        try:
            conn.execute(stmt.encode())
        except psycopg.errors.SyntaxError:
            return  # not SQL the server reads: nothing to find
        made = conn.execute("SELECT current_setting(%s, true)", (expected,)).fetchone()[0]
    found, unknown = custom_names_in(stmt)
    assert made == "v", stmt  # each form does create it on the server
    assert expected in found or unknown, stmt
