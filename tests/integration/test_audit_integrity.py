"""The tamper-evident audit trail, attacked as a superuser on the real server.

One database for the module (examples/timescale.toml: a hypertable audited per statement with
compression and an audited retention job, one audited per row): audited writes of every kind,
a DENIED event, a retention drop, a DELETE on a compressed chunk, then one seal. Each attack
changes the sealed trail, `tsaccess audit prove` must exit 1 and name the kind, and putting the
exact rows back must make it exit 0 again (each test restores what it changed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.helpers import Company, apply_company, quiesce_jobs
from tsaccess import AuditChainError, audit
from tsaccess.cli.main import main
from tsaccess.policy import Policy, load_policy

pytestmark = pytest.mark.timescaledb

EXAMPLE = Path(__file__).parents[2] / "examples" / "timescale.toml"


@dataclass
class Trail:
    company: Company
    policy: Policy
    policy_file: Path
    key: Path
    pub: Path
    checkpoints: Path
    dsn: str

    def admin(self) -> psycopg.Connection[Any]:
        return self.company.db.admin(autocommit=True)

    def cli(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
        """Run ``tsaccess audit <args>`` in-process: (exit code, JSON output or None, stderr)."""
        capsys.readouterr()
        code = main(
            ["audit", *args, "--dsn", self.dsn, "--policy", str(self.policy_file), "--json"]
        )
        out, err = capsys.readouterr()
        return code, json.loads(out) if out.strip() else None, err

    def prove(self, capsys: pytest.CaptureFixture[str], **kw: str) -> tuple[int, Any, str]:
        extra = [x for k, v in kw.items() for x in (f"--{k}", v)]
        args = ["prove", "--checkpoints", str(self.checkpoints), "--pubkey", str(self.pub)]
        return self.cli(*args, *extra, capsys=capsys)


def _write(company: Company) -> None:
    """Audited writes of every kind the trail records."""
    with company.connect("bob") as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature, department)"
            " SELECT now() - i * interval '1 minute', 's' || (i % 7), 20 + i % 5, 'Ops'"
            " FROM generate_series(1, 500) i"
        )
        conn.execute("UPDATE sensor_readings SET temperature = 30 WHERE sensor_id = 's1'")
        conn.execute("DELETE FROM sensor_readings WHERE sensor_id = 's2'")
        with conn.cursor().copy("COPY sensor_readings (time, sensor_id) FROM STDIN") as cp:
            cp.write("2026-01-01 00:00:00+00\ts-copy\n")
        # old rows: one range for compression, one for the retention job
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature)"
            " SELECT now() - interval '30 days' - i * interval '1 minute', 'old' || (i % 3), 1"
            " FROM generate_series(1, 60) i"
        )
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id) VALUES (now() - interval '400 days', 'x')"
        )
        conn.commit()
        assert audit.record_denied(conn, "SELECT * FROM financial_metrics", "pre-flight: no SELECT")
    with company.connect("david") as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount, department)"
            " SELECT now(), 'm' || i, i, 'Sales' FROM generate_series(1, 40) i"
        )
        conn.execute("UPDATE financial_metrics SET amount = amount * 2 WHERE amount < 10")
        conn.execute("DELETE FROM financial_metrics WHERE amount > 35")
        conn.commit()
    with company.db.admin(autocommit=True) as admin:
        quiesce_jobs(admin)
        admin.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('sensor_readings',"
            " older_than => interval '20 days', newer_than => interval '60 days') c"
        )
        job = admin.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'tsaccess_retention'"
        ).fetchone()
        assert job is not None
        admin.execute("CALL run_job(%s)", (job[0],))
    with company.connect("bob") as conn:  # DELETE on a compressed chunk: the counting trigger
        conn.execute("DELETE FROM sensor_readings WHERE sensor_id = 'old1'")
        conn.commit()


@pytest.fixture(scope="module")
def trail(module_db: Any, tmp_path_factory: pytest.TempPathFactory) -> Trail:
    policy = load_policy(EXAMPLE).with_database(module_db.name)
    company = apply_company(module_db, policy)
    _write(company)
    tmp = tmp_path_factory.mktemp("integrity")
    policy_file = tmp / "policy.toml"
    policy_file.write_text(EXAMPLE.read_text().replace('"company_db"', f'"{module_db.name}"'))
    pair = audit.keygen(tmp / "key")
    dsn = make_conninfo(**module_db.params())
    return Trail(company, policy, policy_file, pair.private, pair.public, tmp / "checkpoints", dsn)


@pytest.fixture(scope="module")
def sealed(trail: Trail) -> Trail:
    with trail.admin() as conn:
        audit.seal(conn, trail.policy, key=trail.key, out=trail.checkpoints)
    return trail


@contextmanager
def _saved(conn: psycopg.Connection[Any], name: str, query: str) -> Iterator[None]:
    """Copy the rows of ``query`` into a table ``name`` (to put them back exactly), then drop it."""
    conn.execute(f"CREATE TEMP TABLE {name} AS {query}")
    try:
        yield
    finally:
        conn.execute(f"DROP TABLE {name}")


def _restore_rows(conn: psycopg.Connection[Any], saved: str) -> None:
    conn.execute(f"INSERT INTO activity_audit OVERRIDING SYSTEM VALUE SELECT * FROM {saved}")


def test_a_seal_covers_every_kind_of_audit_row_and_prove_says_intact(trail, capsys):
    code, out, err = trail.cli(
        "seal", "--key", str(trail.key), "--out", str(trail.checkpoints), capsys=capsys
    )
    assert code == 0, err
    with trail.admin() as conn:
        ops = {r[0] for r in conn.execute("SELECT DISTINCT operation FROM activity_audit")}
        rows = conn.execute("SELECT count(*) FROM activity_audit").fetchone()[0]
        records = conn.execute("SELECT count(*) FROM tsaccess_audit.financial_metrics").fetchone()[
            0
        ]
        modes = {
            r[0]
            for r in conn.execute(
                "SELECT description FROM activity_audit WHERE operation = 'DROP CHUNK'"
            )
        }
    assert {"INSERT", "UPDATE", "DELETE", "DENIED", "DROP CHUNK"} <= ops
    assert any("by retention job" in d for d in modes)  # a data chunk dropped by retention
    cp = out["checkpoint"]
    assert (cp["rows"], cp["records"]) == (rows, records) and records == 40 + 9 + 5
    assert cp["position"] == rows + 3  # david's three statements each have one data group
    assert out["waiting_rows"] == 0
    code, proof, err = trail.prove(capsys)
    assert code == 0, err
    assert proof["intact"] and proof["breaks"] == [] and proof["position"] == cp["position"]


def _first_break(proof: Any) -> tuple[str, int | None, str]:
    b = proof["breaks"][0]
    return b["kind"], b["position"], b["detail"]


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_an_edited_audit_row_is_changed_until_put_back(sealed, capsys):
    with sealed.admin() as conn:
        aid, desc = conn.execute(
            "SELECT id, description FROM activity_audit WHERE operation = 'DENIED'"
        ).fetchone()
        conn.execute("UPDATE activity_audit SET description = 'nothing' WHERE id = %s", (aid,))
        code, proof, _ = sealed.prove(capsys)
        assert code == 1 and not proof["intact"]
        kind, _, detail = _first_break(proof)
        assert kind == "changed" and f"audit row id {aid} " in detail
        conn.execute("UPDATE activity_audit SET description = %s WHERE id = %s", (desc, aid))
    assert sealed.prove(capsys)[0] == 0


def test_a_deleted_audit_row_is_missing_until_put_back(sealed, capsys):
    """The row of a retention drop of a data chunk is in the chain like any other."""
    with (
        sealed.admin() as conn,
        _saved(conn, "gone", "SELECT * FROM activity_audit WHERE operation = 'DROP CHUNK'"),
    ):
        conn.execute("DELETE FROM activity_audit WHERE operation = 'DROP CHUNK'")
        code, proof, _ = sealed.prove(capsys)
        assert code == 1
        kind, position, _ = _first_break(proof)
        assert kind == "missing" and position is not None
        _restore_rows(conn, "gone")
    assert sealed.prove(capsys)[0] == 0


def test_a_forged_row_with_the_same_id_is_changed_until_put_back(sealed, capsys):
    with sealed.admin() as conn:
        aid = _one(conn, "SELECT min(id) FROM activity_audit WHERE operation = 'UPDATE'")
        with _saved(conn, "original", f"SELECT * FROM activity_audit WHERE id = {aid}"):
            conn.execute("DELETE FROM activity_audit WHERE id = %s", (aid,))
            conn.execute(
                "INSERT INTO activity_audit OVERRIDING SYSTEM VALUE"
                " SELECT id, event_time, 'alice', operation, table_name, description,"
                " effective_role, txid, client_addr, application_name, actor, request_id,"
                " row_count, client_asserted FROM original"
            )
            code, proof, _ = sealed.prove(capsys)
            assert code == 1
            kind, _, detail = _first_break(proof)
            assert kind == "changed" and f"audit row id {aid} " in detail
            conn.execute("DELETE FROM activity_audit WHERE id = %s", (aid,))
            _restore_rows(conn, "original")
    assert sealed.prove(capsys)[0] == 0


def test_an_edited_per_row_record_is_changed_until_put_back(sealed, capsys):
    with sealed.admin() as conn:
        chunk, ctid = conn.execute(
            "SELECT tableoid::regclass::text, ctid::text FROM tsaccess_audit.financial_metrics"
            " WHERE new_data IS NOT NULL LIMIT 1"
        ).fetchone()
        with _saved(conn, "record", f"SELECT * FROM {chunk} WHERE ctid = '{ctid}'"):
            conn.execute(
                f"UPDATE {chunk} SET new_data.amount = 1000000 WHERE ctid = %s::tid", (ctid,)
            )
            code, proof, _ = sealed.prove(capsys)
            assert code == 1
            kind, _, detail = _first_break(proof)
            assert kind == "changed" and "per-row data in financial_metrics" in detail
            conn.execute(
                "DELETE FROM tsaccess_audit.financial_metrics d USING record r"
                " WHERE d.audit_id = r.audit_id AND (d.new_data).amount = 1000000"
            )
            conn.execute("INSERT INTO tsaccess_audit.financial_metrics SELECT * FROM record")
    assert sealed.prove(capsys)[0] == 0


def test_a_forged_per_row_record_is_inserted_until_removed(sealed, capsys):
    """A record attached to a sealed statement-mode row (which never had per-row data)."""
    with sealed.admin() as conn:
        aid, at = conn.execute(
            "SELECT id, event_time FROM activity_audit WHERE table_name = 'sensor_readings'"
            " AND operation = 'INSERT' ORDER BY id LIMIT 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO tsaccess_audit.financial_metrics (audit_id, event_time, new_data)"
            " SELECT %s, %s, new_data FROM tsaccess_audit.financial_metrics"
            " WHERE new_data IS NOT NULL LIMIT 1",
            (aid, at),
        )
        code, proof, _ = sealed.prove(capsys)
        assert code == 1
        kind, _, detail = _first_break(proof)
        assert kind == "inserted" and f"financial_metrics of audit row id {aid} " in detail
        conn.execute("DELETE FROM tsaccess_audit.financial_metrics WHERE audit_id = %s", (aid,))
    assert sealed.prove(capsys)[0] == 0


def test_dropped_audit_chunks_and_a_truncated_audit_table_are_truncated_until_put_back(
    sealed, capsys
):
    with sealed.admin() as conn, _saved(conn, "everything", "SELECT * FROM activity_audit"):
        chunks = conn.execute(
            "SELECT drop_chunks('activity_audit', older_than => now() + interval '10 years')"
        ).fetchall()
        assert chunks
        code, proof, _ = sealed.prove(capsys)
        assert code == 1 and _first_break(proof)[:2] == ("truncated", 0)
        # the per-row data left behind belongs to no audit row: named too
        assert any("belong to no audit row" in b["detail"] for b in proof["breaks"])
        _restore_rows(conn, "everything")
        assert sealed.prove(capsys)[0] == 0
        conn.execute("TRUNCATE activity_audit")
        code, proof, _ = sealed.prove(capsys)
        assert code == 1 and _first_break(proof)[:2] == ("truncated", 0)
        _restore_rows(conn, "everything")
    assert sealed.prove(capsys)[0] == 0


def test_a_changed_checkpoint_another_key_or_another_database_get_no_verdict(
    sealed, capsys, tmp_path, db
):
    # one changed byte, in each part of the file: refused (2), never "tampered" or "intact"
    original = sorted(sealed.checkpoints.iterdir())[-1]
    raw = original.read_bytes()
    for at in (
        raw.index(b'"head":"') + 9,
        raw.index(b'"rows":') + 7,
        raw.index(b"signature") + 13,
        0,
        len(raw) - 1,
    ):
        copy = tmp_path / f"byte{at}"
        copy.mkdir()
        changed = bytearray(raw)
        changed[at] = changed[at] ^ 0x01
        (copy / original.name).write_bytes(bytes(changed))
        code, _, err = sealed.prove(capsys, checkpoints=str(copy))
        assert code == 2 and "refused" in err, (at, err)
    other = audit.keygen(tmp_path / "other")
    code, _, err = sealed.prove(capsys, pubkey=str(other.public))
    assert code == 2 and "signed with key" in err
    # the same checkpoints against another database (policy users' passwords are cluster-wide:
    # nothing is applied there, the identity is refused before anything is read)
    with db.admin() as conn, pytest.raises(AuditChainError, match="not of this database"):
        audit.prove(
            conn,
            sealed.policy.with_database(db.name),
            checkpoints=sealed.checkpoints,
            public_key=sealed.pub,
        )
    # and a seal refuses to mix databases in one directory
    with db.admin() as conn, pytest.raises(AuditChainError, match="one directory per"):
        audit.seal(
            conn, sealed.policy.with_database(db.name), key=sealed.key, out=sealed.checkpoints
        )


def test_rows_of_running_transactions_are_sealed_later_never_skipped_nor_reordered(sealed):
    with (
        sealed.company.connect("bob") as early,
        sealed.company.connect("bob") as late,
        sealed.admin() as admin,
    ):
        early.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'early')")
        x_early = _one(early, "SELECT txid_current()")
        late.execute("INSERT INTO sensor_readings (time, sensor_id) VALUES (now(), 'late')")
        late.commit()  # committed, but its transaction started after one still running
        x_late = _one(admin, "SELECT max(txid) FROM activity_audit")
        assert x_late > x_early
        held = audit.seal(admin, sealed.policy, key=sealed.key, out=sealed.checkpoints)
        assert held.checkpoint.hi_txid <= x_early and held.waiting_rows == 1
        assert held.oldest_running is not None
        early.commit()
        done = audit.seal(admin, sealed.policy, key=sealed.key, out=sealed.checkpoints)
        assert done.waiting_rows == 0 and done.checkpoint.hi_txid > x_late
        assert done.checkpoint.position == held.checkpoint.position + 2
        # sealing order: the lower transaction id first, the positions before stay as they were
        block = admin.execute(
            "SELECT lo_txid, hi_txid, leaf_count FROM tsaccess_audit.tsaccess_chain"
            " ORDER BY block DESC LIMIT 1"
        ).fetchone()
        assert block[0] <= x_early < x_late < block[1] and block[2] == 2
    proof = audit.prove(
        sealed.admin(), sealed.policy, checkpoints=sealed.checkpoints, public_key=sealed.pub
    )
    assert proof.intact and proof.position == done.checkpoint.position


def test_the_database_job_seals_and_a_later_checkpoint_covers_its_blocks(sealed, capsys):
    with sealed.company.connect("david") as conn:
        conn.execute(
            "INSERT INTO financial_metrics (time, metric_type, amount) VALUES (now(), 'job', 1)"
        )
        conn.commit()
    with sealed.admin() as conn:
        job = _one(
            conn,
            "SELECT add_job('public.tsaccess_audit_seal_job', '1 day', scheduled => false)",
        )
        before = _one(conn, "SELECT max(block) FROM tsaccess_audit.tsaccess_chain")
        conn.execute("CALL run_job(%s)", (job,))
        after = _one(conn, "SELECT max(block) FROM tsaccess_audit.tsaccess_chain")
        conn.execute("SELECT delete_job(%s)", (job,))
    assert after == before + 1
    code, out, err = sealed.cli(
        "seal", "--key", str(sealed.key), "--out", str(sealed.checkpoints), capsys=capsys
    )
    assert code == 0, err
    assert out["new_blocks"] == [] and out["checkpoint"]["block"] == after
    code, proof, err = sealed.prove(capsys)
    assert code == 0 and proof["intact"], err


def _quote(value: bytes | None) -> bytes:
    """A field of PostgreSQL's composite text (docs/audit-integrity.md, "The encoding")."""
    if value is None:
        return b""
    if value == b"" or any(c in value for c in b'"\\(),\t\n\v\f\r '):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'""') + b'"'
    return value


