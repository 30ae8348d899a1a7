"""Saved plans (``tsaccess plan --out FILE`` / ``tsaccess apply FILE``) and plans for a database
that does not exist yet.

A saved plan holds the policy text, the options, the statements (password verifiers left out)
and the digest of the catalog it was made from. Applying it plans again under apply's lock and
refuses, before anything runs, unless the database is exactly as it was (same digest) and the
new plan has exactly the saved statements: what was reviewed is what runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tsaccess._files import write_private
from tsaccess.catalog import read_catalog
from tsaccess.errors import ApplyError, PolicyError
from tsaccess.passwords import Secret
from tsaccess.plan.build import build_steps, timescaledb_decision
from tsaccess.plan.canon import digest
from tsaccess.plan.compose import ApplyResult, Plan, apply
from tsaccess.policy import Policy, parse_policy
from tsaccess.steps import AUDIT_ONLY, Step

__all__ = [
    "SavedPlan",
    "apply_saved",
    "create_database_step",
    "database_exists",
    "load_plan",
    "plan_new_database",
    "save_plan",
]

FORMAT = "tsaccess-plan"
VERSION = 1
NO_DATABASE = "database-missing"
"""The fingerprint of a plan made for a database that did not exist."""


def create_database_step(policy: Policy) -> Step:
    """``CREATE DATABASE`` as a plan step (shown, run outside the plan's transaction)."""
    return Step(
        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(policy.database)),
        f"create database {policy.database}",
        "schema",
        action="add",
        object=f"database {policy.database}",
    )


def database_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = %s)", (name,)
    ).fetchone()
    return bool(row and row[0])


def plan_new_database(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    passwords: Mapping[str, Secret] | None = None,
) -> Plan:
    """The plan for a database that does not exist yet, from a connection to another one.

    Roles live in the cluster and are read as they are; the database is planned as a new one
    (from ``template1``): its creation first, then everything in it.
    """
    if database_exists(conn, policy.database):
        raise PolicyError(
            f"database {policy.database!r} exists; plan it with a connection to it",
            path="database.name",
            source=policy.source,
        )
    cat = read_catalog(conn, policy.schema, policy.audit.data_schema)
    owner = cat.current_user
    fresh = dataclasses.replace(
        cat,
        database=policy.database,
        database_owner=owner,
        database_acl=frozenset(
            {("PUBLIC", "CONNECT"), ("PUBLIC", "TEMPORARY")}
            | {(owner, p) for p in ("CONNECT", "TEMPORARY", "CREATE")}
        ),
        schema_exists=policy.schema == "public",
        schema_owner="pg_database_owner" if policy.schema == "public" else "",
        schema_acl=frozenset({("PUBLIC", "USAGE"), ("pg_database_owner", "USAGE")})
        if policy.schema == "public"
        else frozenset(),
        tables={},
        functions={},
        triggers={},
        extensions=frozenset({"plpgsql"}),
        audit_data=None,
        role_settings={k: v for k, v in cat.role_settings.items() if not k[1]},
        default_acl=frozenset(),
    )
    ts, warnings = timescaledb_decision(policy, fresh)
    steps, more = build_steps(policy, fresh, passwords or {}, timescaledb=ts)
    return Plan(
        (create_database_step(policy), *steps),
        tuple(warnings + more),
        ts,
        cat.queries,
        fingerprint=NO_DATABASE,
        logins=frozenset(
            {u.name for u in policy.users} | {n for n, r in cat.roles.items() if r.login}
        ),
        tables=tuple(t.name for t in policy.tables),
    )


def _step_key(s: Step) -> list[str]:
    return [s.phase, s.summary, "" if s.secret else s.text(redact=False)]


@dataclass(frozen=True)
class SavedPlan:
    """A plan read back from a file."""

    policy: Policy
    policy_text: str
    options: Mapping[str, bool]
    fingerprint: str
    steps: tuple[tuple[str, str, str], ...]
    """(phase, summary, SQL; empty for a statement carrying a password verifier)."""
    created: str

    @property
    def creates_database(self) -> bool:
        return self.fingerprint == NO_DATABASE


