"""``tsaccess generate``: the policy of an existing database, as it is.

:func:`generate` reads the live catalog of a database built without tsaccess (by hand, by
migrations, by another tool) and writes the policy that describes it: tables (columns, types,
defaults, NOT NULL), hypertables (time column, chunk interval), compression, continuous
aggregates, group roles and their table and column grants, nested roles, login users and their
memberships, default privileges, row slices (from row-level security tsaccess made), and the
state of PUBLIC and of the audit trail as they are. Adopting changes nothing until the policy is
edited: the generated policy keeps PUBLIC's privileges (``public = "keep"``), chunk privileges
as TimescaleDB copies them (``chunk_privileges = "copied"``), no tsaccess audit
(``default_mode = "off"``; triggers of the database's own are left alone), and TimescaleDB's own
retention jobs. What the policy format cannot say (a type outside its list, a default it cannot
write, a privilege granted to a login user directly, row-level security of the database's own,
...) is written as comments, never dropped silently.

Then :func:`generate` plans the policy against the same database: what apply would still
change about anyone's access is listed at the top of the file (and in
:attr:`Generated.changes`); steps that change no one's access (the managed markers, CONNECT
and USAGE for group roles where PUBLIC has them) are listed apart. Passwords are never read or
written: apply keeps every existing login user's password.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import psycopg

from tsaccess.catalog import CatalogSnapshot, TableInfo, read_catalog
from tsaccess.catalog.adopt import AdoptionCatalog, read_adoption
from tsaccess.catalog.timescale import TimescaleCatalog, read_timescale
from tsaccess.plan.adopt_access import read_access
from tsaccess.plan.adopt_timescale import aggregate_of, compression_of, interval_of, slices_of
from tsaccess.plan.compose import Plan, plan
from tsaccess.plan.phases.tables import _canonical_type
from tsaccess.policy import AuditSettings, Column, Policy, Table
from tsaccess.policy.base import DEFAULT_FUNCS, canonical_type, check_ident
from tsaccess.policy.writing import dump_policy
from tsaccess.steps import Step

__all__ = ["Generated", "generate"]

_FRIENDLY = {
    "timestamp with time zone": "timestamptz",
    "character varying": "varchar",
    "character": "char",
    "time with time zone": "timetz",
    "time without time zone": "time",
    "timestamp without time zone": "timestamp",
}


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` found and wrote."""

    policy: Policy
    text: str
    """The policy as TOML, with comments."""
    changes: tuple[str, ...]
    """What applying the policy as it is would still change about anyone's access (one line
    per plan step): empty when adopting changes nothing."""
    neutral: tuple[str, ...]
    """Plan steps that change no one's access (markers; CONNECT/USAGE PUBLIC already gives)."""
    notes: tuple[str, ...]
    """What the policy cannot say (also comments in :attr:`text`)."""


def _policy_type(live: str) -> str | None:
    """The policy's spelling of a live column type, or None when the policy cannot say it."""
    if canonical_type(live) is None:
        return None
    base, sep, rest = live.partition("(")
    arr = base.endswith("[]")
    base = base.removesuffix("[]")
    pretty = _FRIENDLY.get(base, base) + (sep + rest if sep else "") + ("[]" if arr else "")
    ok = canonical_type(pretty) is not None and _canonical_type(pretty) == _canonical_type(live)
    return pretty if ok else live


_QUOTED = re.compile(r"'((?:[^']|'')*)'(?:::[a-z][a-z0-9 _\[\]()]*)?")


def _default(live: str | None) -> tuple[bool, str | int | float | bool | None, str | None]:
    """(expressible, default, default_function) of a live column default."""
    if live is None:
        return True, None, None
    text = live.strip()
    if text.lower() in DEFAULT_FUNCS:
        return True, None, DEFAULT_FUNCS[text.lower()]
    if text in ("true", "false"):
        return True, text == "true", None
    if re.fullmatch(r"-?\d+", text):
        return True, int(text), None
    if re.fullmatch(r"-?\d+\.\d*", text) and re.fullmatch(r"-?\d+\.\d*", repr(float(text))):
        return True, float(text), None
    m = _QUOTED.fullmatch(text)
    if m:
        value = m.group(1).replace("''", "'")
        if " ".join(value.split()) == value and "\x00" not in value:
            return True, value, None  # the policy's loader collapses whitespace
    return False, None, None


