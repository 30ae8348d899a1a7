"""TimescaleDB's side of ``tsaccess generate``: chunk intervals, compression, continuous aggregates,
and row-level security as row slices (see :mod:`tsaccess.plan.adopt`).

Each is written into the policy only when applying it changes nothing — the compression job's
``compress_after``, an aggregate's query, columns and refresh job exactly as the policy would
make them; otherwise it is a note (a comment in the file) and apply leaves it as it is.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import cast

from tsaccess.catalog import CatalogSnapshot
from tsaccess.catalog.adopt import AdoptionCatalog, AggregateDefinition
from tsaccess.catalog.timescale import SLICE_SCHEMA, TimescaleCatalog
from tsaccess.plan.phases.slices import POLICY_PREFIX
from tsaccess.plan.phases.timescale import _interval_text
from tsaccess.policy import (
    Aggregate,
    AggregateColumn,
    Compression,
    GroupRole,
    Privilege,
    RowSlice,
    Table,
    User,
)
from tsaccess.policy.model import column_level
from tsaccess.policy.timescale import AGGREGATE_FUNCTIONS

__all__ = ["aggregate_of", "compression_of", "interval_of", "slices_of"]


def interval_of(pg: str | None) -> str | None:
    """PostgreSQL's text of a simple interval (``7 days``, ``01:00:00``, ``1 mon``) as the
    policy writes it (``7 days``, ``1 hour``, ``1 month``), or None."""
    if pg is None:
        return None
    m = re.fullmatch(r"(\d+) (day|mon|year)s?", pg)
    if m:
        n, unit = int(m.group(1)), {"day": "day", "mon": "month", "year": "year"}[m.group(2)]
        return f"{n} {unit}{'' if n == 1 else 's'}"
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d)", pg)
    if m:
        secs = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
        for size, unit in ((3600, "hour"), (60, "minute"), (1, "second")):
            if secs and secs % size == 0:
                n = secs // size
                return f"{n} {unit}{'' if n == 1 else 's'}"
    return None


def _same_interval(policy_text: str | None, live: object) -> bool:
    """The plan compares jobs with :func:`_interval_text`: would it see ``live``?"""
    return policy_text is not None and _interval_text(policy_text) == str(live)


def compression_of(
    table: str, tsc: TimescaleCatalog, columns: set[str], notes: list[str]
) -> Compression | None:
    """The table's compression as the policy says it, or None (a note says why)."""
    live = tsc.compression.get(table)
    if live is None:
        return None
    segment_by, order_by = live
    used = set(segment_by) | {o.split()[0] for o in order_by}
    jobs = tsc.jobs_for(table, "policy_compression")
    after = None
    why = ""
    if not used <= columns:
        why = f"it uses columns the policy leaves out ({', '.join(sorted(used - columns))})"
    elif len(jobs) > 1:
        why = f"{len(jobs)} compression jobs"
    elif jobs:
        live_after = jobs[0].config.get("compress_after")
        after = interval_of(live_after if isinstance(live_after, str) else None)
        if not _same_interval(after, live_after):
            why = f"the compression job's compress_after {live_after!r}"
    if why:
        notes.append(
            f"compression (segment by {', '.join(segment_by) or '-'}, order by "
            f"{', '.join(order_by) or '-'}): kept as it is, the policy cannot say {why}"
        )
        return None
    return Compression(after, tuple(segment_by), tuple(order_by))


