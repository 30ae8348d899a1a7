"""The audit trail: install (as plan steps), session tagging, DENIED events and query helpers.

Design (see ``docs/concepts.md``):

* The audit table and its functions belong to a dedicated NOLOGIN role (``audit.owner``) that
  owns nothing else. Nobody is granted INSERT/UPDATE/DELETE/TRUNCATE on the table; auditors get
  SELECT. Rows arrive only through the trigger functions and ``tsaccess_audit_denied``.
* Trigger functions are ``SECURITY DEFINER`` with ``search_path`` pinned to
  ``pg_catalog, pg_temp`` and every name qualified, so a writer's ``search_path`` cannot hijack
  them; EXECUTE is revoked from PUBLIC.
* ``username`` is ``session_user`` (the login user, e.g. ``bob``); ``effective_role`` is the
  role the session had set (``SET ROLE``), read from the ``role`` setting, which a definer
  switch does not change.
* The audited table's name is passed to the trigger as an argument, so the recorded name is
  the hypertable's even where TimescaleDB clones a row trigger onto chunks.
* Statement triggers with transition tables do the work set-based: per-statement mode writes one
  row with the row count; per-row mode writes one row per changed row with its data as jsonb
  (excluded columns removed). Where transition tables are refused (DELETE on a hypertable with
  compression enabled) a trigger without them is used: per-statement rows then have no row
  count, per-row mode uses a row trigger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from tsaccess._log import get_logger
from tsaccess._steps import Step

if TYPE_CHECKING:
    from tsaccess.catalog import CatalogSnapshot
    from tsaccess.policy import Policy, Table

__all__ = [
    "ActivityBucket",
    "AuditEvent",
    "Results",
    "RoleRow",
    "SessionRow",
    "SummaryRow",
    "active_sessions",
    "activity",
    "history",
    "recent",
    "record_denied",
    "roles",
    "set_actor",
    "summary",
]

log = get_logger("tsaccess.audit")

STMT_FUNCTION = "tsaccess_audit_stmt"
ROW_FUNCTION = "tsaccess_audit_row"
DENIED_FUNCTION = "tsaccess_audit_denied"
TRIGGER_PREFIX = "tsaccess_audit_"

_COLUMNS = (
    "username, operation, table_name, description, effective_role, txid, client_addr,"
    " application_name, actor, request_id, row_count, old_data, new_data"
)
_CONTEXT = """
  eff text := coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text);
  app text := nullif(pg_catalog.current_setting('application_name'), '');
  act text := nullif(pg_catalog.current_setting('tsaccess.actor', true), '');
  req text := nullif(pg_catalog.current_setting('tsaccess.request_id', true), '');
  addr inet := pg_catalog.inet_client_addr();
  tx bigint := pg_catalog.txid_current();
  tbl text := TG_ARGV[0];
  ex text[] := TG_ARGV[2]::text[];"""

_STMT_BODY = """
DECLARE{context}
  n bigint;
BEGIN
  IF TG_ARGV[1] = 'row' AND TG_OP <> 'TRUNCATE' THEN
    IF TG_OP = 'INSERT' THEN
      INSERT INTO {audit} ({columns})
      SELECT session_user, TG_OP, tbl, 'INSERT row', eff, tx, addr, app, act, req, 1, NULL,
             pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.-) ex
        FROM tsaccess_new r;
    ELSIF TG_OP = 'DELETE' THEN
      INSERT INTO {audit} ({columns})
      SELECT session_user, TG_OP, tbl, 'DELETE row', eff, tx, addr, app, act, req, 1,
             pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.-) ex, NULL
        FROM tsaccess_old r;
    ELSE
      INSERT INTO {audit} ({columns})
      -- old and new rows are captured pairwise, in the same order: zip them
      SELECT session_user, TG_OP, tbl, 'UPDATE row', eff, tx, addr, app, act, req, 1, u.o, u.n
        FROM ROWS FROM (
          pg_catalog.unnest(ARRAY(SELECT pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.-) ex
                                    FROM tsaccess_old r)),
          pg_catalog.unnest(ARRAY(SELECT pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.-) ex
                                    FROM tsaccess_new r))
        ) AS u(o, n);
    END IF;
  ELSE
    IF TG_ARGV[3] = 'counted' THEN
      IF TG_OP = 'DELETE' THEN
        SELECT pg_catalog.count(*) INTO n FROM tsaccess_old;
      ELSIF TG_OP <> 'TRUNCATE' THEN
        SELECT pg_catalog.count(*) INTO n FROM tsaccess_new;
      END IF;
    END IF;
    INSERT INTO {audit} ({columns})
    VALUES (session_user, TG_OP, tbl,
            TG_OP || CASE WHEN n IS NULL THEN '' ELSE ' of ' || n || ' row(s)' END,
            eff, tx, addr, app, act, req, n, NULL, NULL);
  END IF;
  RETURN NULL;