def _columns(t: TableInfo, notes: list[str]) -> list[Column]:
    out: list[Column] = []
    for c in t.columns:
        typ = _policy_type(c.type)
        ok, default, function = _default(c.default)
        reason = (
            f"type {c.type}"
            if typ is None
            else f"default {c.default}"
            if not ok
            else "its name"
            if not _ident_ok(c.name) or any(ch in c.name for ch in ",()")
            else None
        )
        if reason is not None:
            notes.append(
                f"column {c.name} ({c.type}{' not null' if c.not_null else ''}"
                f"{' default ' + c.default if c.default else ''}) is left out: the policy "
                f"cannot say {reason}; apply leaves the column as it is"
            )
            continue
        assert typ is not None
        out.append(Column(c.name, typ, not c.not_null, default, function))
    return out


def _ident_ok(name: str) -> bool:
    try:
        check_ident(name, "", "")
    except Exception:
        return False
    return True


def _tables(
    cat: CatalogSnapshot, tsc: TimescaleCatalog, ad: AdoptionCatalog, notes: dict[str, list[str]]
) -> list[Table]:
    out: list[Table] = []
    for name, info in sorted(cat.tables.items()):
        key = f"tables.{name}"
        if info.kind not in ("r", "p") or name in ad.aggregates:
            continue
        if name in ad.partitions:
            notes["footer"].append(f"table {name} is a partition: left out (and left alone)")
            continue
        if not _ident_ok(name):
            notes["footer"].append(f"table {name!r}: a name the policy refuses; left alone")
            continue
        cols = _columns(info, notes[key])
        if not cols:
            notes["footer"].append(f"table {name}: no column the policy can say; left alone")
            continue
        hyper, time_column, interval = False, None, None
        if info.hypertable:
            dims = ad.dimensions_of(name)
            time_dims = [d for d in dims if d.kind.lower() == "time"]
            if time_dims and any(c.name == time_dims[0].column for c in cols):
                hyper, time_column = True, time_dims[0].column
                d = time_dims[0]
                interval = interval_of(d.time_interval) if d.time_interval else None
                if interval is None:
                    notes[key].append(
                        f"chunk interval {d.time_interval or d.integer_interval}: kept (the "
                        "policy says it only for tables it creates)"
                    )
                for extra in dims[1:]:
                    notes[key].append(
                        f"{extra.kind.lower()} dimension on {extra.column}: kept as it is"
                    )
        comp = compression_of(name, tsc, {c.name for c in cols}, notes[key]) if hyper else None
        for job in tsc.jobs_for(name, "policy_retention"):
            drop = job.config.get("drop_after")
            notes[key].append(
                f"TimescaleDB's own retention job {job.job_id} drops chunks older than {drop}: "
                "kept as it is. tsaccess's audited retention replaces it once the audit trail "
                f'is on: [{key}.retention] drop_after = "<interval>"'
            )
        for (table, trig), t in sorted(cat.triggers.items()):
            if table == name and not trig.startswith("tsaccess_"):
                notes[key].append(f"trigger {trig} of the database's own: kept ({t.definition})")
        if info.comment:
            notes[key].append(
                f"comment {info.comment!r}: apply replaces it with tsaccess's managed marker"
            )
        out.append(
            Table(
                name,
                tuple(cols),
                time_column=time_column,
                hypertable=hyper,
                chunk_interval=interval,
                audit="off",
                compression=comp,
                # statistics = false: every column's statistics target is 0 (as tsaccess sets it)
                statistics=not info.columns or any(c.statistics != 0 for c in info.columns),
            )
        )
    return out


def _free_name(taken: set[str], base: str) -> str:
    name, n = base, 1
    while name in taken or f"{name}_rows" in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _free_owner(names: set[str]) -> str:
    """The audit owner's name: ``tsaccess_audit`` unless a role of the policy has it."""
    owner, n = "tsaccess_audit", 1
    while owner in names:
        n += 1
        owner = f"tsaccess_audit_{n}"
    return owner