_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_REF = rf"(?:{_IDENT}\.)?(?P<col>{_IDENT})"
_BUCKET = re.compile(
    rf"time_bucket\('(?P<iv>[^']+)'::interval, {_REF}\)(?: AS (?P<alias>{_IDENT}))?"
)
_AGG = re.compile(
    rf"(?P<f>[a-z]+)\((?:{_IDENT}\.)?(?P<col>{_IDENT}|\*)\)(?: AS (?P<alias>{_IDENT}))?"
)
_COLUMN = re.compile(rf"{_REF}(?: AS (?P<alias>{_IDENT}))?")
_SIMPLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _split(text: str) -> list[str]:
    """Split a select list at its top-level commas."""
    out, depth, start, quote = [], 0, 0, ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def _parse(definition: str) -> tuple[str, str, str, list[str], list[AggregateColumn]] | None:
    """(source, bucket interval, bucket column, group-by columns, aggregate columns) of an
    aggregate's query of the shape the policy makes, else None."""
    text = " ".join(definition.split()).rstrip(";")
    m = re.fullmatch(r"SELECT (?P<sel>.*) FROM (?P<src>\S+) GROUP BY (?P<grp>.*)", text)
    if m is None:
        return None
    items = _split(m.group("sel"))
    b = _BUCKET.fullmatch(items[0])
    if b is None or b.group("alias") is None:
        return None
    group: list[str] = []
    cols: list[AggregateColumn] = []
    for item in items[1:]:
        a = _AGG.fullmatch(item)
        if a is not None and a.group("alias") and a.group("f") in AGGREGATE_FUNCTIONS:
            name, col = _unquote(a.group("alias")), _unquote(a.group("col"))
            if not (_SIMPLE.fullmatch(col) or col == "*") or (
                col == "*" and a.group("f") != "count"
            ):
                return None
            cols.append(AggregateColumn(name, a.group("f"), col))
            continue
        c = _COLUMN.fullmatch(item)
        if c is None or cols:  # group-by columns come before the aggregates
            return None
        col = _unquote(c.group("col"))
        if c.group("alias") and _unquote(c.group("alias")) != col:
            return None
        group.append(col)
    if len(_split(m.group("grp"))) != 1 + len(group) or not cols:
        return None
    src = _unquote(m.group("src").split(".")[-1])
    return src, b.group("iv"), _unquote(b.group("alias")), group, cols


def aggregate_of(
    a: AggregateDefinition,
    tables: Sequence[Table],
    cat: CatalogSnapshot,
    tsc: TimescaleCatalog,
    notes: dict[str, list[str]],
) -> Aggregate | None:
    """The continuous aggregate as the policy says it, or None (a note in the footer)."""
    footer = notes["footer"]
    parsed = _parse(a.definition)
    why = ""
    if parsed is None:
        why = "its query is not of the shape the policy makes (time_bucket, group-by columns, "
        why += "avg/min/max/sum/count)"
    else:
        src, iv, bucket_col, group, cols = parsed
        source = next((t for t in tables if t.name == src and t.hypertable), None)
        bucket = interval_of(iv)
        jobs = tsc.jobs_for(a.name, "policy_refresh_continuous_aggregate")
        want_cols = [bucket_col, *group, *(c.name for c in cols)]
        if source is None:
            why = f"its source {src} is not a hypertable of the policy"
        elif bucket is None:
            why = f"its bucket {iv}"
        elif list(a.columns) != want_cols:
            why = "its columns are not in the order the policy makes them"
        elif any(
            source.column(c) is None for c in (*group, *(x.column for x in cols if x.column != "*"))
        ):
            why = "it reads columns the policy leaves out"
        elif len(jobs) != 1:
            why = f"{len(jobs)} refresh jobs (the policy keeps exactly one)"
        else:
            cfg, every = jobs[0].config, jobs[0].schedule_interval
            start, end = cfg.get("start_offset"), cfg.get("end_offset")
            texts = [interval_of(str(x)) if x is not None else None for x in (start, end, every)]
            if not all(
                _same_interval(t, x) for t, x in zip(texts, (start, end, every), strict=True)
            ):
                why = f"its refresh job's offsets or schedule ({start}, {end}, every {every})"
            else:
                assert bucket is not None and texts[0] and texts[1] and texts[2]
                return Aggregate(
                    name=a.name,
                    source=src,
                    bucket=bucket,
                    group_by=tuple(group),
                    columns=tuple(cols),
                    bucket_column=bucket_col,
                    real_time=not a.materialized_only,
                    refresh_start=texts[0],
                    refresh_end=texts[1],
                    refresh_every=texts[2],
                )
    footer.append(
        f"continuous aggregate {a.name} is left out (and left as it is, grants included): the "
        f"policy cannot say {why}. Its query: {' '.join(a.definition.split())}"
    )
    return None


_SLICE = re.compile(
    rf"\((?P<col>{_IDENT}) = \( SELECT {SLICE_SCHEMA}\.attribute\('(?P<attr>(?:[^']|'')*)'::text\)"
    r" AS attribute\)\)"
)