END
"""

_ROW_BODY = """
DECLARE{context}
BEGIN
  INSERT INTO {audit} ({columns})
  VALUES (session_user, TG_OP, tbl, TG_OP || ' row', eff, tx, addr, app, act, req, 1,
          CASE WHEN TG_OP IN ('UPDATE', 'DELETE')
               THEN pg_catalog.to_jsonb(OLD) OPERATOR(pg_catalog.-) ex END,
          CASE WHEN TG_OP IN ('INSERT', 'UPDATE')
               THEN pg_catalog.to_jsonb(NEW) OPERATOR(pg_catalog.-) ex END);
  RETURN NULL;
END
"""

_DENIED_BODY = """
  INSERT INTO {audit} ({columns}, client_asserted)
  VALUES (session_user, 'DENIED', pg_catalog.left(table_name, 200),
          pg_catalog.left(reason, 500) || ': ' || pg_catalog.left(statement, 2000),
          coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text),
          pg_catalog.txid_current(), pg_catalog.inet_client_addr(),
          nullif(pg_catalog.current_setting('application_name'), ''),
          nullif(pg_catalog.current_setting('tsaccess.actor', true), ''),
          nullif(pg_catalog.current_setting('tsaccess.request_id', true), ''),
          NULL, NULL, NULL, true)
"""


def _qualified(policy: Policy, name: str) -> sql.Identifier:
    return sql.Identifier(policy.schema, name)


def display_name(policy: Policy, table: str) -> str:
    """The table name recorded in audit rows: bare in ``public``, else schema-qualified."""
    return table if policy.schema == "public" else f"{policy.schema}.{table}"


def function_sources(policy: Policy) -> dict[str, str]:
    """The exact ``prosrc`` of each audit function (compared to the catalog for idempotency)."""
    audit = _qualified(policy, policy.audit.table).as_string(None)
    ctx = _CONTEXT
    return {
        STMT_FUNCTION: _STMT_BODY.format(context=ctx, audit=audit, columns=_COLUMNS),
        ROW_FUNCTION: _ROW_BODY.format(context=ctx, audit=audit, columns=_COLUMNS),
        DENIED_FUNCTION: _DENIED_BODY.format(audit=audit, columns=_COLUMNS),
    }


@dataclass(frozen=True)
class TriggerSpec:
    table: str
    name: str
    statement: sql.Composed


def _trigger_specs(policy: Policy, table: Table, compressed: bool) -> list[TriggerSpec]:
    if table.audit == "off":
        return []
    mode = table.audit
    excluded = [c.name for c in table.columns if c.name not in table.audited_data_columns]
    ex_literal = (
        "{"
        + ",".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in excluded)
        + "}"
    )
    target = _qualified(policy, table.name)
    shown = display_name(policy, table.name)
    specs: list[TriggerSpec] = []
    events: list[tuple[str, str, str]] = [
        ("INSERT", "ins", "REFERENCING NEW TABLE AS tsaccess_new"),
        (
            "UPDATE",
            "upd",
            "REFERENCING OLD TABLE AS tsaccess_old NEW TABLE AS tsaccess_new"
            if mode == "row"
            else "REFERENCING NEW TABLE AS tsaccess_new",
        ),
        ("DELETE", "del", "REFERENCING OLD TABLE AS tsaccess_old"),
        ("TRUNCATE", "trn", ""),
    ]
    for event, short, referencing in events:
        fallback = event == "DELETE" and compressed
        if fallback and mode == "row":
            func, level, referencing, counted = ROW_FUNCTION, "ROW", "", "plain"
        elif fallback or event == "TRUNCATE":
            func, level, referencing, counted = STMT_FUNCTION, "STATEMENT", "", "plain"
        else:
            func, level, counted = STMT_FUNCTION, "STATEMENT", "counted"
        args = [shown, mode, ex_literal, counted]
        digest = hashlib.sha256(
            "|".join([event, func, level, referencing, *args]).encode()
        ).hexdigest()[:10]
        name = f"{TRIGGER_PREFIX}{short}_{digest}"
        stmt = sql.SQL(
            "CREATE TRIGGER {name} AFTER {event} ON {target} {referencing} FOR EACH {level}"
            " EXECUTE FUNCTION {func}({args})"
        ).format(
            name=sql.Identifier(name),
            event=sql.SQL(event),
            target=target,
            referencing=sql.SQL(referencing),
            level=sql.SQL(level),
            func=_qualified(policy, func),
            args=sql.SQL(", ").join(sql.Literal(a) for a in args),
        )
        specs.append(TriggerSpec(table.name, name, stmt))
    return specs


def audit_table_ddl(policy: Policy) -> sql.Composed:
    """The audit table: the tutorial's columns first, then what tsaccess adds."""
    return sql.SQL(
        "CREATE TABLE {t} ("
        " id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000),"
        " event_time timestamptz NOT NULL DEFAULT pg_catalog.now(),"
        " username text NOT NULL,"
        " operation text NOT NULL,"
        " table_name text,"
        " description text,"
        " effective_role text,"
        " txid bigint,"
        " client_addr inet,"
        " application_name text,"
        " actor text,"
        " request_id text,"
        " row_count bigint,"
        " old_data jsonb,"
        " new_data jsonb,"
        " client_asserted boolean NOT NULL DEFAULT false)"
    ).format(t=_qualified(policy, policy.audit.table))