def _public_holds(cat: CatalogSnapshot, tsc: TimescaleCatalog, tables: list[Table]) -> bool:
    if any(g == "PUBLIC" for g, _ in cat.database_acl | cat.schema_acl | cat.default_acl):
        return True
    if any(r.keep is None and r.public for r in tsc.routines):
        return True  # TimescaleDB's routines as installed: PUBLIC may execute every one
    for t in tables:
        info = cat.tables[t.name]
        if any(g == "PUBLIC" for g, _ in info.acl) or any(
            g == "PUBLIC" for _, g, _ in info.column_acl
        ):
            return True
    return False


def _footer_notes(
    cat: CatalogSnapshot,
    ad: AdoptionCatalog,
    *,
    policy_tables: set[str],
    notes: dict[str, list[str]],
) -> None:
    """What tsaccess does not manage and leaves as it is: views, other roles' default
    privileges."""
    for name, info in sorted(cat.tables.items()):
        if info.kind in ("v", "m", "f") and name not in ad.aggregates:
            grants = sorted(f"{p} to {g}" for g, p in info.acl if g != info.owner)
            kind = {"v": "view", "m": "materialized view", "f": "foreign table"}[info.kind]
            notes["footer"].append(
                f"{kind} {name}: not managed by the policy, left as it is"
                + (f" (grants: {', '.join(grants)})" if grants else "")
            )
    for owner, schema, kind, grantee, priv in sorted(
        ad.default_acl, key=lambda d: tuple(x or "" for x in d)
    ):
        if owner == ad.current_user and schema == ad.schema and kind == "r":
            continue  # the policy's default_grants
        where = f"in schema {schema}" if schema else "in every schema"
        notes["footer"].append(
            f"default privilege of role {owner} {where}: {priv} on new objects of type {kind!r} "
            f"to {grantee}: left as it is (the policy's default_grants are those of the "
            "administrator who runs apply, on tables)"
        )


def build_policy(
    cat: CatalogSnapshot, tsc: TimescaleCatalog, ad: AdoptionCatalog
) -> tuple[Policy, dict[str, list[str]], list[str]]:
    """The policy of what the catalogs describe, its notes per section, and general notes."""
    notes: dict[str, list[str]] = defaultdict(list)
    tables = _tables(cat, tsc, ad, notes)
    aggregates = []
    for _, definition in sorted(ad.aggregates.items()):
        agg = aggregate_of(definition, tables, cat, tsc, notes)
        if agg is not None:
            aggregates.append(agg)
    access = read_access(
        cat,
        ad,
        {t.name: [c.name for c in t.columns] for t in tables},
        [a.name for a in aggregates],
    )
    notes.update({k: notes.get(k, []) + v for k, v in access.notes.items()})
    roles, users = slices_of(ad, tsc, tables, access.roles, access.users, notes)
    _footer_notes(cat, ad, policy_tables={t.name for t in tables}, notes=notes)
    taken = set(cat.tables) | set(ad.aggregates)
    audit_table = _free_name(taken, "activity_audit")
    notes["audit"].append(
        'No tsaccess audit trail here: default_mode = "off", so apply installs none. Turn it on '
        'with default_mode = "statement" (or "row"); audit triggers of the database\'s own keep '
        "running."
    )
    if audit_table != "activity_audit":
        notes["audit"].append(
            f"table = {audit_table!r}: the database has a table named activity_audit already."
        )
    policy = Policy(
        database=ad.database,
        schema=ad.schema,
        timescaledb="prefer" if cat.timescaledb else "off",
        tables=tuple(tables),
        roles=tuple(roles),
        users=tuple(users),
        audit=AuditSettings(
            table=audit_table,
            owner=_free_owner({r.name for r in roles} | {u.name for u in users}),
            default_mode="off",
        ),
        also_connect=tuple(access.also_connect),
        aggregates=tuple(aggregates),
        public="keep" if _public_holds(cat, tsc, tables) else "revoke",
        chunk_privileges="copied"
        if any(t.hypertable for t in tables)
        and not any(r.slices for r in roles)
        and not any(trig.startswith("tsaccess_chunk_acl") for _, trig in cat.triggers)
        else "select",
    )
    return policy, notes, access.general


