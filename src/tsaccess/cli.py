"""The ``tsaccess`` command.

Exit codes: 0 ok, 1 error, 2 usage, 3 denied / mismatch, 4 undecided (deferred to the server).
Passwords come only from ``TSACCESS_PASSWORD_<USER>``, a 0600 passwords file, or an
interactive prompt — never from a flag. Only the CLI configures logging.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict

from tsaccess._steps import AUDIT_ONLY
from tsaccess.errors import PasswordSourceError, TsaccessError

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DENIED, EXIT_UNDECIDED = 0, 1, 2, 3, 4


class _Fail(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()), stream=sys.stderr, format="%(message)s"
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def _duration(text: str) -> dt.timedelta:
    m = re.fullmatch(r"(\d+)\s*(s|m|h|d|w)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: use a number and s/m/h/d/w, e.g. 1h or 7d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    return dt.timedelta(**{unit: int(m.group(1))})


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _policy(args: argparse.Namespace) -> Any:
    from tsaccess.policy import load_policy

    return load_policy(args.policy)


def _admin(args: argparse.Namespace, dbname: str | None = None) -> psycopg.Connection[Any]:
    from tsaccess.connection import connect

    return connect(args.dsn or "", dbname=dbname)


def _user_params(args: argparse.Namespace) -> dict[str, Any]:
    """Where users connect: the admin DSN's server settings without its login."""
    from tsaccess.params import without_login

    try:
        d = conninfo_to_dict(args.dsn or "")
    except psycopg.ProgrammingError:
        raise _Fail("--dsn could not be parsed (not shown: it may contain a password)") from None
    return without_login(d)


def _passwords(
    args: argparse.Namespace, users: Sequence[str], *, generate: bool = False
) -> dict[str, Any]:
    from tsaccess.passwords import resolve_passwords

    return resolve_passwords(
        users, passwords_file=getattr(args, "passwords_file", None), generate=generate
    )


def cmd_plan(args: argparse.Namespace) -> int:
    from tsaccess.bootstrap import plan

    policy = _policy(args)
    pw = _passwords(args, [u.name for u in policy.users])
    with _admin(args, policy.database) as conn:
        p = plan(conn, policy, passwords=pw, phases=AUDIT_ONLY if args.audit_only else None)
    if args.json:
        _print_json(
            {
                "steps": [
                    {"summary": s.summary, "phase": s.phase, "sql": s.text()} for s in p.steps
                ],
                "warnings": list(p.warnings),
                "timescaledb": p.timescaledb,
                "catalog_queries": p.catalog_queries,
            }
        )
    else:
        print(p.summary())
        if p and args.sql:
            print("\n" + p.sql())
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from psycopg import sql

    from tsaccess.bootstrap import Plan, apply
    from tsaccess.passwords import write_pgpass

    policy = _policy(args)
    pw = _passwords(args, [u.name for u in policy.users])
    gen = Path(args.generate_passwords) if args.generate_passwords else None
    if gen is not None and (gen.exists() or gen.is_symlink()):
        raise _Fail(f"{gen} exists; choose a new file for generated passwords")
    if args.create_database:
        with _admin(args) as conn:
            conn.autocommit = True
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (policy.database,)
            ).fetchone():
                # created meanwhile by another apply: use it
                with contextlib.suppress(
                    psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
                ):
                    conn.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(policy.database))
                    )

    written: list[Path] = []

    def write_generated(p: Plan) -> None:
        # before the commit: a failure after it cannot lose the passwords it set
        assert gen is not None
        write_pgpass(gen, p.generated, dbname=policy.database)
        written.append(gen)

    try:
        with _admin(args, policy.database) as conn:
            result = apply(
                conn,
                policy,
                passwords=pw,
                phases=AUDIT_ONLY if args.audit_only else None,
                generate_passwords=gen is not None,
                before_commit=write_generated if gen is not None else None,
            )
    except BaseException as exc:
        lost = isinstance(exc, psycopg.OperationalError) or isinstance(
            exc.__cause__, psycopg.OperationalError
        )
        for f in written:
            if lost:  # the commit may have happened: the passwords may be in use
                print(
                    f"tsaccess: warning: the connection was lost at the end of apply; {f} is "
                    "kept: run 'tsaccess plan' to see whether its users exist",
                    file=sys.stderr,
                )
            else:  # rolled back: these passwords were never set
                f.unlink(missing_ok=True)
        raise
    if args.json:
        _print_json(
            {
                "applied": result.applied,
                "seconds": round(result.seconds, 3),
                "steps": [s.summary for s in result.plan.steps],
                "generated_passwords": sorted(result.plan.generated),
            }
        )
    else:
        print(result.plan.summary())
        print(f"applied {result.applied} statement(s) in {result.seconds * 1000:.0f} ms")
        if gen is not None:
            users = ", ".join(sorted(result.plan.generated)) or "none (no new user)"
            print(f"generated passwords for {users} written to {gen} (mode 0600)")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from tsaccess.verify import verify

    policy = _policy(args)
    pw = _passwords(args, [u.name for u in policy.users])
    with _admin(args, policy.database) as conn:
        matrix = verify(conn, policy, pw, lock_timeout=args.lock_timeout, **_user_params(args))
    print(matrix.to_json() if args.json else matrix.to_text())
    if matrix.errors:  # nothing proved for some checks: an error, not a verdict
        return EXIT_ERROR
    return EXIT_OK if matrix.ok else EXIT_DENIED