def audit_steps(policy: Policy, cat: CatalogSnapshot | None, timescaledb: bool) -> list[Step]:
    """Steps that bring the audit objects to the policy (all of them when ``cat`` is None)."""
    if not policy.audited:
        return []
    owner = sql.Identifier(policy.audit.owner)
    audit_t = _qualified(policy, policy.audit.table)
    steps: list[Step] = []
    role = cat.roles.get(policy.audit.owner) if cat else None
    if role is None:
        steps.append(
            Step(
                sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(owner),
                f"create audit owner role {policy.audit.owner} (NOLOGIN)",
                "audit",
            )
        )
    elif role.login or role.superuser:
        steps.append(
            Step(
                sql.SQL("ALTER ROLE {} NOLOGIN NOSUPERUSER").format(owner),
                f"make audit owner {policy.audit.owner} NOLOGIN",
                "audit",
            )
        )
    info = cat.tables.get(policy.audit.table) if cat else None
    if info is None:
        steps.append(
            Step(audit_table_ddl(policy), f"create audit table {policy.audit.table}", "audit")
        )
        if timescaledb:
            steps.append(
                Step(
                    sql.SQL(
                        "SELECT create_hypertable({}::regclass,"
                        " by_range('event_time', INTERVAL '7 days'))"
                    ).format(sql.Literal(audit_t.as_string(None))),
                    f"make {policy.audit.table} a hypertable on event_time",
                    "audit",
                )
            )
        else:  # a hypertable brings its own time index; BRIN is nearly free on ingest
            steps.append(
                Step(
                    sql.SQL("CREATE INDEX ON {} USING brin (event_time)").format(audit_t),
                    f"index {policy.audit.table} (BRIN on event_time)",
                    "audit",
                )
            )
    if info is None or info.owner != policy.audit.owner:
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(audit_t, owner),
                f"audit table owned by {policy.audit.owner}",
                "audit",
            )
        )
    sources = function_sources(policy)

    def body_sql(body: str) -> sql.Composable:
        # dollar-quoted for readable scripts, unless a (policy-controlled) name could close it
        return (
            sql.SQL("$tsaccess$" + body + "$tsaccess$")
            if "$tsaccess$" not in body
            else sql.Literal(body)
        )

    grantees = sorted({r.name for r in policy.roles})
    for fname, body in sources.items():
        fq = _qualified(policy, fname)
        existing = cat.functions.get(fname) if cat else None
        if fname == DENIED_FUNCTION:
            signature = sql.SQL(
                "{}(statement text, reason text, table_name text DEFAULT NULL)"
            ).format(fq)
            ident = sql.SQL("{}(text, text, text)").format(fq)
            create = sql.SQL(
                "CREATE OR REPLACE FUNCTION {sig} RETURNS void LANGUAGE sql VOLATILE"
                " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {body}"
            ).format(sig=signature, body=body_sql(body))
            want_acl = {(g, "EXECUTE") for g in grantees}
        else:
            ident = sql.SQL("{}()").format(fq)
            create = sql.SQL(
                "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql"
                " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {body}"
            ).format(f=fq, body=body_sql(body))
            want_acl = set()
        ok = (
            existing is not None
            and existing.source == body
            and existing.security_definer
            and existing.config == ("search_path=pg_catalog, pg_temp",)
        )
        if not ok:
            steps.append(Step(create, f"create or replace audit function {fname}", "audit"))
        if existing is None or existing.owner != policy.audit.owner:
            steps.append(
                Step(
                    sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(ident, owner),
                    f"{fname} owned by {policy.audit.owner}",
                    "audit",
                )
            )
        have = {
            g for g in (existing.acl if existing else frozenset()) if g[0] != policy.audit.owner
        }
        if existing is None:
            have = {("PUBLIC", "EXECUTE")}  # functions are born executable by PUBLIC
        for grantee, _ in sorted(have - want_acl):
            who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            steps.append(
                Step(
                    sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM {}").format(ident, who),
                    f"revoke EXECUTE on {fname} from {grantee}",
                    "audit",
                )
            )
        for grantee, _ in sorted(want_acl - have):
            steps.append(
                Step(
                    sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                        ident, sql.Identifier(grantee)
                    ),
                    f"grant EXECUTE on {fname} to {grantee}",
                    "audit",
                )
            )
    for table in policy.tables:
        tinfo = cat.tables.get(table.name) if cat else None
        specs = _trigger_specs(policy, table, bool(tinfo and tinfo.compressed))
        wanted = {s.name for s in specs}
        existing_trg = {
            name: trg
            for (tname, name), trg in (cat.triggers.items() if cat else ())
            if tname == table.name and name.startswith(TRIGGER_PREFIX)
        }
        for name in sorted(set(existing_trg) - wanted):
            steps.append(
                Step(
                    sql.SQL("DROP TRIGGER {} ON {}").format(
                        sql.Identifier(name), _qualified(policy, table.name)
                    ),
                    f"drop outdated audit trigger {name} on {table.name}",
                    "audit",
                )
            )
        for spec in specs:
            trg = existing_trg.get(spec.name)
            if trg is None:
                steps.append(
                    Step(
                        spec.statement,
                        f"audit {table.audit}-level on {table.name} ({spec.name})",
                        "audit",
                    )
                )
            elif not trg.enabled:
                steps.append(
                    Step(
                        sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(
                            _qualified(policy, table.name), sql.Identifier(spec.name)
                        ),
                        f"re-enable audit trigger {spec.name} on {table.name}",
                        "audit",
                    )
                )
    return steps


