"""Roles are the cluster's (issue 21, point 7): a second database's policy cannot silently
rewrite the memberships, BYPASSRLS and passwords the first database's policy relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

import tsaccess
from tests.helpers import apply_company
from tsaccess.errors import ApplyError
from tsaccess.plan.compose import apply, plan
from tsaccess.policy import load_policy

pytestmark = pytest.mark.timescaledb

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _bypass(conn, user: str) -> bool:
    return conn.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = %s", (user,)).fetchone()[
        0
    ]


def test_a_different_policy_on_a_second_database_is_refused_without_the_option(db, pg_server):
    first = apply_company(db, load_policy(EXAMPLES / "timescale.toml"))
    other = f"{db.name}_b"
    with db.admin(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
    try:
        same = first.policy.with_database(other)
        different = load_policy(EXAMPLES / "company.toml").with_database(other)
        with tsaccess.connect(**pg_server.params(dbname=other)) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.commit()
            shown = plan(conn, different, passwords=first.passwords)
            conn.rollback()
            flagged = {c.role for c in shown.cluster_changes}
            assert "david" in flagged  # BYPASSRLS, which his COPY into the slices needs
            assert any(db.name in w and "cluster-wide" in w for w in shown.warnings)
            with pytest.raises(ApplyError, match="--allow-cluster-changes") as err:
                apply(conn, different, passwords=first.passwords)
            assert db.name in str(err.value)
        with db.admin() as conn:  # nothing changed: the first database's slices still hold
            assert _bypass(conn, "david")
            assert not plan(conn, first.policy)
        with tsaccess.connect(**pg_server.params(dbname=other)) as conn:
            apply(conn, same, passwords=first.passwords)  # the same policy: nothing to refuse
            conn.commit()
        other2 = f"{db.name}_c"
        with db.admin(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other2)))
        try:
            pol = different.with_database(other2)
            with tsaccess.connect(**pg_server.params(dbname=other2)) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                conn.commit()
                apply(conn, pol, passwords=first.passwords, allow_cluster_changes=True)
            with db.admin() as conn:  # said so, and done: the first database now drifts
                assert not _bypass(conn, "david")
                assert "david: BYPASSRLS" in plan(conn, first.policy).summary()
        finally:
            with db.admin(autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(other2))
                )
    finally:
        with db.admin(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(other)))
