"""A statement's needs against a privilege snapshot: what is missing, what cannot be told.

Pure: no I/O. Facts the snapshot has not loaded (columns, the role's attributes, owners) raise
:class:`~tsaccess.preflight.snapshot.Fetch`; the checker runs the query and evaluates again.
Each missing privilege comes with the expression that confirms it live (``has_*_privilege``,
``pg_has_role``), so the checker never refuses on a stale snapshot. Tables and columns are
checked in :mod:`~tsaccess.preflight.tables`, everything else (schemas, sequences, functions,
settings, roles, ownership, locks) here.
"""

from __future__ import annotations

from psycopg import sql

from tsaccess.preflight.lookups import RESTRICTED_SETTINGS, owner_of, session_facts, settings
from tsaccess.preflight.model import (
    OWNER_FUNCTIONS,
    RUNTIME_FUNCTIONS,
    ColNeed,
    Derived,
    JoinNeed,
    Need,
    ObjNeed,
    Renamed,
    SourceRef,
    Statement,
    TableRef,
)
from tsaccess.preflight.snapshot import Rel, Snapshot
from tsaccess.preflight.tables import Item, Result, TableChecks

__all__ = ["Item", "Result", "evaluate", "prefetch_columns"]

_MODELED_RUNTIME = frozenset(
    {"nextval", "setval", "currval", "current_setting", "set_config", "pg_sequence_last_value"}
)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _regclass(n: ObjNeed) -> sql.Composable:
    """The relation ``n`` names, resolved when the check runs (inside the probe, after the
    role and ``search_path`` changes replayed before it): NULL when there is none."""
    text = _quoted(n.name) if n.schema is None else f"{_quoted(n.schema)}.{_quoted(n.name)}"
    return sql.SQL("pg_catalog.to_regclass({})").format(sql.Literal(text))