# -- the audit-aware client -------------------------------------------------------------------


def set_actor(
    conn: psycopg.Connection[Any], actor: str | None, request_id: str | None = None
) -> None:
    """Tag this session's audit rows with an application-level actor and request id.

    The values are client-asserted (the application says who its end user is): audit rows store
    them in ``actor`` / ``request_id`` next to the server-verified ``username``. Pooled
    connections forget them on return.
    """
    conn.execute(
        "SELECT pg_catalog.set_config('tsaccess.actor', %s, false),"
        " pg_catalog.set_config('tsaccess.request_id', %s, false)",
        (actor or "", request_id or ""),
    )


def record_denied(
    conn: psycopg.Connection[Any],
    statement: str,
    reason: str,
    *,
    table_name: str | None = None,
    schema: str = "public",
) -> bool:
    """Record a refused statement as a ``DENIED`` audit event, in its own transaction.

    Uses ``conn`` when it is idle; otherwise (a transaction is open or failed) a second
    connection with the same parameters, so the event survives the caller's rollback. The event
    is client-asserted (``client_asserted = true``). Returns False, and logs, when the event
    could not be recorded (e.g. the user may not execute the function).
    """
    stmt = sql.SQL("SELECT {}(%s, %s, %s)").format(sql.Identifier(schema, DENIED_FUNCTION))
    args = (statement, reason, table_name)
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with conn.transaction():
                conn.execute(stmt, args)
        else:
            from tsaccess.connection import connect

            params = getattr(conn, "_tsaccess_params", None)
            if params is None:
                log.warning(
                    "denied event not recorded: connection is busy and was not "
                    "opened by tsaccess.connect",
                    db_user=conn.info.user,
                )
                return False
            with connect(**params, autocommit=True) as side:
                side.execute(stmt, args)
    except psycopg.Error as exc:
        log.warning(
            "denied event not recorded", db_user=conn.info.user, error=exc.__class__.__name__
        )
        return False
    return True