def cmd_render_init(args: argparse.Namespace) -> int:
    from tsaccess.bootstrap import render_init

    files = render_init(_policy(args), args.out)
    if args.json:
        _print_json([str(f) for f in files])
    else:
        for f in files:
            print(f"wrote {f}")
    return EXIT_OK


def _user_password(args: argparse.Namespace, user: str) -> str:
    from tsaccess.policy import password_env_var

    pw = _passwords(args, [user]).get(user)
    if pw is not None:
        return str(pw.reveal())
    if sys.stdin.isatty():
        return getpass.getpass(f"password for {user}: ")
    raise PasswordSourceError(
        f"no password for {user}: set {password_env_var(user)}, use --passwords-file, or run "
        "interactively to be prompted"
    )


def cmd_check(args: argparse.Namespace) -> int:
    from tsaccess.connection import connect
    from tsaccess.preflight import check

    params = _user_params(args)
    if args.dbname:
        params["dbname"] = args.dbname
    else:
        params["dbname"] = (
            conninfo_to_dict(args.dsn or "").get("dbname")
            or os.environ.get("PGDATABASE")
            or args.user
        )
    with connect(
        **params, user=args.user, password=_user_password(args, args.user), role=args.role
    ) as conn:
        verdict = check(conn, args.sql)
    if args.json:
        _print_json(verdict.as_dict())
    else:
        print(verdict)
    return {"allowed": EXIT_OK, "denied": EXIT_DENIED}.get(verdict.status, EXIT_UNDECIDED)


def cmd_audit(args: argparse.Namespace) -> int:
    from tsaccess import monitoring
    from tsaccess.audit import reports as audit
    from tsaccess.connection import connect

    with connect(args.dsn or "") as conn:
        if args.what == "recent":
            res: Any = audit.recent(conn, args.limit)
        elif args.what == "changes":
            res = audit.changes(conn, args.table, since=args.since, limit=args.limit)
        elif args.what == "summary":
            res = audit.summary(conn, args.since)
        elif args.what == "activity":
            res = audit.activity(conn, args.bucket, args.since)
        elif args.what == "sessions":
            res = monitoring.active_sessions(conn)
        else:
            res = monitoring.roles(conn)
    if args.json:
        _print_json(res.as_dicts())
    else:
        print(res.to_text())
    return EXIT_OK