def _independent_head(params: dict[str, Any], checkpoint: dict[str, Any]) -> bytes:
    """The head of a checkpoint's block, recomputed from the spec with psycopg and hashlib only
    (no tsaccess code): raw text values from libpq, quoting, hashing and ordering by hand."""
    import hashlib
    import struct

    sha = hashlib.sha256

    def rows(conn: psycopg.Connection[Any], query: str, args: tuple[Any, ...]) -> list[list[Any]]:
        res = conn.execute(query, args).pgresult
        assert res is not None
        return [[res.get_value(i, j) for j in range(res.nfields)] for i in range(res.ntuples)]

    with psycopg.connect(**params, autocommit=True) as conn:
        for name, value in (
            ("TimeZone", "UTC"),
            ("DateStyle", "ISO, YMD"),
            ("IntervalStyle", "postgres"),
            ("extra_float_digits", "1"),
            ("bytea_output", "hex"),
            ("lc_monetary", "C"),
        ):
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        blocks = conn.execute(
            "SELECT block, first_position, lo_txid, hi_txid, columns"
            " FROM tsaccess_audit.tsaccess_chain WHERE block <= %s ORDER BY block",
            (checkpoint["block"],),
        ).fetchall()
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'tsaccess_audit' AND c.relkind IN ('r', 'p') AND"
                " (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0"
                "  AND NOT a.attisdropped AND a.attname IN"
                "  ('audit_id', 'event_time', 'old_data', 'new_data')) = 4"
            )
        ]
        head = bytes(32)
        for block, first, lo, hi, columns in blocks:
            entries = []  # (txid, id, kind, table, leaf)
            cols = ", ".join(f'a."{c}"' for c in columns)
            for r in rows(
                conn,
                f"SELECT a.txid, a.id, {cols} FROM public.activity_audit a"
                " WHERE a.txid >= %s AND a.txid < %s",
                (lo, hi),
            ):
                text = b"(" + b",".join(_quote(v) for v in r[2:]) + b")"
                entries.append((int(r[0]), int(r[1]), 0, b"", sha(b"\x00" + text).digest()))
            records = 0
            for t in tables:
                groups: dict[tuple[int, int, bytes], list[bytes]] = {}
                for r in rows(
                    conn,
                    f'SELECT a.txid, a.id, a.event_time, d.old_data, d.new_data FROM tsaccess_audit."{t}" d'
                    " JOIN public.activity_audit a ON a.id = d.audit_id AND a.event_time = d.event_time"
                    " WHERE a.txid >= %s AND a.txid < %s",
                    (lo, hi),
                ):
                    # trailing NULL attributes dropped: "(1,2,,)" -> "(1,2)"
                    strip = [None if v is None else v[:-1].rstrip(b",") + b")" for v in r[3:]]
                    text = b"(" + b",".join(_quote(v) for v in strip) + b")"
                    groups.setdefault((int(r[0]), int(r[1]), r[2]), []).append(sha(text).digest())
                for (txid, aid, _), hashes in groups.items():
                    records += len(hashes)
                    leaf = sha(
                        b"\x01"
                        + t.encode()
                        + b"\x00"
                        + str(aid).encode()
                        + b"\x00"
                        + b"".join(sorted(hashes))
                    ).digest()
                    entries.append((txid, aid, 1, t.encode(), leaf))
            entries.sort()
            leaves = b"".join(e[4] for e in entries)
            meta = (
                b"tsaccess-audit-chain/1"
                + struct.pack(
                    ">7q",
                    block,
                    first,
                    len(entries),
                    sum(1 for e in entries if e[2] == 0),
                    records,
                    lo,
                    hi,
                )
                + b"".join(struct.pack(">i", len(c.encode())) + c.encode() for c in columns)
            )
            head = sha(head + sha(meta).digest() + sha(leaves).digest()).digest()
    return head