# -- query helpers ----------------------------------------------------------------------------

R = TypeVar("R")


class Results(Sequence[R], Generic[R]):
    """A typed list of rows that renders as an HTML table in Jupyter and converts to pandas."""

    def __init__(self, rows: Sequence[R], columns: Sequence[str]) -> None:
        self._rows = list(rows)
        self.columns = tuple(columns)

    def __getitem__(self, i: Any) -> Any:
        return self._rows[i]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[R]:
        return iter(self._rows)

    def __repr__(self) -> str:
        return f"<Results {len(self)} rows: {', '.join(self.columns)}>"

    def as_dicts(self) -> list[dict[str, Any]]:
        return [
            asdict(r) if hasattr(r, "__dataclass_fields__") else dict(r)  # type: ignore[call-overload]
            for r in self._rows
        ]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (needs the optional ``pandas`` extra)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install 'tsaccess[pandas]'") from None
        return pd.DataFrame(self.as_dicts(), columns=list(self.columns))

    def to_text(self) -> str:
        from tsaccess._render import text_table

        return text_table(self.columns, [list(d.values()) for d in self.as_dicts()])

    def _repr_html_(self) -> str:
        from tsaccess._render import html_table

        return html_table(self.columns, [list(d.values()) for d in self.as_dicts()])


@dataclass(frozen=True)
class AuditEvent:
    id: int
    event_time: dt.datetime
    username: str
    operation: str
    table_name: str | None
    description: str | None
    effective_role: str | None
    txid: int | None
    client_addr: str | None
    application_name: str | None
    actor: str | None
    request_id: str | None
    row_count: int | None
    old_data: Any
    new_data: Any
    client_asserted: bool


@dataclass(frozen=True)
class SummaryRow:
    username: str
    operation: str
    table_name: str | None
    events: int
    rows: int | None
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True)
class ActivityBucket:
    bucket: dt.datetime
    username: str
    operation: str
    events: int
    rows: int | None


@dataclass(frozen=True)
class SessionRow:
    pid: int
    username: str | None
    application_name: str | None
    client_addr: str | None
    state: str | None
    backend_start: dt.datetime | None
    query_start: dt.datetime | None
    ssl: bool | None
    tls_version: str | None
    cipher: str | None
    query: str | None


@dataclass(frozen=True)
class RoleRow:
    rolname: str
    rolcanlogin: bool
    rolsuper: bool
    rolinherit: bool
    rolcreaterole: bool
    rolcreatedb: bool
    member_of: list[str]


def _names(cls: type[Any]) -> list[str]:
    return [f.name for f in fields(cls)]


def _fetch(
    conn: psycopg.Connection[Any], cls: type[R], query: Any, params: Any = None
) -> Results[R]:
    """Run a helper's query and return its rows as ``cls`` instances."""
    with conn.cursor(row_factory=class_row(cls)) as cur:
        rows = cur.execute(query, params).fetchall()
    return Results(rows, _names(cls))


