"""The security phase's roles: group roles, login users (attributes, passwords as SCRAM
verifiers), memberships, and role settings (``ALTER ROLE ... SET``; the ``search_path`` of users
of a schema other than ``public``).

Each function compares the policy with a catalog snapshot (``None``: an empty database) and
returns only the steps that make a difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from psycopg import sql

from tsaccess.catalog import CatalogSnapshot
from tsaccess.errors import PasswordSourceError
from tsaccess.passwords import Secret, generate_password, scram_matches, scram_verifier
from tsaccess.policy import Policy
from tsaccess.steps import Step

__all__ = ["MONITOR_ROLE", "role_steps", "settings_steps", "wanted_settings"]

MONITOR_ROLE = "pg_monitor"
"""The predefined role a monitoring role (``monitoring = true``) is a member of."""


def role_steps(
    policy: Policy,
    cat: CatalogSnapshot | None,
    passwords: Mapping[str, Secret],
    warnings: list[str],
    require_passwords: bool,
    *,
    generated: dict[str, Secret] | None = None,
) -> list[Step]:
    """Group roles, login users and memberships.

    With ``generated`` (a dict to fill), a user that needs a password and has none in
    ``passwords`` gets a new random one, recorded there: a new user, or an existing login
    user known to have no password (readable only by a superuser). An existing password is
    never replaced by a generated one.
    """
    steps: list[Step] = []
    for r in policy.roles:
        info = cat.roles.get(r.name) if cat else None
        if info is None:
            steps.append(
                Step(
                    sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(r.name)),
                    f"create group role {r.name}",
                    "security",
                )
            )
        elif info.login or info.superuser:
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} NOLOGIN NOSUPERUSER").format(sql.Identifier(r.name)),
                    f"make {r.name} a NOLOGIN group role",
                    "security",
                )
            )
    for u in policy.users:
        info = cat.roles.get(u.name) if cat else None
        # a password is known to be missing only where the verifiers are readable (superuser)
        no_password = info is not None and cat is not None and cat.superuser and not info.password
        pw = passwords.get(u.name)
        if pw is None and generated is not None and (info is None or no_password):
            pw = generated[u.name] = generate_password()
        ident = sql.Identifier(u.name)
        limit = sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(u.connection_limit))
        if info is None:
            if cat is not None and pw is None:
                why = (
                    f"no password for new login user {u.name!r}: set {u.password_env}, give a "
                    "0600 passwords file, or generate passwords (--generate-passwords)"
                )
                if require_passwords:
                    raise PasswordSourceError(why)
                warnings.append(why)
            stmt = sql.SQL("CREATE ROLE {} LOGIN INHERIT {} PASSWORD {}").format(
                ident, limit, sql.Literal(scram_verifier(pw) if pw else "")
            )
            psql_var = f"tsaccess_pw_{len(steps)}"
            psql = (
                f"\\getenv {psql_var} {u.password_env}\n"
                f"\\if :{{?{psql_var}}}\n\\else\n"
                f"DO $$ BEGIN RAISE EXCEPTION 'set {u.password_env} in the environment'; END $$"
                f";\n\\endif\n"
                + sql.SQL("CREATE ROLE {} LOGIN INHERIT {} PASSWORD ")
                .format(ident, limit)
                .as_string(None)
                + f":'{psql_var}'"
            )
            steps.append(
                Step(
                    stmt,
                    f"create login user {u.name} (password: {u.password_env})",
                    "security",
                    secret=True,
                    psql=psql,
                )
            )
            continue
        if (
            not info.login
            or info.superuser
            or not info.inherit
            or info.connection_limit != u.connection_limit
        ):
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} LOGIN INHERIT NOSUPERUSER {}").format(ident, limit),
                    f"reset attributes of login user {u.name}",
                    "security",
                )
            )
        if pw is None and no_password and info.login:
            warnings.append(
                f"login user {u.name!r} has no password and cannot log in: set "
                f"{u.password_env} or give a 0600 passwords file, then apply"
            )
        if pw is not None and no_password:
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        ident, sql.Literal(scram_verifier(pw))
                    ),
                    f"set password of {u.name} (it has none: it cannot log in)",
                    "security",
                    secret=True,
                )
            )
        elif pw is not None and info.password is not None and not scram_matches(pw, info.password):
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        ident, sql.Literal(scram_verifier(pw))
                    ),
                    f"set password of {u.name}",
                    "security",
                    secret=True,
                )
            )
    # memberships: exactly the policy's, for managed users and roles
    managed = {u.name for u in policy.users} | {r.name for r in policy.roles}
    want = {(r, u.name) for u in policy.users for r in u.roles}
    want |= {(parent, r.name) for r in policy.roles for parent in r.member_of}
    want |= {(MONITOR_ROLE, r.name) for r in policy.roles if r.monitoring}
    exempt = {cat.current_user} if cat else set()
    exempt |= {n for n, ri in (cat.roles.items() if cat else ()) if ri.superuser}
    have = {
        (r, m)
        for r, m in (cat.members if cat else ())
        if (m in managed or r in managed) and m not in exempt
    }
    for group, m in sorted(have - want):
        steps.append(
            Step(
                sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(m)),
                f"revoke membership of {m} in {group}",
                "security",
            )
        )
    for group, m in sorted(want - have):
        steps.append(
            Step(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(m)),
                f"grant role {group} to {m}",
                "security",
            )
        )
    return steps


def _plain_ident(name: str) -> str:
    """An identifier as PostgreSQL prints it in a setting (quoted only when needed)."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def wanted_settings(policy: Policy, user: str) -> dict[str, str]:
    """The settings tsaccess keeps for ``user`` in the policy's database."""
    u = next((x for x in policy.users if x.name == user), None)
    if u is None:
        return {}
    out = dict(u.settings)
    if policy.schema != "public" and "search_path" not in out:
        out["search_path"] = f"{_plain_ident(policy.schema)}, public"
    return out


