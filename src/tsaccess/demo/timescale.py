"""The demo's TimescaleDB chapter (``tsaccess demo --policy examples/timescale.toml``).

Shows each door of ``docs/timescaledb.md`` on the running demo server: the continuous aggregate
read by its viewer without raw access, a row slice by every path (hypertable, chunk by name, a
chunk created after apply), DML on compressed chunks in the audit trail with exact counts, and a
chunk dropped by the audited retention job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import psycopg
from psycopg import sql

from tsaccess.client.connection import connect
from tsaccess.passwords import Secret
from tsaccess.policy import Policy

__all__ = ["timescale_chapter"]


class _Checks(Protocol):
    def __call__(self, name: str, ok: bool, detail: str = "") -> None: ...


def _refused(conn: psycopg.Connection[Any], stmt: sql.SQL | sql.Composed) -> str | None:
    """The refusal (SQLSTATE and message), or None when the statement ran."""
    try:
        conn.execute(stmt)
        return None
    except psycopg.errors.InsufficientPrivilege as exc:
        return f"{exc.sqlstate} {exc.diag.message_primary}"
    finally:
        conn.rollback()


def timescale_chapter(
    admin_params: Mapping[str, Any],
    user_params: Callable[[str], dict[str, Any]],
    policy: Policy,
    passwords: Mapping[str, Secret],
    check: _Checks,
    out: Callable[[str], None],
) -> None:
    """Run the chapter; ``check(name, ok, detail)`` records each claim."""
    schema = policy.schema
    audit_t = sql.Identifier(schema, policy.audit.table)

    def chunks(conn: psycopg.Connection[Any], table: str) -> list[str]:
        return [
            r[0]
            for r in conn.execute(
                "SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM"
                " timescaledb_information.chunks WHERE hypertable_schema = %s"
                " AND hypertable_name = %s ORDER BY range_start",
                (schema, table),
            )
        ]

    if policy.aggregate("sensor_hourly") and any(u.name == "frank" for u in policy.users):
        out("\n== 7. Continuous aggregate: frank reads sensor_hourly, nothing raw")
        with connect(**user_params("frank")) as conn:
            rows = conn.execute(
                "SELECT bucket, sensor_id, round(avg_temperature, 2) FROM sensor_hourly"
                " ORDER BY bucket DESC, sensor_id LIMIT 3"
            ).fetchall()
            conn.rollback()
            for r in rows:
                out(f"   frank  sensor_hourly: {r[0]:%Y-%m-%d %H:%M} {r[1]} {r[2]}")
            check("frank reads sensor_hourly (real-time buckets included)", bool(rows))
            raw = _refused(conn, sql.SQL("SELECT * FROM sensor_readings LIMIT 1"))
            out(f"   frank  SELECT * FROM sensor_readings -> {raw or 'ALLOWED!'}")
            check("frank's raw query on sensor_readings is refused", raw is not None, raw or "")
            with connect(**admin_params) as admin:
                first = chunks(admin, "sensor_readings")[0]
            why = _refused(conn, sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.SQL(first)))
            out(f"   frank  SELECT * FROM {first} -> {why or 'ALLOWED!'}")
            check("frank's read of a sensor_readings chunk is refused", why is not None)

    sliced = [(r, s) for r in policy.roles for s in r.slices]
    carol = next((u for u in policy.users if u.name == "carol"), None)
    if sliced and carol is not None:
        out("\n== 8. Row slice: carol (department Sales) sees only Sales rows, by every path")
        with connect(**user_params("david")) as conn:  # a chunk created after apply
            conn.execute(
                "INSERT INTO financial_metrics (time, metric_type, amount, department) VALUES"
                " (now() + interval '90 days', 'forecast', 1, 'Ops'),"
                " (now() + interval '90 days', 'forecast', 2, 'Sales')"
            )
            conn.commit()
        with connect(**admin_params) as admin:
            fin_chunks = chunks(admin, "financial_metrics")
        with connect(**user_params("carol")) as conn:
            conn.execute("SET application_name = 'Ops'")  # not where the department comes from
            seen = conn.execute(
                "SELECT department, count(*) FROM financial_metrics GROUP BY 1 ORDER BY 1"
            ).fetchall()
            conn.rollback()
            out(f"   carol  SELECT department, count(*) FROM financial_metrics -> {seen}")
            check("carol sees only Sales rows", {r[0] for r in seen} == {"Sales"}, str(seen))
            for name in fin_chunks:
                why = _refused(conn, sql.SQL("SELECT * FROM {}").format(sql.SQL(name)))
                out(f"   carol  SELECT * FROM {name} -> {why or 'ALLOWED!'}")
                check(f"carol's direct read of chunk {name} is refused", why is not None)

    compressed = [t for t in policy.tables if t.compression is not None]
    if compressed and any(t.name == "sensor_readings" for t in compressed):
        out("\n== 9. Compression: bob's DML into compressed chunks, audited with exact counts")
        with connect(**admin_params, autocommit=True) as admin:
            n = admin.execute(
                "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM"
                " show_chunks('sensor_readings', older_than => interval '7 days') c"
            ).fetchone()
            out(f"   admin  compressed {n[0] if n else 0} chunk(s) older than 7 days")
        with connect(**user_params("bob")) as conn:
            upd = conn.execute(
                "UPDATE sensor_readings SET humidity = humidity + 1"
                " WHERE time < now() - interval '8 days' AND sensor_id = 'TEMP_1'"
            ).rowcount
            dele = conn.execute(
                "DELETE FROM sensor_readings WHERE time < now() - interval '8 days'"
                " AND sensor_id = 'TEMP_2'"
            ).rowcount
            conn.commit()
        with connect(**admin_params) as admin:
            got = admin.execute(
                sql.SQL(
                    "SELECT operation, row_count FROM {} WHERE username = 'bob' AND operation"
                    " IN ('UPDATE', 'DELETE') ORDER BY id DESC LIMIT 2"
                ).format(audit_t)
            ).fetchall()
        out(f"   bob    UPDATE {upd} row(s), DELETE {dele} row(s); audit: {sorted(got)}")
        check(
            "DML on compressed chunks is audited with exact counts",
            sorted(got) == [("DELETE", dele), ("UPDATE", upd)] and upd > 0 and dele > 0,
            str(got),
        )

    retained = [t for t in policy.tables if t.retention is not None]
    if retained:
        t = retained[0]
        assert t.retention is not None
        out(f"\n== 10. Retention: {t.name}'s job drops chunks older than {t.retention.drop_after}")
        target = sql.Identifier(schema, t.name)
        with connect(**admin_params, autocommit=True) as admin:
            admin.execute(
                sql.SQL(
                    "INSERT INTO {} ({}, sensor_id) VALUES (now() - {}::interval * 1.2, 'old')"
                ).format(target, sql.Identifier(t.time_column or "time"), t.retention.drop_after)
                if t.name == "sensor_readings"
                else sql.SQL("SELECT 1")
            )
            job = admin.execute(
                "SELECT job_id FROM timescaledb_information.jobs"
                " WHERE proc_name = 'tsaccess_retention' AND config->>'table' = %s",
                (t.name,),
            ).fetchone()
            if job is not None:
                admin.execute("CALL run_job(%s)", (job[0],))
            rows = admin.execute(
                sql.SQL(
                    "SELECT description, row_count FROM {} WHERE operation = 'DROP CHUNK'"
                    " ORDER BY id"
                ).format(audit_t)
            ).fetchall()
        for desc, count in rows:
            out(f"   audit  {desc} ({count} row(s))")
        check(
            "the retention job's chunk drop is in the audit trail",
            job is not None and any(f"by retention job {job[0]}" in r[0] for r in rows),
            str(rows),
        )