class _Eval(TableChecks):
    def obj(self, n: ObjNeed) -> None:
        if n.when == "run" and not n.certain:
            before = len(self.r.items)
            self._obj(n)
            if len(self.r.items) > before:  # missing, but evaluated only for some data
                del self.r.items[before:]
                self.r.uncertain.append(f"{n.kind} {n.name}: checked when evaluated")
            return
        self._obj(n)

    def _obj(self, n: ObjNeed) -> None:
        getattr(self, "obj_" + n.kind)(n)

    def obj_schema(self, n: ObjNeed) -> None:
        name = n.name or (self.snap.creation_schema() or "")
        schema = self.snap.schemas.get(name)
        if schema is None:
            return  # no such schema: the server says so
        if n.privilege == "USAGE" and not schema.usage:
            self.miss_usage(name, n.when)
        elif n.privilege == "CREATE" and not schema.create:
            check = self.fn("has_schema_privilege", sql.Literal(name), sql.Literal("CREATE"))
            self.miss("CREATE", name, check, kind="schema", when=n.when)

    def obj_sequence(self, n: ObjNeed) -> None:
        rel = self.snap.resolve(TableRef(n.schema, n.name))
        if not isinstance(rel, Rel) or rel.kind != "S":
            return  # missing or not a sequence: the server says so
        allowed = {
            "USAGE": rel.seq_usage or rel.table["UPDATE"],
            "SELECT": rel.table["SELECT"] or rel.seq_usage,
            "UPDATE": rel.table["UPDATE"],
        }[n.privilege]
        if allowed:
            return
        oid = _regclass(n)
        privs = {"USAGE": ("USAGE", "UPDATE"), "SELECT": ("SELECT", "USAGE")}.get(
            n.privilege, (n.privilege,)
        )
        check = sql.SQL("coalesce({}, true)").format(
            sql.SQL(" OR ").join(
                self.fn("has_sequence_privilege", oid, sql.Literal(p)) for p in privs
            )
        )
        self.miss(n.privilege, f"{rel.schema}.{rel.name}", check, kind="sequence", when=n.when)

    def obj_function(self, n: ObjNeed) -> None:
        snap = self.snap
        if n.name not in snap.special_functions:
            return
        if n.schema is not None:
            schema = snap.schemas.get(n.schema)
            if schema is not None and not schema.usage:
                self.miss_usage(n.schema, n.when)
                return
            reach = [n.schema]
        else:
            reach = [s for s in snap.search_path if snap.usage.get(s, True)]
        found = [f for f in snap.funcs.get(n.name, []) if f.schema in reach]
        if n.name in RUNTIME_FUNCTIONS and "pg_catalog" in reach:
            if n.name not in _MODELED_RUNTIME:
                self.r.uncertain.append(f"{n.name}() checks privileges when it runs")
            if not found:
                return
        if not found:
            return
        if not any(f.any_executable for f in found):
            check = sql.SQL(
                "EXISTS (SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n"
                " ON n.oid = p.pronamespace WHERE p.proname = {} AND n.nspname = ANY({})"
                " AND {})"
            ).format(
                sql.Literal(n.name),
                sql.Literal(reach),
                self.fn("has_function_privilege", sql.SQL("p.oid"), sql.Literal("EXECUTE")),
            )
            label = f"{n.schema}.{n.name}" if n.schema else n.name
            self.miss("EXECUTE", label, check, kind="function", when=n.when)
        elif not all(f.all_executable for f in found):
            self.r.uncertain.append(f"{n.name}(): some of its overloads may not be executed")
        elif not all(f.modeled for f in found) and n.name not in OWNER_FUNCTIONS:
            self.r.uncertain.append(f"{n.name}(): its body is checked when it runs")

    def obj_setting(self, n: ObjNeed) -> None:
        name = n.name
        if n.privilege == "READ":
            if name in RESTRICTED_SETTINGS and not session_facts(self.snap)["pg_read_all_settings"]:
                check = self.fn("pg_has_role", sql.Literal("pg_read_all_settings"),
                                sql.Literal("USAGE"))  # fmt: skip
                self.miss("READ", name, check, kind="setting", when=n.when)
            return
        known = settings(self.snap)
        context = known.get(name)
        if context is None:
            if name in RESTRICTED_SETTINGS:
                self.r.uncertain.append(f"setting {name}: hidden from this role")
            return  # a custom setting, or none: not a privilege question
        priv = "ALTER SYSTEM" if n.privilege == "ALTER SYSTEM" else "SET"
        if priv == "SET" and context != "superuser":
            return
        if session_facts(self.snap)["superuser"]:
            return
        check = self.fn("has_parameter_privilege", sql.Literal(name), sql.Literal(priv))
        self.miss(priv, name, check, kind="parameter", when=n.when)

    def obj_role(self, n: ObjNeed) -> None:
        facts = session_facts(self.snap)
        if n.name not in facts["roles"] or n.name in facts["member_of"]:
            return
        login = self.snap.login
        who = sql.SQL("session_user") if login is None else sql.Literal(login)
        check = sql.SQL("pg_catalog.pg_has_role({}, {}, 'MEMBER')").format(who, sql.Literal(n.name))
        self.miss("MEMBERSHIP", n.name, check, kind="role", when=n.when)

    def obj_database(self, n: ObjNeed) -> None:
        facts = session_facts(self.snap)
        if facts["db_create" if n.privilege == "CREATE" else "db_temp"]:
            return
        check = self.fn("has_database_privilege", sql.SQL("pg_catalog.current_database()"),
                        sql.Literal(n.privilege))  # fmt: skip
        self.miss(n.privilege, self.snap.database, check, kind="database", when=n.when)

    def obj_attribute(self, n: ObjNeed) -> None:
        facts = session_facts(self.snap)
        if n.privilege == "SESSION AUTHORIZATION":  # a superuser session, or oneself
            if n.name == self.snap.session_user or facts["session_superuser"]:
                return
            check: sql.Composable = sql.SQL(
                "(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user)"
            )
            self.miss("SUPERUSER", self.snap.session_user, check, kind="role attribute",
                      when=n.when)  # fmt: skip
            return
        if facts["superuser"] or facts.get(n.privilege.lower()):
            return
        role = sql.Literal(self.snap.for_role) if self.snap.for_role else sql.SQL("current_user")
        column = {"CREATEROLE": "rolcreaterole", "CREATEDB": "rolcreatedb"}.get(n.privilege)
        check = sql.SQL(
            "(SELECT rolsuper OR {} FROM pg_catalog.pg_roles WHERE rolname = {})"
        ).format(sql.Identifier(column) if column else sql.SQL("false"), role)
        self.miss(n.privilege, self.snap.role, check, kind="role attribute", when=n.when)

    def obj_predefined(self, n: ObjNeed) -> None:
        if session_facts(self.snap).get(n.name):
            return
        check = self.fn("pg_has_role", sql.Literal(n.name), sql.Literal("USAGE"))
        self.miss("USAGE", n.name, check, kind="role", when=n.when)

    def obj_lock(self, n: ObjNeed) -> None:
        rel = self.snap.resolve(TableRef(n.schema, n.name))
        if not isinstance(rel, Rel):
            return
        if n.schema is not None and not rel.usage:
            self.miss_usage(rel.schema, n.when)
            return
        privs = n.privilege.split("|")
        if any(rel.table.get(p) for p in privs):
            if rel.kind == "v":
                self.r.uncertain.append("LOCK of a view locks its tables as the view's owner")
            return
        oid = _regclass(n)
        check = sql.SQL("coalesce({}, true)").format(
            sql.SQL(" OR ").join(self.fn("has_table_privilege", oid, sql.Literal(p)) for p in privs)
        )
        self.miss(" or ".join(privs), f"{rel.schema}.{rel.name}", check, when=n.when)

    def obj_grant(self, n: ObjNeed) -> None:
        rel = self.snap.resolve(TableRef(n.schema, n.name))
        if not isinstance(rel, Rel):
            return
        if n.schema is not None and not rel.usage:
            self.miss_usage(rel.schema, n.when)
            return
        if rel.owned:
            return
        if any(rel.table.values()):  # a warning, or (a hypertable's chunks) a refusal
            self.r.uncertain.append(f"GRANT on {rel.name} by a role that does not own it")
            return
        privs = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
        oid = _regclass(n)
        owner = sql.SQL("(SELECT relowner FROM pg_catalog.pg_class WHERE oid = {})").format(oid)
        check = sql.SQL("coalesce({} OR {}, true)").format(
            self.fn("has_table_privilege", oid, sql.Literal(privs)),
            self.fn("pg_has_role", owner, sql.Literal("USAGE")),
        )
        self.miss("any privilege", f"{rel.schema}.{rel.name}", check, when=n.when)

    def obj_owner(self, n: ObjNeed) -> None:
        snap = self.snap
        if n.schema is not None and n.target in ("relation", "function", "type"):
            schema = snap.schemas.get(n.schema)
            if schema is not None and not schema.usage:
                self.miss_usage(n.schema, n.when)
                return
        if n.target == "schema":
            found = snap.schemas.get(n.name)
            if found is None or found.owned:
                return
            owner = sql.SQL("(SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = {})")
            check = self.fn("pg_has_role", owner.format(sql.Literal(n.name)), sql.Literal("USAGE"))
            self.miss("OWNER", n.name, check, kind="schema", when=n.when)
            return
        if n.target == "relation":
            rel = snap.resolve(TableRef(n.schema, n.name))
            if isinstance(rel, Rel):
                if rel.kind not in n.privilege or rel.owned:
                    return
                owner = sql.SQL("(SELECT relowner FROM pg_catalog.pg_class WHERE oid = {})")
                owns = self.fn("pg_has_role", owner.format(_regclass(n)), sql.Literal("USAGE"))
                check = sql.SQL("coalesce({}, true)").format(owns)
                self.miss("OWNER", f"{rel.schema}.{rel.name}", check, kind="table", when=n.when)
                return
        count, owned, relkind = owner_of(snap, n.target, n.schema, n.name)
        if count == 0 or owned == count or (n.target == "relation" and relkind not in n.privilege):
            return
        if owned:
            self.r.uncertain.append(f"{n.target} {n.name}: some of its kind are owned")
            return
        check = sql.SQL("false")  # confirmed by the lookup just made (live, not the snapshot)
        label = f"{n.schema}.{n.name}" if n.schema else n.name
        self.miss("OWNER", label, check, kind=n.target, when=n.when)


