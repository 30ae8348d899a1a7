"""The trigger functions of the audit trail: the shared statement function and each per-row
table's function (the DDL around them: :mod:`tsaccess.audit.ddl`; the other SQL:
:mod:`tsaccess.audit.templates`).

The cost that matters is a statement's, in ingest that sends one row per statement: each
function writes the usual statement (fewer than 1000 rows) with one SQL statement that counts
the transition table, reads the session's context and inserts the audit row (per row: and the
changed rows, linked to it through ``RETURNING``). Larger statements are sized without reading
the rows back. The functions are ``SECURITY DEFINER`` without a pinned ``search_path`` (pinning
it costs a third of such a function's run): every function, operator, type and table they name
is schema-qualified, so what a writer puts on its ``search_path`` or in ``pg_temp`` (searched
first for types and tables) is never used. The context is read in the statement that records
it, so a change of the actor between two statements of a transaction shows in the second's row.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from psycopg import sql

from tsaccess.audit.templates import COLUMNS, qualified, row_value, text

if TYPE_CHECKING:
    from tsaccess.policy import Policy, Table

__all__ = ["rows_function_source", "stmt_function_source"]

_EQ = "OPERATOR(pg_catalog.=)"
_CAT = "OPERATOR(pg_catalog.||)"

# The size of a transition table ({tt}) into n without reading a large one back (reading
# 100,000 rows back costs more than the rest of the audit): up to 1000 rows are counted; above
# that the planner's row estimate for a transition table is its exact size (PostgreSQL gives
# it tuplestore_tuple_count(); the test suite checks it), with count(*) as the fallback.
_SIZE = """
SELECT pg_catalog.count(*) INTO n FROM (SELECT FROM {tt} LIMIT 1000) s;
IF n OPERATOR(pg_catalog.=) 1000 THEN
  EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM {tt}' INTO est;
  est := pg_catalog.json_extract_path_text(
    pg_catalog.json_array_element(est::pg_catalog.json, 0), 'Plan', 'Plan Rows');
  IF est OPERATOR(pg_catalog.~) '^[0-9]{{1,18}}$' THEN
    n := est::pg_catalog.int8;
  ELSE
    EXECUTE 'SELECT pg_catalog.count(*) FROM {tt}' INTO n;
  END IF;
END IF;"""


def _size(tt: str, indent: int) -> str:
    """:data:`_SIZE` for transition table ``tt``, indented to sit in a function body."""
    return textwrap.indent(_SIZE.format(tt=tt), " " * indent)


# A MERGE fires the statement triggers of every action it names, and a data-modifying WITH
# those of every part, also where nothing changed: one statement is recorded as the actions
# that changed rows. A plain statement that changed no row is still recorded (it was tried).
# current_query() is the client's whole string: when it holds more than one statement (a ';'
# followed by more text), which one fired cannot be told, and the event is recorded.
_LONE_MERGE_OR_WITH = (
    "pg_catalog.current_query() OPERATOR(pg_catalog.~*)"
    " '^\\s*(/\\*.*?\\*/\\s*|--[^\\n]*\\n\\s*)*(merge|with)\\M'"
    " AND pg_catalog.current_query() OPERATOR(pg_catalog.!~) ';\\s*\\S'"
)
_SKIP_EMPTY = f"""
IF n OPERATOR(pg_catalog.=) 0 AND {_LONE_MERGE_OR_WITH} THEN
  RETURN NULL;  -- an action of a lone MERGE or WITH statement that changed no row
END IF;"""
# the same, as the condition under which the one-statement path records (n is c.n)
_RECORDED = (
    "c.n OPERATOR(pg_catalog.<) 1000 AND (c.n OPERATOR(pg_catalog.>) 0"
    f" OR NOT ({_LONE_MERGE_OR_WITH}))"
)

# The context of an audit row, read in the statement that writes it (a change of the actor
# between two statements of a transaction shows in the second's row): the subquery g.
_CONTEXT_FROM = f"""(SELECT CASE WHEN s.r {_EQ} 'none' THEN session_user::pg_catalog.text
                   ELSE s.r END AS eff,
                 CASE WHEN s.app {_EQ} '' THEN NULL ELSE s.app END AS app,
                 CASE WHEN s.act {_EQ} '' THEN NULL ELSE s.act END AS act,
                 CASE WHEN s.req {_EQ} '' THEN NULL ELSE s.req END AS req
          FROM (SELECT pg_catalog.current_setting('role') AS r,
                       pg_catalog.current_setting('application_name') AS app,
                       pg_catalog.current_setting('tsaccess.actor', true) AS act,
                       pg_catalog.current_setting('tsaccess.request_id', true) AS req) s) g"""


def _values(description: str, count: str) -> str:
    """The audit row's values after ``username, operation, table_name`` (see
    :data:`COLUMNS`), from the context subquery ``g``."""
    return (
        f"session_user, TG_OP, TG_ARGV[0], {description}, g.eff, pg_catalog.txid_current(),"
        f" pg_catalog.inet_client_addr(), g.app, g.act, g.req, {count},"
        " (g.act IS NOT NULL OR g.req IS NOT NULL OR g.app IS NOT NULL)"
    )


_OF_N = f"TG_OP {_CAT} ' of ' {_CAT} {{n}} {_CAT} ' row(s)'"

# A statement of fewer than 1000 rows (the usual case): counted, and recorded, in one
# statement; FOUND says it was. Else (1000 rows or more, or none) the function sizes the
# transition table without reading it back and records from there.
_STMT_COUNTED = f"""
INSERT INTO {{audit}} ({{columns}}, client_asserted)
SELECT {_values(_OF_N.format(n="c.n"), "c.n")}
FROM (SELECT pg_catalog.count(*) AS n FROM (SELECT FROM {{tt}} LIMIT 1000) s) c,
     {_CONTEXT_FROM}
