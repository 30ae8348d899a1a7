"""verify never counts an error as an answer: a try that times out or loses its connection
proves nothing, and the report and the exit code say so."""

from __future__ import annotations

import json

from tests.helpers import apply_company
from tests.integration.test_cli import POLICY_TEXT, dsn, run
from tsaccess.passwords import write_pgpass
from tsaccess.verify import verify


def test_lock_timeout_is_an_error_not_allowed(db):
    company = apply_company(db)
    with db.admin() as locker:
        # EXCLUSIVE: reads (the catalog, SELECT) pass, every write waits
        locker.execute("LOCK TABLE financial_metrics IN EXCLUSIVE MODE")
        with db.admin() as conn:
            matrix = verify(
                conn,
                company.policy,
                company.passwords,
                lock_timeout="100ms",
                **company.user_params(),
            )
        locker.rollback()
    assert not matrix.ok
    busy = [c for c in matrix.cells if c.object == "financial_metrics" and c.privilege != "SELECT"]
    users = len(company.policy.users)  # each tried 4 writes (6 users: the monitor too)
    assert len(busy) == 4 * users == 24
    for c in busy:  # david may do everything there, yet nothing was proved
        assert c.error and c.actual is None and not c.ok, c
        assert c.detail.startswith("55P03"), c.detail
    assert set(matrix.errors) == set(busy)
    text = matrix.to_text()
    assert f"{4 * users} check(s) ended in an error" in text
    assert "!! david INSERT on financial_metrics: error (55P03" in text
    assert json.loads(matrix.to_json())["errors"] == 4 * users
    # the other tables were tried normally
    assert matrix.cell("david", "financial_metrics", "SELECT").actual is True
    assert matrix.cell("alice", "sensor_readings", "SELECT").actual is True
    assert matrix.cell("alice", "sensor_readings", "DELETE").actual is False


def test_cli_verify_exits_1_when_a_check_errs(db, tmp_path):
    company = apply_company(db)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY_TEXT.replace('name = "company_db"', f'name = "{db.name}"'))
    pwfile = write_pgpass(tmp_path / "pw", company.passwords)
    args = ["verify", "--dsn", dsn(db), "--policy", str(policy_file), "--passwords-file"]
    run(*args, str(pwfile), check_code=0)
    with db.admin() as locker:
        locker.execute("LOCK TABLE sensor_readings IN EXCLUSIVE MODE")
        res = run(*args, str(pwfile), "--lock-timeout", "50ms", check_code=1)
        locker.rollback()
    assert "ERROR !!" in res.stdout
    assert "check(s) ended in an error" in res.stdout
