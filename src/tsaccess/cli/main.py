"""The ``tsaccess`` command.

Exit codes: 0 ok, 1 error, 2 usage, 3 denied / mismatch, 4 undecided (deferred to the server),
130 interrupted (Ctrl-C), 141 the reader of the output went away (a closed pipe), 143 SIGTERM.
No traceback: every expected error is one line on stderr (``tsaccess: error: ...``).
Passwords come only from ``TSACCESS_PASSWORD_<USER>``, a 0600 passwords file, or an
interactive prompt — never from a flag. Only the CLI configures logging.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import structlog

from tsaccess.cli.plan import DATABASE_RULE
from tsaccess.cli.plan import Fail as PlanFail
from tsaccess.cli.run import (
    EXIT_DENIED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    VERIFY_EXIT,
    run_command,
    say,
    show_warning,
)
from tsaccess.cli.tools import (
    audit_command,
    certs_command,
    check_command,
    many_targets,
    targets_command,
    user_params,
)

__all__ = ["main"]


_Fail = PlanFail  # one error class for every command: a message and an exit code


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tsaccess")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from tsaccess import __version__

        return __version__


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
    """The policy of ``--policy``, for the database the command works in (the one rule)."""
    from tsaccess.cli.plan import policy_for_database
    from tsaccess.policy import load_policy

    return policy_for_database(args, load_policy(args.policy))


_TLS_SHOWN: set[str] = set()


def _admin(args: argparse.Namespace, dbname: str | None = None) -> psycopg.Connection[Any]:
    """The administrator's connection; says on stderr (once per server) how it is protected:
    the TLS version and whether the server's certificate was verified."""
    from tsaccess.client.connection import connect
    from tsaccess.client.tls import tls_status

    conn = connect(args.dsn or "", dbname=dbname)
    target = f"{conn.info.host}:{conn.info.port}"
    if target not in _TLS_SHOWN:
        _TLS_SHOWN.add(target)
        print(f"tsaccess: TLS to {target}: {tls_status(conn)}", file=sys.stderr)
    return conn


def _passwords(
    args: argparse.Namespace, users: Sequence[str], *, generate: bool = False
) -> dict[str, Any]:
    """From the environment, then each ``--passwords-file`` in order (the first one wins)."""
    from tsaccess.passwords import resolve_passwords

    files = getattr(args, "passwords_file", None) or [None]
    out: dict[str, Any] = {}
    for f in files:
        for user, pw in resolve_passwords(users, passwords_file=f).items():
            out.setdefault(user, pw)
    if generate:
        missing = [u for u in users if u not in out]
        out.update(resolve_passwords(missing, generate=True, environ={}))
    return out


def _tools() -> Any:
    from tsaccess.cli.plan import Tools

    return Tools(admin=_admin, passwords=_passwords, policy=_policy, print_json=_print_json)


def cmd_plan(args: argparse.Namespace) -> int:
    from tsaccess.cli.plan import plan_command

    if many_targets(args):
        return targets_command(args, "plan", _tools())
    return plan_command(args, _tools())


def cmd_apply(args: argparse.Namespace) -> int:
    from tsaccess.cli.plan import apply_command

    if many_targets(args):
        return targets_command(args, "apply", _tools())
    return apply_command(args, _tools())


def cmd_verify(args: argparse.Namespace) -> int:
    from tsaccess.verify import verify

    if many_targets(args):
        return targets_command(args, "verify", _tools())
    policy = _policy(args)
    pw = _passwords(args, [u.name for u in policy.users])
    with _admin(args, policy.database) as conn:
        matrix = verify(conn, policy, pw, lock_timeout=args.lock_timeout, **user_params(args))
    print(matrix.to_json() if args.json else matrix.to_text())
    return VERIFY_EXIT[matrix.verdict]