def test_the_documented_encoding_recomputes_a_head_with_psycopg_and_hashlib(sealed):
    newest = sorted(sealed.checkpoints.iterdir())[-1]
    checkpoint = json.loads(newest.read_text())
    head = _independent_head(sealed.company.db.params(), checkpoint)
    assert head.hex() == checkpoint["head"]


def test_a_period_is_proved_from_a_start_checkpoint_once_older_rows_are_gone(sealed, capsys):
    """Retention of the audit trail itself: rows sealed before the start checkpoint (and their
    per-row data) removed; from genesis that is a break, from the start checkpoint it is not."""
    with sealed.company.connect("david") as conn:
        conn.execute("INSERT INTO financial_metrics (time, metric_type) VALUES (now(), 'later')")
        conn.commit()
    with sealed.admin() as conn:
        newest = audit.seal(conn, sealed.policy, key=sealed.key, out=sealed.checkpoints)
        start = next(
            p
            for p in sorted(sealed.checkpoints.iterdir(), reverse=True)
            if json.loads(p.read_text())["block"] < newest.checkpoint.block
        )
        hi = json.loads(start.read_text())["hi_txid"]
        old_data = (
            "SELECT d.* FROM tsaccess_audit.financial_metrics d JOIN activity_audit a"
            f" ON a.id = d.audit_id AND a.event_time = d.event_time WHERE a.txid < {hi}"
        )
        with (
            _saved(conn, "old_rows", f"SELECT * FROM activity_audit WHERE txid < {hi}"),
            _saved(conn, "old_data", old_data),
        ):
            conn.execute(
                "DELETE FROM tsaccess_audit.financial_metrics d USING old_data o"
                " WHERE d.audit_id = o.audit_id AND d.event_time = o.event_time"
            )
            conn.execute("DELETE FROM activity_audit WHERE txid < %s", (hi,))
            code, proof, _ = sealed.prove(capsys)
            assert code == 1 and _first_break(proof)[:2] == ("missing", 0)
            code, proof, err = sealed.prove(capsys, start=str(start))
            assert code == 0, err
            assert proof["checkpoints"] and all(
                json.loads((sealed.checkpoints / n).read_text())["block"]
                > json.loads(start.read_text())["block"]
                for n in proof["checkpoints"]
            )
            _restore_rows(conn, "old_rows")
            conn.execute("INSERT INTO tsaccess_audit.financial_metrics SELECT * FROM old_data")
    assert sealed.prove(capsys)[0] == 0