def cmd_certs(args: argparse.Namespace) -> int:
    from tsaccess.tls import DEFAULT_HOSTS, create_certificates

    paths = create_certificates(
        args.out,
        tuple(args.host) if args.host else DEFAULT_HOSTS,
        days=args.days,
        replace=args.replace,
    )
    data = {k: str(v) for k, v in paths.__dict__.items()}
    if args.json:
        _print_json(data)
    else:
        for k, v in data.items():
            print(f"{k:12} {v}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from tsaccess.demo import run_demo

    lines: list[str] = []
    result = run_demo(keep=args.keep, out=(lines.append if args.json else print))
    if args.json:
        _print_json(result.as_dict())
    return EXIT_OK if result.ok else EXIT_DENIED


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tsaccess",
        description="Make a TimescaleDB/PostgreSQL database safe to share.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 denied or mismatch, 4 undecided. "
        "Passwords: TSACCESS_PASSWORD_<USER>, --passwords-file (mode 0600) or a prompt.",
    )
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, *, policy: bool = False, dsn: bool = True) -> None:
        if dsn:
            sp.add_argument(
                "--dsn",
                help="libpq connection string or URI (default: PG* "
                "variables); sslmode below require is refused",
            )
        if policy:
            sp.add_argument("--policy", required=True, type=Path, help="policy TOML file")
            sp.add_argument(
                "--passwords-file",
                type=Path,
                help="pgpass-format file with login passwords (must be mode 0600)",
            )
        sp.add_argument("--json", action="store_true", help="print JSON")

    sp = sub.add_parser("demo", help="the whole tutorial on a throwaway TLS server")
    sp.add_argument("--keep", action="store_true", help="leave the server running")
    sp.add_argument("--json", action="store_true", help="print the results as JSON")
    sp.set_defaults(func=cmd_demo)

    audit_only_help = (
        "only the audit trail (audit table, data schema, functions, triggers, view, audit "
        "grants) on tables and roles that exist already"
    )
    sp = sub.add_parser("plan", help="show the SQL that would bring the database to the policy")
    common(sp, policy=True)
    sp.add_argument("--sql", action="store_true", help="also print the statements")
    sp.add_argument("--audit-only", action="store_true", help=audit_only_help)
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser("apply", help="apply the policy in one transaction")
    common(sp, policy=True)
    sp.add_argument(
        "--create-database",
        action="store_true",
        help="create the policy's database first if missing",
    )
    sp.add_argument(
        "--generate-passwords",
        metavar="FILE",
        help="generate passwords for new users (never replacing existing passwords) and "
        "write them to FILE (mode 0600) before committing",
    )
    sp.add_argument("--audit-only", action="store_true", help=audit_only_help)
    sp.set_defaults(func=cmd_apply)

    sp = sub.add_parser(
        "verify",
        help="prove the policy: the access matrix (exit 3 on mismatch, 1 when a check errs)",
    )
    common(sp, policy=True)
    sp.add_argument(
        "--lock-timeout",
        default="5s",
        help="how long one check waits for a lock on a busy table (PostgreSQL interval, "
        "default 5s); a check that times out is an error",
    )
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("render-init", help="write init/*.sql and docker-compose.yml")
    sp.add_argument("--policy", required=True, type=Path)
    sp.add_argument("--out", required=True, type=Path)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_render_init)

    sp = sub.add_parser(
        "check", help="pre-flight a statement as a user (0 allowed, 3 denied, 4 undecided)"
    )
    common(sp)
    sp.add_argument("--user", required=True)
    sp.add_argument("--role")
    sp.add_argument("--dbname")
    sp.add_argument("--passwords-file", type=Path)
    sp.add_argument("sql")
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("audit", help="read the audit trail and sessions")
    sp.add_argument(
        "what", choices=["recent", "changes", "summary", "activity", "sessions", "roles"]
    )
    common(sp)
    sp.add_argument("--table", help="changes: only this table")
    sp.add_argument(
        "--since", type=_duration, default=dt.timedelta(days=1), help="e.g. 1h, 7d (default 1d)"
    )
    sp.add_argument("--limit", type=int, default=20)
    sp.add_argument("--bucket", type=_duration, default=dt.timedelta(hours=1))
    sp.set_defaults(func=cmd_audit)

    sp = sub.add_parser("certs", help="create a CA and a server certificate")
    sp.add_argument("--out", required=True, type=Path)
    sp.add_argument(
        "--host",
        action="append",
        help="DNS name or IP for the certificate (repeat; default localhost, 127.0.0.1, ::1)",
    )
    sp.add_argument("--days", type=int, default=365)
    sp.add_argument(
        "--replace",
        action="store_true",
        help="replace an existing CA and server certificate in --out (clients then need the "
        "new ca.crt); without it existing files are refused",
    )
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_certs)
    return p


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds: the throwaway server is stopped and deleted


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        code: int = args.func(args)
        return code
    except _Fail as exc:
        print(f"tsaccess: error: {exc}", file=sys.stderr)
        return exc.code
    except TsaccessError as exc:
        print(f"tsaccess: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except psycopg.Error as exc:
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"tsaccess: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tsaccess: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