def slices_of(
    ad: AdoptionCatalog,
    tsc: TimescaleCatalog,
    tables: Sequence[Table],
    roles: list[GroupRole],
    users: list[User],
    notes: dict[str, list[str]],
) -> tuple[list[GroupRole], list[User]]:
    """Row slices from the row-level security tsaccess made (its ``tsaccess_`` policies
    comparing a column with a user attribute); every other row-level security is a note."""
    policy_tables = {t.name for t in tables}
    slices: dict[str, list[RowSlice]] = {}
    own: dict[str, list[str]] = {}
    for p in ad.policies:
        if p.table not in policy_tables:
            continue
        m = _SLICE.fullmatch(p.using or "") if p.name.startswith(POLICY_PREFIX) else None
        if m is not None and len(p.roles) == 1:
            s = RowSlice(p.table, _unquote(m.group("col")), m.group("attr").replace("''", "'"))
            if s not in slices.setdefault(p.roles[0], []):
                slices[p.roles[0]].append(s)
            continue
        if p.name.startswith(POLICY_PREFIX) and p.using in ("true", None):
            continue  # a row policy tsaccess makes for the roles that see every row
        check = f" WITH CHECK {p.check}" if p.check is not None else ""
        using = f" USING {p.using}" if p.using is not None else ""
        own.setdefault(p.table, []).append(
            f"row-level security policy {p.name} ({'permissive' if p.permissive else 'restrictive'}"
            f" FOR {p.command} TO {', '.join(p.roles)}{using}{check}): kept as it is"
        )
    for table, lines in own.items():
        notes[f"tables.{table}"] += lines
        notes[f"tables.{table}"].append(
            "(tsaccess's row slices compare a column with the login user's attribute: "
            '[roles.<role>.slices] <table> = "<column>" and [users.<user>] attributes; '
            "permissive policies of your own widen every slice)"
        )
    for table, (enabled, forced) in sorted(ad.rls.items()):
        if table in policy_tables and enabled and not ad.policies_on(table):
            notes[f"tables.{table}"].append(
                "row-level security is on with no policy (only the owner and BYPASSRLS roles "
                f"read it{', forced for the owner too' if forced else ''}): kept as it is"
            )
    if not slices:
        return roles, users
    roles = [
        dataclasses.replace(r, slices=tuple(sorted(slices[r.name], key=lambda s: s.table)))
        if r.name in slices
        else r
        for r in roles
    ]
    roles = _sliced_table_grants(roles, tables, notes)
    attrs: dict[str, list[tuple[str, str]]] = {}
    for user, attr, value in sorted(tsc.attributes):
        attrs.setdefault(user, []).append((attr, value))
    users = [
        dataclasses.replace(u, attributes=tuple(attrs[u.name])) if u.name in attrs else u
        for u in users
    ]
    return roles, users


def _sliced_table_grants(
    roles: list[GroupRole], tables: Sequence[Table], notes: dict[str, list[str]]
) -> list[GroupRole]:
    """A column privilege on every column that tsaccess grants so for a table privilege (a
    sliced role's SELECT, INSERT or UPDATE on a hypertable: :func:`column_level`) is that table
    privilege: the policy says ``grants = { t = ["SELECT"] }`` again, and its plan makes the
    same column grants. A sliced role with such privileges on some columns only and no table
    privilege (a column added by hand since) gets the table privilege too, noted: a slice needs
    one, and apply grants the missing columns (listed among the changes)."""
    out = []
    for r in roles:
        grants: dict[str, set[Privilege]] = {t: set(p) for t, p in r.grants}
        kept = []
        for table, priv, cols in r.column_grants:
            t = next((x for x in tables if x.name == table), None)
            every = [c.name for c in t.columns] if t else []
            if t is None or not column_level(t, r, priv, "prefer"):
                kept.append((table, priv, cols))
                continue
            missing = [c for c in every if c not in cols]
            if missing and table in grants:
                kept.append((table, priv, cols))  # the slice has its table grant already
                continue
            if missing:
                notes[f"roles.{r.name}"].append(
                    f"{priv} on {table} covers every column but {', '.join(missing)}: written "
                    f"as the table privilege its row slice needs (apply grants {priv} on those "
                    "columns too)"
                )
            grants.setdefault(table, set()).add(cast(Privilege, priv))
        if len(kept) < len(r.column_grants):
            r = dataclasses.replace(
                r,
                grants=tuple((t, frozenset(p)) for t, p in sorted(grants.items())),
                column_grants=tuple(kept),
            )
        out.append(r)
    return out