def _neutral(step: Step, cat: CatalogSnapshot, policy: Policy) -> bool:
    """A step that changes no one's access: a marker, or CONNECT / USAGE for a group role
    where PUBLIC has it (and keeps it)."""
    if step.internal:
        return True
    if policy.public != "keep":
        return False
    text = step.summary
    if re.fullmatch(r"grant CONNECT on database \S+ to \S+", text):
        return ("PUBLIC", "CONNECT") in cat.database_acl
    if re.fullmatch(r"grant USAGE on schema \S+ to \S+", text):
        return ("PUBLIC", "USAGE") in cat.schema_acl
    return False


def generate(conn: psycopg.Connection[Any], schema: str = "public") -> Generated:
    """The policy of the connected database's ``schema`` as it is (see the module docstring).

    Args:
        conn: an administrator's connection (a superuser, or a role that can read every
            grant) to the database to adopt. Nothing is changed; passwords are not read.
        schema: the schema whose tables the policy manages.

    Raises:
        PolicyError: the schema does not exist.
    """
    cat = read_catalog(conn, schema)
    if not cat.schema_exists:
        from tsaccess.errors import PolicyError

        raise PolicyError(
            f"schema {schema!r} does not exist in database {cat.database!r}; give --schema"
        )
    tsc = read_timescale(conn, schema, timescaledb=cat.timescaledb)
    ad = read_adoption(conn, schema, timescaledb=cat.timescaledb)
    policy, notes, general = build_policy(cat, tsc, ad)
    the_plan: Plan = plan(conn, policy)
    conn.rollback()
    changes = [s.summary for s in the_plan.steps if not _neutral(s, cat, policy)]
    neutral = [s.summary for s in the_plan.steps if _neutral(s, cat, policy)]
    header = [
        f"The policy of database {policy.database}, schema {policy.schema}, as it is "
        "(tsaccess generate).",
        "Applying it changes no one's access until you edit it; passwords are never read or "
        "written (apply keeps every existing login user's password).",
    ]
    if policy.public == "keep":
        header.append(
            'public = "keep": PUBLIC keeps what it has here; "revoke" (tsaccess\'s default) '
            "takes it away."
        )
        open_ = sorted({r.name for r in tsc.routines if r.keep is None and r.public})
        if open_:
            header.append(
                f"WARNING: PUBLIC may execute {len(open_)} TimescaleDB routine(s) that change "
                "data, chunks or jobs without checking the caller (drop_chunk, freeze_chunk, "
                "create_chunk...): any login user can erase any hypertable's rows, an audit "
                'trail\'s included. Set public = "revoke" and apply (docs/timescaledb.md).'
            )
    if policy.chunk_privileges == "copied":
        header.append(
            'chunk_privileges = "copied": chunks keep what TimescaleDB copies from their '
            'hypertable; "select" (the default, needed for audit and slices) closes them to '
            "writes."
        )
    header += [f"Note: {g}" for g in general]
    if changes:
        header.append("Applying it as it is would still change (the policy cannot say these):")
        header += [f"  {c}" for c in changes]
    else:
        header.append(
            "tsaccess plan of this policy changes no one's access: "
            + (
                f"{len(neutral)} steps (managed markers"
                + (
                    ", CONNECT/USAGE for group roles where PUBLIC has them"
                    if policy.public == "keep"
                    else ""
                )
                + ")"
                if neutral
                else "none"
            )
            + "."
        )
    footer = notes.pop("footer", [])
    text = dump_policy(policy, header=header, notes=notes, footer=footer)
    all_notes = tuple(general) + tuple(f"[{k}] {n}" for k, v in notes.items() for n in v)
    return Generated(policy, text, tuple(changes), tuple(neutral), all_notes + tuple(footer))
