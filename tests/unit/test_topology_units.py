"""Host lists, pooler scoping statements and targets files: checks that need no server."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import tsaccess
from tsaccess.client.hosts import check_host_list
from tsaccess.client.pooler import check_pooler, scope_statement
from tsaccess.plan.targets import Target, load_targets, targets_from_dsns


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"host": "db1,/var/run/postgresql"}, "entry 2 of the host list '/var/run/postgresql'"),
        ({"host": "@abstract,db2"}, "entry 1 .* Unix socket"),
        ({"host": "db1,,db3"}, "entry 2 .* empty"),
        ({"host": "db1, "}, "entry 2 .* empty"),
    ],
)
def test_host_list_with_a_socket_entry_is_refused(params: dict[str, str], match: str) -> None:
    with pytest.raises(tsaccess.InsecureConnectionError, match=match):
        check_host_list(params)


def test_host_list_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "db1,/tmp")
    with pytest.raises(tsaccess.InsecureConnectionError, match="entry 2"):
        check_host_list({})
    monkeypatch.setenv("PGTARGETSESSIONATTRS", "readwrite")
    with pytest.raises(tsaccess.TsaccessError, match="read-write"):
        check_host_list({"host": "db1"})


def test_host_lists_that_pass() -> None:
    check_host_list({"host": "db1,db2", "port": "5432"})
    check_host_list({"host": "db1,db2", "port": "5432,5433", "target_session_attrs": "standby"})
    check_host_list({"host": ",", "hostaddr": "10.0.0.1,10.0.0.2"})  # TCP by address
    check_host_list({"host": "/var/run/postgresql"})  # one host: checked after connecting


@pytest.mark.parametrize(
    "params",
    [
        {"host": "db1,db2,db3", "port": "1,2"},
        {"host": "db1,db2", "hostaddr": "10.0.0.1"},
    ],
)
def test_host_lists_that_do_not_line_up(params: dict[str, str]) -> None:
    with pytest.raises(tsaccess.TsaccessError, match="entries"):
        check_host_list(params)


def test_connect_refuses_a_socket_in_the_list_before_any_packet() -> None:
    # port 1 on loopback: nothing listens, so any attempt would be an OperationalError
    with pytest.raises(tsaccess.InsecureConnectionError):
        tsaccess.connect(host="127.0.0.1,/tmp", port="1", user="x", password="y")


def test_scope_statement_quotes_role_and_actor() -> None:
    evil = "x'); SELECT pg_sleep(10); --"
    text = scope_statement(evil, {"tsaccess.actor": evil}).as_string(None)
    assert text.startswith("SELECT pg_catalog.set_config('role', ")
    assert text.count("'x''); SELECT pg_sleep(10); --'") == 2  # literals, doubled quotes
    assert "set_config('tsaccess.request_id', '', true)" in text  # always reset
    assert "'role', 'none', true" in scope_statement(None, {}).as_string(None)


def test_check_pooler() -> None:
    assert check_pooler(None) is None
    assert check_pooler(" PgBouncer ") == "pgbouncer"
    with pytest.raises(tsaccess.RoleScopeError, match="unknown pooler"):
        check_pooler("odyssey")


def test_targets_file(tmp_path: Path) -> None:
    f = tmp_path / "targets.toml"
    f.write_text(
        '[[targets]]\nname = "eu"\ndsn = "host=db-eu dbname=m password=secret-pw"\n\n'
        '[[targets]]\ndsn = "host=db-us port=6432 dbname=m"\n'
    )
    found = load_targets(f)
    assert [t.name for t in found] == ["eu", "db-us:6432/m"]
    assert "secret-pw" not in repr(found)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("x = 1\n", r"\[\[targets\]\]"),
        ("[[targets]]\nname = 'a'\n", "no dsn"),
        ("[[targets]]\ndsn = 'host=a'\nuser = 'b'\n", "unknown key"),
        ("[[targets]]\ndsn = 'host=a'\n[[targets]]\ndsn = 'host=a'\n", "appears twice"),
        ("[[targets]\n", "not valid TOML"),
        ("targets = []\n", "no targets"),
        ('[[targets]]\ndsn = "host=\'a password=pw"\n', "could not be parsed"),
    ],
)
def test_bad_targets_files(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "targets.toml"
    f.write_text(text)
    with pytest.raises(tsaccess.TargetsError, match=match) as err:
        load_targets(f)
    assert "pw" not in str(err.value).replace("password)", "")


def test_targets_from_dsns_and_database() -> None:
    found = targets_from_dsns(["host=a dbname=one", "host=b"])
    assert [t.name for t in found] == ["a/one", "b/(policy database)"]
    assert isinstance(found[0], Target)
    with pytest.raises(tsaccess.TargetsError, match=r"missing\.toml"):
        load_targets("missing.toml")


def _policy_text(also: str) -> str:
    return (
        f'[database]\nname = "d"\nalso_connect = {also}\n'
        '[tables.t]\ncolumns = { id = "integer" }\n'
        '[roles.r]\ngrants = { t = ["SELECT"] }\n'
        '[users.u]\nroles = ["r"]\n'
    )


def test_policy_also_connect() -> None:
    from tsaccess.policy import parse_policy

    p = parse_policy(tomllib.loads(_policy_text('["tsaccess_pgbouncer"]')))
    assert p.also_connect == ("tsaccess_pgbouncer",)
    for bad, match in (
        ('"tsaccess_pgbouncer"', "a list of names"),
        ('["pg_monitor"]', "reserved"),
        ('["u"]', "outside the policy"),
        ('["r"]', "outside the policy"),
        ("[1]", "a string"),
    ):
        with pytest.raises(tsaccess.PolicyError, match=match) as err:
            parse_policy(tomllib.loads(_policy_text(bad)))
        assert "also_connect" in str(err.value)
