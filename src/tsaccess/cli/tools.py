"""``tsaccess check``, ``audit`` and ``certs``, and ``plan``/``apply``/``verify`` on several
targets (``--dsn`` repeated or ``--targets FILE``).

The helpers every command shares (admin connection, passwords, policy, JSON) come from
:mod:`tsaccess.cli` as a :class:`~tsaccess.cli.plan.Tools`, so this module does not import it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tsaccess.cli.plan import Fail, Tools, approval_needed, ask

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


_CHECK_ROLE_SQL = """
SELECT u.rolcanlogin,
       pg_catalog.has_database_privilege(u.oid, pg_catalog.current_database(), 'CONNECT'),
       r.oid IS NOT NULL, r.oid IS NOT NULL AND pg_catalog.pg_has_role(u.oid, r.oid, 'MEMBER')
  FROM pg_catalog.pg_roles u LEFT JOIN pg_catalog.pg_roles r ON r.rolname = %s
 WHERE u.rolname = %s
"""


def _refused_at_login(conn: Any, user: str, role: str | None) -> str | None:
    """Why ``user`` could not even run the statement here (no login, no CONNECT), or None.

    Raises:
        Fail: the user or the role does not exist, or the user may not take the role.
    """
    row = conn.execute(_CHECK_ROLE_SQL, (role or "", user)).fetchone()
    conn.rollback()
    if row is None:
        raise Fail(f"role {user!r} does not exist; check the name (it is case-sensitive)")
    can_login, can_connect, role_exists, member = row
    if role and not role_exists:
        raise Fail(f"role {role!r} does not exist; check the name (it is case-sensitive)")
    if role and not member:
        raise Fail(
            f"login user {user!r} is not a member of role {role!r}; {user} could not SET ROLE "
            "to it (grant the role to the user in the policy, or leave out --role)"
        )
    if not can_login:
        return f"{user} cannot log in (NOLOGIN)"
    if not can_connect:
        return f"{user} may not CONNECT to database {conn.info.dbname}"
    return None


def check_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess check``: would the statement be refused to ``--user``? Answered from the
    caller's own connection: the user's privileges as the catalog shows them
    (``has_*_privilege(user, ...)``), no password of the user's; the database from the rule
    (``--dbname``, else :data:`~tsaccess.cli.plan.DATABASE_RULE`)."""
    from tsaccess.preflight import Checker

    policy = tools.policy(args) if args.policy else None
    dbname = args.dbname or (policy.database if policy is not None else None)
    with tools.admin(args, dbname) as conn:
        why = _refused_at_login(conn, args.user, args.role)
        if why is None:
            checker = Checker(conn, as_role=args.role or args.user, login=args.user)
            verdict = checker.check(args.sql)
    if why is not None:
        if args.json:
            tools.print_json({"status": "denied", "reason": why, "caveats": [], "missing": []})
        else:
            print(f"denied: {why}")
        return EXIT_DENIED
    if args.json:
        tools.print_json(verdict.as_dict())
    else:
        print(verdict)
    return {"allowed": EXIT_OK, "denied": EXIT_DENIED}.get(verdict.status, EXIT_UNDECIDED)


def audit_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess audit``: the audit trail's reports, sessions and roles."""
    from tsaccess import monitoring
    from tsaccess.audit import reports as audit

    if args.what in ("keygen", "seal", "prove"):
        return _chain_command(args, tools)
    schema, table, dbname = "public", "activity_audit", None
    if args.policy:  # the policy's database, unless --dsn names one (the one rule)
        policy = tools.policy(args)
        schema, table, dbname = policy.schema, policy.audit.table, policy.database
    where = {"schema": args.schema or schema, "table": args.audit_table or table}
    with tools.admin(args, dbname) as conn:
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

    ask_first = action == "apply" and approval_needed(args)  # no terminal, no --yes: refused
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
    if ask_first:
        shown = tg.plan_targets(found, policy, passwords=pw, phases=phases)
        ask(shown.to_text(), to_stderr=args.json)
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
    matrices = [r.matrix for r in report.failed if r.error is None and r.matrix is not None]
    if action != "verify" or len(matrices) != len(report.failed):
        return EXIT_ERROR
    verdicts = {m.verdict for m in matrices}
    if "error" in verdicts:
        return EXIT_ERROR
    return EXIT_DENIED if "disagree" in verdicts else EXIT_UNDECIDED  # else only incomplete