def settings_steps(policy: Policy, cat: CatalogSnapshot | None) -> list[Step]:
    """Role settings: exactly the policy's for its users and roles, here and everywhere."""
    steps: list[Step] = []
    db = sql.Identifier(policy.database)
    kinds = [(r.name, "role") for r in policy.roles] + [(u.name, "user") for u in policy.users]
    for name, kind in kinds:
        ident = sql.Identifier(name)
        settings = cat.role_settings if cat else {}
        everywhere = settings.get((name, False), ())
        if everywhere:
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} RESET ALL").format(ident),
                    f"{kind} {name}: reset settings not in the policy ({', '.join(everywhere)})",
                    "security",
                    action="change",
                    object=f"{kind} {name}",
                )
            )
        have = dict(s.split("=", 1) for s in settings.get((name, True), ()) if "=" in s)
        want = wanted_settings(policy, name)
        for key in sorted(set(have) - set(want)):
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} IN DATABASE {} RESET {}").format(
                        ident, db, sql.SQL(key)
                    ),
                    f"{kind} {name}: reset {key} (was {have[key]})",
                    "security",
                    action="change",
                    object=f"{kind} {name}",
                )
            )
        for key in sorted(want):
            if have.get(key) == want[key]:
                continue
            if key == "search_path" and "search_path" not in dict(
                next((u.settings for u in policy.users if u.name == name), ())
            ):
                value: sql.Composable = sql.SQL(", ").join(
                    [sql.Identifier(policy.schema), sql.SQL("public")]
                )
            else:
                value = sql.Literal(want[key])
            steps.append(
                Step(
                    sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                        ident, db, sql.SQL(key), value
                    ),
                    f"{kind} {name}: set {key} = {want[key]}"
                    + (f" (was {have[key]})" if key in have else ""),
                    "security",
                    action="add" if key not in have else "change",
                    object=f"{kind} {name}",
                )
            )
    return steps
