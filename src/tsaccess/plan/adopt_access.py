"""Who may do what in an existing database, as a policy: group roles and their table and column
grants, nested roles, login users and their memberships, default privileges, user settings
(the access half of ``tsaccess generate``; :mod:`tsaccess.plan.adopt` does the tables and
assembles the policy).

What the policy format cannot say is returned as notes, never dropped silently: a privilege
granted to a login user directly, memberships in PostgreSQL's predefined roles, settings for
every database, ``NOINHERIT`` users... (a plan of the generated policy then shows what apply
would still change about them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog.adopt import AdoptionCatalog, RoleAttributes
from tsaccess.errors import PolicyError
from tsaccess.policy import TABLE_PRIVILEGES, GroupRole, Privilege, User
from tsaccess.policy.base import check_ident
from tsaccess.policy.extras import COLUMN_PRIVILEGES, SETTING_RE
from tsaccess.policy.parts import password_env_var

__all__ = ["Access", "read_access"]

_FORBIDDEN_SETTINGS = {"role", "session_authorization", "is_superuser"}


@dataclass
class Access:
    """The roles, users and grants of a policy, and the notes for what it cannot say."""

    roles: list[GroupRole] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    also_connect: list[str] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    general: list[str] = field(default_factory=list)
    """Notes about the database as a whole (the file's header)."""


def _nameable(name: str, *, role: bool) -> bool:
    try:
        check_ident(name, "", "", role=role)
    except PolicyError:
        return False
    return True


def _names_ok(name: str) -> bool:
    """A column name that survives ``"SELECT (a, b)"``: no comma, no parenthesis, no edge
    spaces."""
    return not any(ch in name for ch in ",()") and name == name.strip() and bool(name)


def read_access(
    cat: CatalogSnapshot,
    ad: AdoptionCatalog,
    tables: Mapping[str, Iterable[str]],
    objects: Iterable[str] = (),
) -> Access:
    """Roles, users and grants on ``tables`` (table -> the columns the policy lists) and
    ``objects`` (continuous aggregates: SELECT only)."""
    out = Access()
    admin = ad.current_user
    roles: Mapping[str, RoleAttributes] = ad.roles
    managed_objects = {**{t: set(c) for t, c in tables.items()}, **{o: set() for o in objects}}
    aggregates = frozenset(objects)

    def plain(name: str) -> bool:
        r = roles.get(name)
        return r is not None and not r.superuser and name != admin

    def group(name: str) -> bool:
        return plain(name) and not roles[name].login and _nameable(name, role=True)

    def login(name: str) -> bool:
        return plain(name) and roles[name].login and _nameable(name, role=True)

    # roles that hold a privilege on the policy's objects, on the database or the schema
    holders: set[str] = set()
    for obj in managed_objects:
        info = cat.tables.get(obj)
        if info is None:
            continue
        holders |= {g for g, _ in info.acl if g not in ("PUBLIC", info.owner)}
        holders |= {g for _, g, _ in info.column_acl if g not in ("PUBLIC", info.owner)}
    holders |= {g for g, _ in cat.database_acl if g not in ("PUBLIC", cat.database_owner)}
    holders |= {g for g, _ in cat.schema_acl if g not in ("PUBLIC", cat.schema_owner)}
    holders |= {g for g, _ in cat.default_acl if g != "PUBLIC"}

    members: dict[str, set[str]] = defaultdict(set)  # role -> its members
    parents: dict[str, set[str]] = defaultdict(set)  # member -> roles it is in
    for role, member, _ in ad.members:
        members[role].add(member)
        parents[member].add(role)
    admin_options = sorted((r, m) for r, m, a in ad.members if a)

    # group roles: the holders, the roles their users and roles are in, their parents
    groups = {r for r in holders if group(r)}
    todo = list(groups)
    while todo:
        r = todo.pop()
        for parent in parents[r] | {p for m in members[r] if login(m) for p in parents[m]}:
            if group(parent) and parent not in groups:
                groups.add(parent)
                todo.append(parent)
    users = sorted({m for g in groups for m in members[g] if login(m)})

    for r in sorted(holders - groups):
        ri = roles.get(r)
        if ri is None:
            continue
        why = (
            "a superuser"
            if ri.superuser
            else "the administrator running generate"
            if r == admin
            else "a login user"
            if ri.login
            else "a role name the policy format refuses"
        )
        out.general.append(
            f"{r} ({why}) holds privileges here: the policy gives privileges to group roles "
            "only, so apply revokes them (listed below); to keep them, create a group role "
            f"with those grants and add it to [users.{r}] roles"
        )

    env: dict[str, str] = {}
    for u in list(users):
        other = env.setdefault(password_env_var(u), u)
        if other != u:
            users.remove(u)
            out.general.append(
                f"login user {u} is left out: its password variable {password_env_var(u)} is "
                f"also {other}'s (the policy cannot name both)"
            )

    for name in sorted(groups):
        out.roles.append(
            _group_role(name, cat, ad, managed_objects, aggregates, groups, parents, out)
        )
    for name in users:
        out.users.append(_user(name, cat, ad, groups, parents, out))

    # CONNECT granted to roles outside the policy: kept (also_connect)
    out.also_connect = sorted(
        g
        for g, p in cat.database_acl
        if p == "CONNECT"
        and g not in ("PUBLIC", cat.database_owner)
        and g not in groups
        and g not in users
        and _nameable(g, role=True)
    )
    for role, member in admin_options:
        if role in groups and (member in groups or member in users):
            out.notes[f"roles.{role}"].append(
                f"{member} holds this role WITH ADMIN OPTION: kept (the policy does not say it)"
            )
    return out


def _grants_of(
    name: str,
    cat: CatalogSnapshot,
    objects: Mapping[str, set[str]],
    aggregates: frozenset[str],
    out: Access,
) -> tuple[list[tuple[str, frozenset[Privilege]]], list[tuple[str, str, tuple[str, ...]]]]:
    grants: list[tuple[str, frozenset[Privilege]]] = []
    column_grants: list[tuple[str, str, tuple[str, ...]]] = []
    for obj in sorted(objects):
        info = cat.tables.get(obj)
        if info is None:
            continue
        privs = {p for g, p in info.acl if g == name}
        allowed = ("SELECT",) if obj in aggregates else TABLE_PRIVILEGES
        table_privs = frozenset(p for p in privs if p in allowed)
        other = sorted(privs - set(allowed))
        if other:
            out.notes[f"roles.{name}"].append(
                f"{', '.join(other)} on {obj}: not a privilege the policy grants (apply revokes it)"
            )
        by_priv: dict[str, list[str]] = defaultdict(list)
        for col, g, p in info.column_acl:
            if g != name:
                continue
            if p not in COLUMN_PRIVILEGES:
                out.notes[f"roles.{name}"].append(
                    f"{p} ({col}) on {obj}: not a column privilege the policy grants "
                    "(apply revokes it)"
                )
            elif p in table_privs:
                continue  # the table grant covers it (apply drops the column one)
            elif col not in objects[obj] or not _names_ok(col):
                out.notes[f"roles.{name}"].append(
                    f"{p} ({col}) on {obj}: the column is not in the policy (apply revokes it)"
                )
            else:
                by_priv[p].append(col)
        if table_privs:
            grants.append((obj, table_privs))
        for p, cols in sorted(by_priv.items()):
            column_grants.append((obj, p, tuple(sorted(set(cols)))))
    return grants, column_grants


def _group_role(
    name: str,
    cat: CatalogSnapshot,
    ad: AdoptionCatalog,
    objects: Mapping[str, set[str]],
    aggregates: frozenset[str],
    groups: set[str],
    parents: Mapping[str, set[str]],
    out: Access,
) -> GroupRole:
    grants, column_grants = _grants_of(name, cat, objects, aggregates, out)
    member_of = sorted(p for p in parents[name] if p in groups)
    for p in sorted(parents[name] - groups):
        out.notes[f"roles.{name}"].append(
            f"member of {p}, which the policy cannot name (a predefined, login or superuser "
            "role): apply revokes that membership"
        )
    defaults = frozenset(p for g, p in cat.default_acl if g == name and p in TABLE_PRIVILEGES)
    for key in cat.role_settings.get((name, True), ()) + cat.role_settings.get((name, False), ()):
        out.notes[f"roles.{name}"].append(
            f"setting {key}: the policy keeps no settings for group roles (apply resets it)"
        )
    info = ad.roles[name]
    if info.comment:
        out.notes[f"roles.{name}"].append(
            f"comment {info.comment!r}: apply replaces it with tsaccess's managed marker"
        )
    return GroupRole(
        name,
        tuple(grants),
        "",
        member_of=tuple(member_of),
        column_grants=tuple(sorted(column_grants)),
        default_grants=defaults,
    )


def _user(
    name: str,
    cat: CatalogSnapshot,
    ad: AdoptionCatalog,
    groups: set[str],
    parents: Mapping[str, set[str]],
    out: Access,
) -> User:
    key = f"users.{name}"
    info = ad.roles[name]
    for p in sorted(parents[name] - groups):
        out.notes[key].append(
            f"member of {p}, which the policy cannot name (a predefined, login or superuser "
            "role, or one that holds nothing here): apply revokes that membership"
        )
    if not info.inherit:
        out.notes[key].append("NOINHERIT: apply makes it INHERIT (it then uses its roles' rights)")
    if info.bypassrls:
        out.notes[key].append("BYPASSRLS: apply takes it away (NOBYPASSRLS)")
    if info.valid_until:
        out.notes[key].append(f"password valid until {info.valid_until}: kept")
    if info.comment:
        out.notes[key].append(
            f"comment {info.comment!r}: apply replaces it with tsaccess's managed marker"
        )
    settings: list[tuple[str, str]] = []
    for entry in cat.role_settings.get((name, True), ()):
        k, _, v = entry.partition("=")
        if SETTING_RE.fullmatch(k) and k not in _FORBIDDEN_SETTINGS:
            settings.append((k, v))
        else:
            out.notes[key].append(f"setting {entry}: the policy cannot say it (apply resets it)")
    for entry in cat.role_settings.get((name, False), ()):
        out.notes[key].append(
            f"setting {entry} for every database: the policy keeps settings for this database "
            "only (apply resets it)"
        )
    return User(
        name,
        tuple(sorted(p for p in parents[name] if p in groups)),
        info.connection_limit,
        settings=tuple(sorted(settings)),
    )
