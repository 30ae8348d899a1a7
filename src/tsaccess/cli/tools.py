"""``tsaccess check``, ``audit`` and ``certs``, and ``plan``/``apply``/``verify`` on several
targets (``--dsn`` repeated or ``--targets FILE``).

The helpers every command shares (admin connection, passwords, policy, JSON) come from
:mod:`tsaccess.cli` as a :class:`~tsaccess.cli.plan.Tools`, so this module does not import it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tsaccess.cli.plan import Fail, Tools
from tsaccess.errors import PasswordSourceError

__all__ = [
    "audit_command",
    "certs_command",
    "check_command",
    "many_targets",
    "targets_command",
    "user_params",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DENIED, EXIT_UNDECIDED = 0, 1, 2, 3, 4


def user_params(args: argparse.Namespace) -> dict[str, Any]:
    """Where users connect: the admin DSN's server settings without its login."""
    from tsaccess.client.params import without_login

    try:
        d = conninfo_to_dict(args.dsn or "")
    except psycopg.ProgrammingError:
        raise Fail("--dsn could not be parsed (not shown: it may contain a password)") from None
    return without_login(d)


def _user_password(args: argparse.Namespace, user: str, tools: Tools) -> str:
    from tsaccess.policy import password_env_var

    pw = tools.passwords(args, [user]).get(user)
    if pw is not None:
        return str(pw.reveal())
    if sys.stdin.isatty():
        return getpass.getpass(f"password for {user}: ")
    raise PasswordSourceError(
        f"no password for {user}: set {password_env_var(user)}, use --passwords-file, or run "
        "interactively to be prompted"
    )


def check_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess check``: the pre-flight verdict on one statement, as one user."""
    from tsaccess.client.connection import connect
    from tsaccess.preflight import check

    params = user_params(args)
    if args.dbname:
        params["dbname"] = args.dbname
    else:
        params["dbname"] = (
            conninfo_to_dict(args.dsn or "").get("dbname")
            or os.environ.get("PGDATABASE")
            or args.user
        )
    with connect(
        **params, user=args.user, password=_user_password(args, args.user, tools), role=args.role
    ) as conn:
        verdict = check(conn, args.sql)
    if args.json:
        tools.print_json(verdict.as_dict())
    else:
        print(verdict)
    return {"allowed": EXIT_OK, "denied": EXIT_DENIED}.get(verdict.status, EXIT_UNDECIDED)


def audit_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess audit``: the audit trail's reports, sessions and roles."""
    from tsaccess import monitoring
    from tsaccess.audit import reports as audit
    from tsaccess.client.connection import connect

    if args.what in ("keygen", "seal", "prove"):
        return _chain_command(args, tools)
    schema, table = "public", "activity_audit"
    if args.policy:
        policy = tools.policy(args)
        schema, table = policy.schema, policy.audit.table
    where = {"schema": args.schema or schema, "table": args.audit_table or table}
    with connect(args.dsn or "") as conn:
        if args.what == "recent":
            res: Any = audit.recent(conn, args.limit, **where)
        elif args.what == "changes":
            res = audit.changes(conn, args.table, since=args.since, limit=args.limit, **where)
        elif args.what == "summary":
            res = audit.summary(conn, args.since, **where)
        elif args.what == "activity":
            res = audit.activity(conn, args.bucket, args.since, **where)
        elif args.what == "sessions":
            res = monitoring.active_sessions(conn)
        else:
            res = monitoring.roles(conn)
    if args.json:
        tools.print_json(res.as_dicts())
    else:
        print(res.to_text())
    return EXIT_OK


def _chain_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess audit keygen|seal|prove``: 0 ok or intact, 1 tampered, 2 no verdict."""
    from tsaccess.audit import integrity
    from tsaccess.errors import AuditTamperedError, TsaccessError

    def need(value: Any, flag: str) -> Any:
        if value is None:
            raise Fail(f"audit {args.what} needs {flag}", EXIT_USAGE)
        return value

    try:
        if args.what == "keygen":
            res: Any = integrity.keygen(need(args.out, "--out KEY"))
            data, text, code = res.__dict__, f"wrote {res.private} and {res.public}", EXIT_OK
        else:
            need(args.policy, "--policy")
            policy = tools.policy(args)
            with tools.admin(args, policy.database) as conn:
                if args.what == "seal":
                    key, out = need(args.key, "--key KEY"), need(args.out, "--out DIR")
                    res = integrity.seal(conn, policy, key=key, out=out)
                    code = EXIT_OK
                else:
                    res = integrity.prove(
                        conn,
                        policy,
                        checkpoints=need(args.checkpoints, "--checkpoints DIR"),
                        public_key=need(args.pubkey, "--pubkey KEY.pub"),
                        start=args.start,
                    )
                    code = EXIT_OK if res.intact else EXIT_ERROR
            data, text = res.as_dict(), res.to_text()
    except AuditTamperedError as exc:
        print(f"tsaccess: tampered: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (TsaccessError, psycopg.Error, OSError) as exc:
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"tsaccess: error (no verdict): {msg}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        tools.print_json(data)
    else:
        print(text)
    return code


def certs_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess certs``: a CA and a server certificate signed by it."""
    from tsaccess.client.tls import DEFAULT_HOSTS, create_certificates

    paths = create_certificates(
        args.out,
        tuple(args.host) if args.host else DEFAULT_HOSTS,
        days=args.days,
        replace=args.replace,
    )
    data = {k: str(v) for k, v in paths.__dict__.items()}
    if args.json:
        tools.print_json(data)
    else:
        for k, v in data.items():
            print(f"{k:12} {v}")
    return EXIT_OK


# --- several targets (issue 15): --dsn repeated or --targets FILE --------------------------


def many_targets(args: argparse.Namespace) -> bool:
    """Several targets were given (``--targets``, or ``--dsn`` more than once)."""
    return bool(getattr(args, "targets", None)) or len(getattr(args, "dsns", None) or []) > 1


def targets_command(args: argparse.Namespace, action: str, tools: Tools) -> int:
    """``plan``, ``apply`` or ``verify`` (``action``) on each target."""
    from tsaccess.plan import targets as tg

    if args.targets and len(getattr(args, "dsns", None) or []) > 0:
        raise Fail("give the targets either with --dsn (repeated) or --targets, not both", 2)
    for flag in ("create_database", "generate_passwords"):
        if getattr(args, flag, None):
            raise Fail(f"--{flag.replace('_', '-')} works on one database only", EXIT_USAGE)
    found = tg.load_targets(args.targets) if args.targets else tg.targets_from_dsns(args.dsns)
    policy = tools.policy(args)
    pw = tools.passwords(args, [u.name for u in policy.users])
    from tsaccess.steps import AUDIT_ONLY

    phases = AUDIT_ONLY if getattr(args, "audit_only", False) else None
    if action == "plan":
        report = tg.plan_targets(found, policy, passwords=pw, phases=phases)
    elif action == "apply":
        report = tg.apply_targets(
            found, policy, passwords=pw, phases=phases, wait_replicas=args.wait_replicas
        )
    else:
        report = tg.verify_targets(found, policy, pw)
    if args.json:
        tools.print_json(report.as_dict())
    else:
        print(report.to_text())
    if report.ok:
        return EXIT_OK
    mismatch_only = action == "verify" and all(r.error is None for r in report.failed)
    return EXIT_DENIED if mismatch_only else EXIT_ERROR
