"""Pre-flight against the server, on the example policies, as every example user: a corpus
written to break it (tests/preflight_corpus.py, with generated variants).

The server is the oracle: each statement runs as the user in a transaction that is rolled back.
Asserted: no false refusal (pre-flight refuses only what the server refuses), no crash, and
pre-flight catches at least 95 % of the server's privilege refusals before sending (the
figures are printed). A statement pre-flight allows and the server refuses must be one it
could not decide otherwise ("allowed" only with a caveat naming what the server checks).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import apply_company
from tests.preflight_corpus import CORPUS, EXTRA_OBJECTS, mutations
from tsaccess.policy.loading import load_policy
from tsaccess.preflight import Checker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MUTANTS = 160


def _oracle(conn: psycopg.Connection[Any], stmt: str) -> str:
    """What the server does: ``ran``, ``42501`` (privilege), ``rls`` (a row policy), ``42xxx``
    (refused while analysing, before privileges) or ``after`` (failed later). Rolled back."""
    try:
        if "COPY" in stmt.upper() and "STDOUT" in stmt.upper():
            with conn.cursor().copy(stmt) as cp:
                for _ in cp:
                    pass
        elif "$1" in stmt and "PREPARE" not in stmt:
            conn.execute(f"PREPARE tsaccess_probe AS {stmt}")
            conn.execute("EXECUTE tsaccess_probe(1)")
        else:
            conn.execute(stmt, ("s1",) if "%s" in stmt else None)
        return "ran"
    except psycopg.errors.InsufficientPrivilege as exc:
        return "rls" if "row-level security" in str(exc) else "42501"
    except psycopg.Error as exc:
        state = exc.sqlstate or "?"
        return state if state.startswith("42") else "after"
    finally:
        conn.rollback()
        conn.execute("DEALLOCATE ALL")  # PREPARE outlives the rollback
        conn.rollback()


def _statements(chunks: dict[str, str], cagg: bool) -> list[str]:
    out = []
    for stmt in CORPUS:
        if stmt.startswith("{cagg}"):
            if not cagg:
                continue
            stmt = stmt[len("{cagg}") :]
        for key in ("chunk_sr", "chunk_fm"):
            if stmt.startswith("{" + key + "}"):
                if key not in chunks:
                    break
                stmt = stmt[len(key) + 2 :].replace("{" + key + "}", chunks[key])
        else:
            out.append(stmt)
    return out + mutations([s for s in out if "_hyper_" not in s], MUTANTS)


def _run(policy_file: str, db: Any, capsys: Any) -> tuple[Counter, list[str], int]:
    policy = load_policy(EXAMPLES / policy_file)
    company = apply_company(db, policy)
    chunks: dict[str, str] = {}
    with db.admin(autocommit=True) as admin:
        admin.execute(EXTRA_OBJECTS)
        timescale = admin.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()[0]
        if timescale:
            for key, table in (("chunk_sr", "sensor_readings"), ("chunk_fm", "financial_metrics")):
                row = admin.execute(
                    "SELECT format('%%I.%%I', chunk_schema, chunk_name)"
                    " FROM timescaledb_information.chunks WHERE hypertable_name = %s LIMIT 1",
                    (table,),
                ).fetchone()
                if row:
                    chunks[key] = row[0]
        cagg = bool(
            admin.execute(
                "SELECT count(*) FROM pg_class WHERE relname = 'sensor_hourly'"
            ).fetchone()[0]
        )
    statements = _statements(chunks, cagg)
    counts: Counter = Counter()
    problems: list[str] = []
    shared: dict[Any, Any] = {}
    for user in [u.name for u in policy.users]:
        with company.connect(user) as conn:
            checker = Checker(conn)
            checker._analyses = shared  # the analysis does not depend on the user
            for stmt in statements:
                has_params = "%s" in stmt
                before = checker.disagreements
                try:
                    verdict = checker.check(
                        stmt, has_params=has_params, params=("s1",) if has_params else None
                    )
                except Exception as exc:  # a crash: counted, never hidden
                    problems.append(f"CRASH {user}: {stmt} -> {exc!r}")
                    counts["crash"] += 1
                    conn.rollback()
                    continue
                conn.rollback()
                if checker.disagreements > before:
                    counts[f"disagreement: {stmt[:100]}"] += 1
                server = _oracle(conn, stmt)
                counts[(verdict.status, server)] += 1
                if verdict.status == "denied" and server in ("ran", "after", "rls"):
                    problems.append(f"FALSE REFUSAL {user}: {stmt} -> {verdict} (server: {server})")
                if server == "42501" and verdict.status != "denied":
                    counts["missed"] += 1
                    counts[f"missed {verdict.status}: {stmt[:90]} ({verdict.reason[:80]})"] += 1
                    if verdict.status == "allowed" and not verdict.caveats:
                        problems.append(f"UNEXPLAINED ALLOW {user}: {stmt} -> {verdict}")
            counts["disagreements"] += checker.disagreements
    refused = sum(v for k, v in counts.items() if isinstance(k, tuple) and k[1] == "42501")
    caught = counts[("denied", "42501")]
    with capsys.disabled():
        print(
            f"\npre-flight corpus on {policy_file}: {len(statements)} statements x "
            f"{len(policy.users)} users; false refusals "
            f"{sum(p.startswith('FALSE') for p in problems)}, crashes {counts['crash']}; caught "
            f"{caught} of {refused} privilege refusals ({caught / max(refused, 1):.1%}); "
            f"disagreements {counts['disagreements']}; "
            + ", ".join(
                f"{k[0]}/{k[1]}={v}"
                for k, v in sorted(counts.items(), key=str)
                if isinstance(k, tuple)
            )
        )
        for k in sorted(
            k for k in counts if isinstance(k, str) and k.startswith(("missed ", "disagreement"))
        ):
            print(f"  {k} x{counts[k]}")
        for p in problems:
            print("  " + p)
    return counts, problems, refused


@pytest.mark.timescaledb
def test_timescale_policy_corpus(db, capsys):
    counts, problems, refused = _run("timescale.toml", db, capsys)
    assert problems == []
    assert counts[("denied", "42501")] >= 0.95 * refused


def test_company_policy_corpus(db, capsys):
    counts, problems, refused = _run("company.toml", db, capsys)
    assert problems == []
    assert counts[("denied", "42501")] >= 0.95 * refused


def test_corpus_is_large_and_covers_every_kind():
    statements = CORPUS + mutations([s for s in CORPUS if "{" not in s], MUTANTS)
    assert len(set(statements)) >= 300 + MUTANTS - 10
    for kind in [
        r"WITH RECURSIVE", r"WHERE false AND EXISTS", r"CASE WHEN false", r"NATURAL JOIN \(",
        r"USING \(department\)", r"pg_read_file", r"tsaccess_rls\.attribute", r"nextval",
        r"setval", r"FROM ticket_seq", r"::regclass", r"TO '/tmp", r"current_setting",
        r"FOR SHARE", r"INTO TEMP", r"-- .*\nEXPLAIN", r"AS e\(a, b\)", r"public\.\w+\.\w+ FROM",
        r"WINDOW w", r"SET \(amount\) = ROW", r"ROWS FROM", r"OVERRIDING", r"USING >",
        r"^SET ROLE", r"^LOCK", r"^CREATE TABLE", r"^ALTER", r"^DROP", r"^COMMENT",
        r"^PREPARE", r"EXECUTE", r"^DECLARE", r"^CREATE TEMP TABLE .* AS", r"; SELECT",
        r"search_path",
    ]:  # fmt: skip
        assert any(re.search(kind, s, re.M) for s in statements), kind