def test_no_policy_user_may_seal_or_touch_the_chain(sealed):
    """Every user of the policy, against every chain routine and the chain table (from the
    catalog): seal, run the job, read, write, delete, truncate — all refused."""
    with sealed.admin() as conn:
        routines = conn.execute(
            "SELECT p.oid::regproc::text, p.prokind FROM pg_proc p"
            " WHERE p.proname LIKE 'tsaccess\\_audit\\_seal%'"
        ).fetchall()
    assert len(routines) == 2
    attempts = [
        "SELECT * FROM tsaccess_audit.tsaccess_chain",
        "UPDATE tsaccess_audit.tsaccess_chain SET head = head",
        "DELETE FROM tsaccess_audit.tsaccess_chain",
        "TRUNCATE tsaccess_audit.tsaccess_chain",
        *(
            f"CALL {r}(1, '{{}}')" if kind == "p" else f"SELECT * FROM {r}()"
            for r, kind in routines
        ),
    ]
    for user in (u.name for u in sealed.policy.users):
        with sealed.company.connect(user, autocommit=True) as conn:
            for statement in attempts:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)


def test_compressed_audit_chunks_prove_the_same_and_still_show_an_edit(sealed, capsys):
    """Runs last: it leaves the audit table and the per-row data compressed."""
    with sealed.admin() as conn:
        for table in ("activity_audit", "tsaccess_audit.financial_metrics"):
            conn.execute(f"ALTER TABLE {table} SET (timescaledb.compress)")
            assert conn.execute(
                f"SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('{table}') c"
            ).fetchall()
        assert sealed.prove(capsys)[0] == 0
        aid, count = conn.execute(
            "SELECT id, row_count FROM activity_audit ORDER BY id LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE activity_audit SET row_count = -1 WHERE id = %s", (aid,))
        code, proof, _ = sealed.prove(capsys)
        assert code == 1 and _first_break(proof)[0] == "changed"
        conn.execute("UPDATE activity_audit SET row_count = %s WHERE id = %s", (count, aid))
    assert sealed.prove(capsys)[0] == 0