WHERE {_RECORDED};"""


def _stmt_counted(audit: str, tt: str, indent: int) -> str:
    return textwrap.indent(_STMT_COUNTED.format(audit=audit, columns=COLUMNS, tt=tt), " " * indent)


_STMT_BODY = """
DECLARE
  n pg_catalog.int8;
  est pg_catalog.text;
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN{counted_old}
  ELSIF TG_OP OPERATOR(pg_catalog.<>) 'TRUNCATE' THEN{counted_new}
  ELSE
    INSERT INTO {audit} ({columns}, client_asserted)
    SELECT {truncate_values} FROM {context_from};
    RETURN NULL;
  END IF;
  IF FOUND THEN
    RETURN NULL;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN{size_old}
  ELSE{size_new}
  END IF;{skip_empty}
  INSERT INTO {audit} ({columns}, client_asserted)
  SELECT {values} FROM {context_from};
  RETURN NULL;
END
"""

# Per-row mode, one function per table: the statement's audit row, and each changed row as a
# value of the table's row type (only the audited columns) in the table's data table, in one
# statement that also counts them when the statement changed fewer than 1000 rows (the audit
# row's id reaches the data rows through RETURNING: no sequence call of the function's own).
_ROWS_COUNTED = f"""
WITH c AS MATERIALIZED (
       SELECT pg_catalog.count(*) AS n FROM (SELECT FROM {{tt}} LIMIT 1000) s),
     a AS (
       INSERT INTO {{audit}} ({{columns}}, client_asserted)
       SELECT {_values(_OF_N.format(n="c.n"), "c.n")}
       FROM c, {_CONTEXT_FROM}
       WHERE {_RECORDED}
       RETURNING id, event_time),
     d AS (
       INSERT INTO {{data}} (audit_id, event_time, {{side}})
       SELECT a.id, a.event_time, {{r_row}} FROM a, {{tt}} r)
SELECT a.id INTO aid FROM a;"""

# The same when the size is known (n): 1000 rows or more, or none.
_ROWS_SIZED = f"""
WITH a AS (
       INSERT INTO {{audit}} ({{columns}}, client_asserted)
       SELECT {_values(_OF_N.format(n="n"), "n")} FROM {_CONTEXT_FROM}
       RETURNING id, event_time),
     d AS (
       INSERT INTO {{data}} (audit_id, event_time, {{side}})
       SELECT a.id, a.event_time, {{r_row}} FROM a, {{tt}} r)
SELECT a.id INTO aid FROM a;"""


def _rows_part(template: str, tt: str, side: str, indent: int, **names: str) -> str:
    return textwrap.indent(template.format(tt=tt, side=side, **names), " " * indent)


_ROWS_BODY = """
DECLARE
  n pg_catalog.int8;
  aid pg_catalog.int8;
  ts pg_catalog.timestamptz;
  est pg_catalog.text;
  zip_limit pg_catalog.text;
  o_cur pg_catalog.refcursor;
  n_cur pg_catalog.refcursor;
  o_rec pg_catalog.record;
  n_rec pg_catalog.record;
