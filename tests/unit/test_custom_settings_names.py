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