def prefetch_columns(st: Statement, snap: Snapshot) -> None:
    """Raise one :class:`Fetch` for the columns of every relation whose columns a check of
    ``st`` may read (one round trip instead of one per relation)."""
    rels: dict[int, Rel] = {}
    for need in st.needs:
        refs: list[SourceRef] = []
        if isinstance(need, Need) and (need.columns or need.first_n or need.positions):
            refs = [need.table]
        elif isinstance(need, ColNeed):
            if len(need.levels) == 1 and len(need.levels[0]) == 1:
                continue  # one source in reach: its columns only if not granted in full
            refs = [r for level in need.levels for r in level]
        elif isinstance(need, JoinNeed):
            refs = [*need.left, *need.right]
        for ref in refs:
            if ref is None or isinstance(ref, Derived):
                continue
            rel = snap.resolve(ref.table if isinstance(ref, Renamed) else ref)
            if isinstance(rel, Rel) and rel.columns is None:
                rels[rel.oid] = rel
    if rels:
        _Eval(snap, Result()).columns(rels.values())


def evaluate(st: Statement, snap: Snapshot) -> Result:
    """What ``st`` lacks against ``snap`` (raises :class:`Fetch` for facts not loaded)."""
    prefetch_columns(st, snap)
    result = Result(caveats=set(st.caveats))
    e = _Eval(snap, result)
    for need in st.needs:
        if isinstance(need, ColNeed):
            e.col_need(need)
        elif isinstance(need, JoinNeed):
            e.join_need(need)
        elif isinstance(need, Need):
            e.need(need)
        else:
            e.obj(need)
    return result