BEGIN
  IF TG_LEVEL OPERATOR(pg_catalog.=) 'ROW' THEN  -- no transition tables (DELETE, compressed)
    WITH a AS (
           INSERT INTO {audit} ({columns}, client_asserted)
           SELECT {row_values} FROM {context_from}
           RETURNING id, event_time)
    INSERT INTO {data} (audit_id, event_time, old_data)
    SELECT a.id, a.event_time, {old_row} FROM a;
    RETURN NULL;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN{counted_new}
    IF FOUND THEN
      RETURN NULL;
    END IF;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN{counted_old}
    IF FOUND THEN
      RETURN NULL;
    END IF;
  END IF;
  -- 1000 rows or more, none, or an UPDATE: sized without reading the rows back
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN{size_old}
  ELSE{size_new}
  END IF;{skip_empty}
  IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN{sized_new}
    RETURN NULL;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN{sized_old}
    RETURN NULL;
  END IF;
  -- UPDATE: old and new rows are captured pairwise, in the same order: zip them, as two
  -- arrays up to tsaccess.audit_zip_rows rows (default 1,000,000), beyond that (an array is
  -- limited to 1 GB) by walking both transition tables in step
  zip_limit := pg_catalog.current_setting('tsaccess.audit_zip_rows', true);
  IF zip_limit IS NULL OR zip_limit OPERATOR(pg_catalog.!~) '^[0-9]{{1,18}}$' THEN
    zip_limit := '1000000';
  END IF;
  IF n OPERATOR(pg_catalog.<=) zip_limit::pg_catalog.int8 THEN
    WITH a AS (
           INSERT INTO {audit} ({columns}, client_asserted)
           SELECT {values} FROM {context_from}
           RETURNING id, event_time)
    INSERT INTO {data} (audit_id, event_time, old_data, new_data)
    SELECT a.id, a.event_time,
           pg_catalog.unnest(ARRAY(SELECT {r_row} FROM tsaccess_old r)),
           pg_catalog.unnest(ARRAY(SELECT {r_row} FROM tsaccess_new r))
    FROM a;
  ELSE
    INSERT INTO {audit} ({columns}, client_asserted)
    SELECT {values} FROM {context_from}
    RETURNING id, event_time INTO aid, ts;
    OPEN o_cur NO SCROLL FOR SELECT {r_row} AS v FROM tsaccess_old r;
    OPEN n_cur NO SCROLL FOR SELECT {r_row} AS v FROM tsaccess_new r;
    LOOP
      FETCH o_cur INTO o_rec;
      EXIT WHEN NOT FOUND;
      FETCH n_cur INTO n_rec;
      INSERT INTO {data} (audit_id, event_time, old_data, new_data)
      VALUES (aid, ts, o_rec.v, n_rec.v);
    END LOOP;
    CLOSE o_cur;
    CLOSE n_cur;
  END IF;
  RETURN NULL;
END
"""


def stmt_function_source(policy: Policy) -> str:
    """The exact ``prosrc`` of the shared statement trigger function (compared to the
    catalog)."""
    audit = text(qualified(policy, policy.audit.table))
    return _STMT_BODY.format(
        audit=audit,
        columns=COLUMNS,
        counted_old=_stmt_counted(audit, "tsaccess_old", 4),
        counted_new=_stmt_counted(audit, "tsaccess_new", 4),
        truncate_values=_values("TG_OP", "NULL"),
        context_from=_CONTEXT_FROM,
        values=_values(_OF_N.format(n="n"), "n"),
        size_old=_size("tsaccess_old", 4),
        size_new=_size("tsaccess_new", 4),
        skip_empty=textwrap.indent(_SKIP_EMPTY, " " * 2),
    )


def rows_function_source(policy: Policy, table: Table, attrs: Sequence[str]) -> str:
    """The exact ``prosrc`` of ``table``'s per-row trigger function."""
    audit = text(qualified(policy, policy.audit.table))
    data = text(sql.Identifier(policy.audit.data_schema, table.name))
    r_row = row_value(policy, table, attrs, "r")
    names = {"audit": audit, "columns": COLUMNS, "data": data, "r_row": r_row}
    return _ROWS_BODY.format(
        audit=audit,
        columns=COLUMNS,
        data=data,
        r_row=r_row,
        old_row=row_value(policy, table, attrs, "old"),
        context_from=textwrap.indent(_CONTEXT_FROM, " " * 6),
        row_values=_values(f"TG_OP {_CAT} ' row'", "1"),
        values=_values(_OF_N.format(n="n"), "n"),
        counted_new=_rows_part(_ROWS_COUNTED, "tsaccess_new", "new_data", 4, **names),
        counted_old=_rows_part(_ROWS_COUNTED, "tsaccess_old", "old_data", 4, **names),
        sized_new=_rows_part(_ROWS_SIZED, "tsaccess_new", "new_data", 4, **names),
        sized_old=_rows_part(_ROWS_SIZED, "tsaccess_old", "old_data", 4, **names),
        size_old=_size("tsaccess_old", 4),
        size_new=_size("tsaccess_new", 4),
        skip_empty=textwrap.indent(_SKIP_EMPTY, " " * 2),
    )