def cmd_render_init(args: argparse.Namespace) -> int:
    from tsaccess.plan.compose import render_init

    files = render_init(_policy(args), args.out)
    if args.json:
        _print_json([str(f) for f in files])
    else:
        for f in files:
            print(f"wrote {f}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    return check_command(args, _tools())


def cmd_audit(args: argparse.Namespace) -> int:
    return audit_command(args, _tools())


def cmd_certs(args: argparse.Namespace) -> int:
    return certs_command(args, _tools())


def cmd_generate(args: argparse.Namespace) -> int:
    from tsaccess.cli.generate import generate_command

    return generate_command(args, _tools())


def cmd_demo(args: argparse.Namespace) -> int:
    from tsaccess.demo import run_demo

    lines: list[str] = []
    policy = _policy(args) if args.policy else None
    result = run_demo(keep=args.keep, out=(lines.append if args.json else print), policy=policy)
    if args.json:
        _print_json(result.as_dict())
    return EXIT_OK if result.ok else EXIT_DENIED


def build_parser() -> argparse.ArgumentParser:
    from tsaccess.cli.plan import add_apply_options, add_plan_options

    p = argparse.ArgumentParser(
        prog="tsaccess",
        description="Make a TimescaleDB/PostgreSQL database safe to share.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 denied or mismatch, 4 undecided or "
        "incomplete, 130 interrupted, 141 closed pipe. Database: " + DATABASE_RULE + " "
        "Passwords: TSACCESS_PASSWORD_<USER>, --passwords-file (mode 0600) or a prompt.",
    )
    p.add_argument(
        "--log-level",
        default="error",
        choices=["debug", "info", "warning", "error"],
        help="show the library's log lines at or above this level, on stderr (default: error: "
        "none interleave with a command's report; info or debug show what tsaccess does)",
    )
    p.add_argument("--version", action="version", version=f"tsaccess {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def passwords_file(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--passwords-file",
            type=Path,
            action="append",
            metavar="FILE",
            help="pgpass-format file with login passwords (mode 0600); repeat for several "
            "files: the environment wins, then the files in the order given",
        )

    def common(
        sp: argparse.ArgumentParser,
        *,
        policy: bool = False,
        dsn: bool = True,
        policy_required: bool = True,
    ) -> None:
        if dsn:
            sp.add_argument(
                "--dsn",
                action=_DsnAction,
                help="libpq connection string or URI (default: PG* "
                "variables); sslmode below require is refused; a dbname in it names the "
                "database (it wins over --policy's)"
                + ("; repeat it for several databases" if policy else ""),
            )
        if policy:
            sp.add_argument(
                "--policy",
                required=policy_required,
                type=Path,
                help="policy TOML file; the command works in the policy's database unless "
                "--dsn names one (PGDATABASE does not override it)",
            )
            passwords_file(sp)
            sp.add_argument(
                "--targets",
                type=Path,
                metavar="FILE",
                help="TOML file of [[targets]] (name, dsn): run on each database, one "
                "report per target",
            )
        sp.add_argument("--json", action="store_true", help="print JSON")

    sp = sub.add_parser("demo", help="the whole tutorial on a throwaway TLS server")
    sp.add_argument("--keep", action="store_true", help="leave the server running")
    sp.add_argument("--json", action="store_true", help="print the results as JSON")
    sp.add_argument(
        "--policy",
        type=Path,
        help="run the demo with this policy (default: the company policy); "
        "examples/timescale.toml adds row slices, compression, retention and an aggregate",
    )
    sp.set_defaults(func=cmd_demo)

    audit_only_help = (
        "only the audit trail (audit table, data schema, functions, triggers, view, audit "
        "grants) on tables and roles that exist already"
    )
    sp = sub.add_parser(
        "plan",
        help="show what would bring the database to the policy (+ add, ~ change, - revoke)",
    )
    common(sp, policy=True)
    sp.add_argument("--audit-only", action="store_true", help=audit_only_help)
    add_plan_options(sp)
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser(
        "apply",
        help="apply the policy (or a saved plan) in one transaction; asks on a terminal",
    )
    common(sp, policy=True, policy_required=False)
    add_apply_options(sp)
    sp.add_argument(
        "--create-database",
        action="store_true",
        help="create the policy's database first if missing (dropped again if apply fails)",
    )
    sp.add_argument(
        "--generate-passwords",
        metavar="FILE",
        help="generate passwords for new users (never replacing existing passwords) and "
        "write them to FILE (mode 0600) before committing",
    )
    sp.add_argument("--audit-only", action="store_true", help=audit_only_help)
    sp.add_argument(
        "--wait-replicas",
        nargs="?",
        type=float,
        const=_WAIT_REPLICAS_DEFAULT,
        default=None,
        metavar="SECONDS",
        help="after the commit, wait until every standby in pg_stat_replication has replayed "
        f"it (default {_WAIT_REPLICAS_DEFAULT:g} s); fail naming the laggards",
    )
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

    from tsaccess.cli.generate import add_generate_parser

    add_generate_parser(sub, _DsnAction)
    sub.choices["generate"].set_defaults(func=cmd_generate)
    from tsaccess.cli.monitor import add_monitor_parser, monitor_command

    add_monitor_parser(sub, _DsnAction)
    sub.choices["monitor"].set_defaults(func=lambda a: monitor_command(a, _tools()))
    from tsaccess.cli.native import add_native_parser, native_command

    add_native_parser(sub)
    sub.choices["native"].set_defaults(func=native_command)

    sp = sub.add_parser("render-init", help="write init/*.sql and docker-compose.yml")
    sp.add_argument("--policy", required=True, type=Path, help="policy TOML file")
    sp.add_argument(
        "--out", required=True, type=Path, help="directory for the scripts (created if missing)"
    )
    sp.add_argument("--json", action="store_true", help="print the written files as JSON")
    sp.set_defaults(func=cmd_render_init)

    sp = sub.add_parser(
        "check",
        help="would a user be refused? pre-flight a statement as that user, from your own "
        "connection (0 allowed, 3 denied, 4 undecided); no password of the user's",
        epilog="Database: --dbname, else " + DATABASE_RULE,
    )
    common(sp)
    sp.add_argument(
        "--user",
        required=True,
        help="the login user whose privileges count; read from the catalog through your "
        "connection (--dsn / PG*), never by logging in as them",
    )
    sp.add_argument("--role", help="the group role the user's session is scoped to (SET ROLE)")
    sp.add_argument(
        "--policy",
        type=Path,
        help="policy TOML file: check in its database (unless --dsn or --dbname names one)",
    )
    sp.add_argument("--dbname", help="database to check in (wins over --dsn's and the policy's)")
    sp.add_argument("sql", help="the statement to check (it is never run)")
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser(
        "audit",
        help="read the audit trail and sessions; seal and prove it",
        epilog="keygen, seal, prove exit 0 ok/intact, 1 tampered, 2 no verdict (errors); "
        "see docs/audit-integrity.md. Database: " + DATABASE_RULE,
    )
    sp.add_argument(
        "what",
        choices=[
            *("recent", "changes", "summary", "activity", "sessions", "roles"),
            *("keygen", "seal", "prove"),
        ],
        help="what to show: latest events, changed rows, per-user summary, activity over "
        "time, live sessions, or roles; keygen --out KEY, seal --key KEY --out DIR, "
        "prove --checkpoints DIR --pubkey KEY.pub: the tamper-evident chain",
    )
    for flag, text in (
        ("--key", "seal: the private key (from keygen)"),
        ("--out", "keygen: the private key to write (and OUT.pub); seal: checkpoint directory"),
        ("--checkpoints", "prove: the directory the seals wrote"),
        ("--pubkey", "prove: the public key (KEY.pub)"),
        ("--start", "prove: only what was sealed after this checkpoint file (a period)"),
    ):
        sp.add_argument(flag, type=Path, help=text)
    common(sp)
    sp.add_argument("--table", help="changes: only this table")
    sp.add_argument(
        "--since", type=_duration, default=dt.timedelta(days=1), help="e.g. 1h, 7d (default 1d)"
    )
    sp.add_argument("--limit", type=int, default=20, help="at most this many rows (default 20)")
    sp.add_argument(
        "--bucket",
        type=_duration,
        default=dt.timedelta(hours=1),
        help="activity: the time bucket, e.g. 15m, 1h (default 1h)",
    )
    sp.add_argument(
        "--schema",
        help="schema of the audit table (default: the policy's, else public)",
    )
    sp.add_argument(
        "--audit-table",
        metavar="NAME",
        help="name of the audit table (default: the policy's audit.table, else activity_audit)",
    )
    sp.add_argument(
        "--policy",
        type=Path,
        help="policy TOML file: read the audit trail of the policy's database (unless --dsn "
        "names one; PGDATABASE does not override it), its audit schema and table",
    )
    sp.set_defaults(func=cmd_audit)

    sp = sub.add_parser("certs", help="create a CA and a server certificate")
    sp.add_argument(
        "--out", required=True, type=Path, help="directory for the CA, certificate and key"
    )
    sp.add_argument(
        "--host",
        action="append",
        help="DNS name or IP for the certificate (repeat; default localhost, 127.0.0.1, ::1)",
    )
    sp.add_argument(
        "--days", type=int, default=365, help="validity of the certificates (default 365)"
    )
    sp.add_argument(
        "--replace",
        action="store_true",
        help="replace an existing CA and server certificate in --out (clients then need the "
        "new ca.crt); without it existing files are refused",
    )
    sp.add_argument("--json", action="store_true", help="print the written files as JSON")
    sp.set_defaults(func=cmd_certs)
    return p


# --- several targets (issue 15): --dsn repeated or --targets FILE --------------------------

_WAIT_REPLICAS_DEFAULT = 60.0


class _DsnAction(argparse.Action):
    """``--dsn``: ``args.dsn`` is the last one given (as before), ``args.dsns`` all of them."""

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, value: Any, opt: Any = None
    ) -> None:
        ns.dsn = value
        ns.dsns = [*(getattr(ns, "dsns", None) or []), value]


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds: the throwaway server is stopped and deleted


def main(argv: Sequence[str] | None = None) -> int:
    """The ``tsaccess`` command; returns its exit status (see the module documentation)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        _setup_logging(args.log_level)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
    except KeyboardInterrupt:
        say("tsaccess: interrupted")
        return EXIT_INTERRUPTED
    with warnings.catch_warnings():  # warnings as one line each (no file:line, no code)
        warnings.showwarning = show_warning
        return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