def save_plan(
    path: str | Path,
    the_plan: Plan,
    policy: Policy,
    policy_text: str,
    *,
    audit_only: bool = False,
    drop_removed: bool = False,
    drop_removed_tables: bool = False,
) -> Path:
    """Write ``the_plan`` to ``path`` (mode 0600; no password or verifier in it)."""
    data = {
        "format": FORMAT,
        "version": VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": policy.database,
        "policy_source": policy.source,
        "policy_sha256": hashlib.sha256(policy_text.encode("utf-8")).hexdigest(),
        "policy": policy_text,
        "options": {
            "audit_only": audit_only,
            "drop_removed": drop_removed,
            "drop_removed_tables": drop_removed_tables,
        },
        "fingerprint": the_plan.fingerprint,
        "steps": [_step_key(s) for s in the_plan.steps],
    }
    p = Path(path)
    write_private(p, json.dumps(data, indent=2) + "\n", replace=True)
    return p


def load_plan(path: str | Path) -> SavedPlan:
    """Read a saved plan; raises :class:`ApplyError` when it is not one or was altered."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ApplyError(
            f"plan file {p} does not exist; make one with tsaccess plan --out"
        ) from None
    except (OSError, ValueError) as exc:
        raise ApplyError(f"{p} is not a tsaccess plan file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ApplyError(f"{p} is not a tsaccess plan file (made by tsaccess plan --out)")
    if data.get("version") != VERSION:
        raise ApplyError(
            f"{p} is a plan of format version {data.get('version')}; this tsaccess reads "
            f"version {VERSION}: make the plan again"
        )
    text = str(data.get("policy", ""))
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != data.get("policy_sha256"):
        raise ApplyError(f"the policy inside {p} was altered after saving; make the plan again")
    try:
        policy = parse_policy(tomllib.loads(text), source=str(data.get("policy_source") or p))
    except tomllib.TOMLDecodeError as exc:
        raise ApplyError(f"the policy inside {p} is not valid TOML: {exc}") from None
    return SavedPlan(
        policy,
        text,
        {k: bool(v) for k, v in dict(data.get("options", {})).items()},
        str(data.get("fingerprint", "")),
        tuple((str(a), str(b), str(c)) for a, b, c in data.get("steps", [])),
        str(data.get("created", "")),
    )


def apply_saved(
    conn: psycopg.Connection[Any],
    saved: SavedPlan,
    *,
    passwords: Mapping[str, Secret] | None = None,
    generate_passwords: bool = False,
    before_commit: Callable[[Plan], None] | None = None,
    allow_cluster_changes: bool = False,
) -> ApplyResult:
    """Apply exactly the saved plan, or nothing: refuses if the database moved since.

    ``generate_passwords`` and ``before_commit`` are passed to :func:`tsaccess.plan.compose.apply`
    (passwords for new users, written down before the commit).

    ``conn`` is connected to the plan's database (created by the caller for a plan made
    before the database existed: its ``create database`` step runs outside any transaction).
    """
    steps = [s for s in saved.steps if not s[1].startswith("create database ")]
    expected = [list(s) for s in steps]

    def check(fresh: Plan) -> None:
        if not saved.creates_database and fresh.fingerprint != saved.fingerprint:
            raise ApplyError(
                f"the database changed since the plan was saved ({saved.created}); nothing "
                "was applied. Run tsaccess plan --out again and review the new plan"
            )
        got = [_step_key(s) for s in fresh.steps]
        if got != expected:
            diff = next(
                (
                    f"{a[1]!r} instead of {b[1]!r}"
                    for a, b in zip(got, expected, strict=False)
                    if a != b
                ),
                f"{len(got)} statement(s) instead of {len(expected)}",
            )
            raise ApplyError(
                f"the plan made now differs from the saved one ({diff}); nothing was applied. "
                "Run tsaccess plan --out again and review the new plan"
            )

    return apply(
        conn,
        saved.policy,
        passwords=passwords,
        generate_passwords=generate_passwords,
        before_commit=before_commit,
        phases=AUDIT_ONLY if saved.options.get("audit_only") else None,
        drop_removed=saved.options.get("drop_removed", False),
        drop_removed_tables=saved.options.get("drop_removed_tables", False),
        check=check,
        allow_cluster_changes=allow_cluster_changes,
    )


def plan_digest(the_plan: Plan) -> str:
    """A digest of a plan's statements (verifiers left out), to compare two plans."""
    return digest([_step_key(s) for s in the_plan.steps])