def _audit_table(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def recent(
    conn: psycopg.Connection[Any],
    limit: int = 20,
    *,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[AuditEvent]:
    """The latest audit events, newest first."""
    q = sql.SQL("SELECT {} FROM {} ORDER BY event_time DESC, id DESC LIMIT %s").format(
        sql.SQL(", ").join(sql.Identifier(n) for n in _names(AuditEvent)),
        _audit_table(schema, table),
    )
    return _fetch(conn, AuditEvent, q, (limit,))


def history(
    conn: psycopg.Connection[Any],
    table_name: str,
    *,
    since: dt.datetime | None = None,
    user: str | None = None,
    limit: int = 1000,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[AuditEvent]:
    """Events on one audited table (optionally since a time and by one login user)."""
    q = sql.SQL(
        "SELECT {} FROM {} WHERE table_name = %s AND (%s::timestamptz IS NULL OR event_time >= %s)"
        " AND (%s::text IS NULL OR username = %s) ORDER BY event_time, id LIMIT %s"
    ).format(
        sql.SQL(", ").join(sql.Identifier(n) for n in _names(AuditEvent)),
        _audit_table(schema, table),
    )
    return _fetch(conn, AuditEvent, q, (table_name, since, since, user, user, limit))


def summary(
    conn: psycopg.Connection[Any],
    since: dt.datetime | dt.timedelta | None = None,
    *,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[SummaryRow]:
    """Events per user, operation and table with first and last time (the tutorial's summary)."""
    since_ts = dt.datetime.now(dt.UTC) - since if isinstance(since, dt.timedelta) else since
    q = sql.SQL(
        "SELECT username, operation, table_name, count(*) AS events, sum(row_count)::bigint AS rows,"
        " min(event_time) AS first_seen, max(event_time) AS last_seen FROM {}"
        " WHERE %s::timestamptz IS NULL OR event_time >= %s"
        " GROUP BY username, operation, table_name ORDER BY username, operation, table_name"
    ).format(_audit_table(schema, table))
    return _fetch(conn, SummaryRow, q, (since_ts, since_ts))


def activity(
    conn: psycopg.Connection[Any],
    bucket: dt.timedelta = dt.timedelta(hours=1),
    since: dt.datetime | dt.timedelta | None = dt.timedelta(days=1),
    *,
    schema: str = "public",
    table: str = "activity_audit",
) -> Results[ActivityBucket]:
    """Events per time bucket, user and operation (``time_bucket`` with TimescaleDB, else
    ``date_bin``)."""
    since_ts = dt.datetime.now(dt.UTC) - since if isinstance(since, dt.timedelta) else since
    has_ts = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    func = (
        sql.SQL("time_bucket(%s::interval, event_time)")
        if has_ts and has_ts[0]
        else sql.SQL("date_bin(%s::interval, event_time, TIMESTAMPTZ '2000-01-01')")
    )
    q = sql.SQL(
        "SELECT {f} AS bucket, username, operation, count(*) AS events,"
        " sum(row_count)::bigint AS rows FROM {t}"
        " WHERE %s::timestamptz IS NULL OR event_time >= %s"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ).format(f=func, t=_audit_table(schema, table))
    return _fetch(conn, ActivityBucket, q, (bucket, since_ts, since_ts))


def active_sessions(conn: psycopg.Connection[Any]) -> Results[SessionRow]:
    """Sessions on this database with their TLS status (the tutorial's pg_stat_activity query)."""
    q = (
        "SELECT a.pid, a.usename::text AS username, a.application_name,"
        " host(a.client_addr) AS client_addr, a.state, a.backend_start, a.query_start,"
        " s.ssl, s.version AS tls_version, s.cipher, left(a.query, 200) AS query"
        " FROM pg_catalog.pg_stat_activity a LEFT JOIN pg_catalog.pg_stat_ssl s USING (pid)"
        " WHERE a.datname = pg_catalog.current_database() ORDER BY a.backend_start"
    )
    return _fetch(conn, SessionRow, q)


def roles(conn: psycopg.Connection[Any]) -> Results[RoleRow]:
    """Roles (system roles hidden) with their attributes and memberships (the tutorial's list)."""
    q = (
        "SELECT r.rolname::text, r.rolcanlogin, r.rolsuper, r.rolinherit, r.rolcreaterole,"
        " r.rolcreatedb, coalesce(array_agg(g.rolname::text ORDER BY g.rolname)"
        "   FILTER (WHERE g.rolname IS NOT NULL), '{}') AS member_of"
        " FROM pg_catalog.pg_roles r"
        " LEFT JOIN pg_catalog.pg_auth_members m ON m.member = r.oid"
        " LEFT JOIN pg_catalog.pg_roles g ON g.oid = m.roleid"
        " WHERE r.rolname !~ '^pg_' GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1"
    )
    return _fetch(conn, RoleRow, q)
