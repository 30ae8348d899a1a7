"""``tsaccess plan`` and ``tsaccess apply``: markers and counts, ``--detailed-exitcode``, SQL
only on stdout, saved plans, plans for a database that does not exist yet, confirmation on a
terminal, and no new database left behind by a failed apply.

The helpers every command shares (admin connection, passwords, policy, JSON) come from
:mod:`tsaccess.cli` as a :class:`Tools`, so this module does not import it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tsaccess.steps import AUDIT_ONLY

__all__ = [
    "DATABASE_RULE",
    "Fail",
    "Tools",
    "add_apply_options",
    "add_plan_options",
    "apply_command",
    "approval_needed",
    "ask",
    "plan_command",
    "policy_for_database",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_CHANGES = 2
"""``plan --detailed-exitcode``: the plan has changes (0: none, 1: error), as terraform."""


class Fail(Exception):
    """An error to print as one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Tools:
    """What the commands borrow from :mod:`tsaccess.cli`."""

    admin: Callable[..., psycopg.Connection[Any]]
    passwords: Callable[..., dict[str, Any]]
    policy: Callable[[argparse.Namespace], Any]
    print_json: Callable[[Any], None]


DATABASE_RULE = (
    "With --policy a command works in the policy's database; a dbname written in --dsn wins "
    "(the policy is then used in that database); PGDATABASE and libpq's default apply only "
    "without --policy."
)
"""How every command picks its database (``--help``, docs/reference/cli.md)."""


def dsn_dbname(args: argparse.Namespace) -> str | None:
    """The database written in ``--dsn`` (explicitly), else None."""
    try:
        name = conninfo_to_dict(getattr(args, "dsn", None) or "").get("dbname")
    except psycopg.ProgrammingError:
        raise Fail("--dsn could not be parsed (not shown: it may contain a password)") from None
    return str(name) if name else None


def policy_for_database(args: argparse.Namespace, policy: Any) -> Any:
    """:data:`DATABASE_RULE`: ``policy`` for the database the command works in — its own, or
    the one ``--dsn`` names (with several targets each target names its own)."""
    if getattr(args, "targets", None) or len(getattr(args, "dsns", None) or []) > 1:
        return policy
    named = dsn_dbname(args)
    if named is None or named == policy.database:
        return policy
    print(
        f"tsaccess: note: --dsn names database {named!r}: the policy (written for "
        f"{policy.database!r}) is used there; leave dbname out of --dsn to use the policy's",
        file=sys.stderr,
    )
    return policy.with_database(named)


def maintenance_dbname(args: argparse.Namespace, policy_db: str) -> str:
    """Where to connect when the policy's database is missing: the DSN's, else ``postgres``."""
    try:
        name = conninfo_to_dict(args.dsn or "").get("dbname")
    except psycopg.ProgrammingError:
        name = None
    name = name or os.environ.get("PGDATABASE") or "postgres"
    return "postgres" if name == policy_db else str(name)


def _policy_db_exists(args: argparse.Namespace, policy: Any, tools: Tools) -> bool:
    from tsaccess.plan.saved import database_exists

    with tools.admin(args, maintenance_dbname(args, policy.database)) as conn:
        return database_exists(conn, policy.database)


def _make_plan(args: argparse.Namespace, policy: Any, pw: dict[str, Any], tools: Tools) -> Any:
    from tsaccess.plan.compose import plan
    from tsaccess.plan.saved import plan_new_database

    try:
        conn = tools.admin(args, policy.database)
    except psycopg.OperationalError:
        if _policy_db_exists(args, policy, tools):
            raise
        if args.audit_only:
            raise Fail(
                f"database {policy.database!r} does not exist; --audit-only needs its tables"
            ) from None
        with tools.admin(args, maintenance_dbname(args, policy.database)) as other:
            return plan_new_database(other, policy, passwords=pw)
    with conn:
        return plan(
            conn,
            policy,
            passwords=pw,
            phases=AUDIT_ONLY if args.audit_only else None,
            drop_removed=args.drop_removed,
            drop_removed_tables=args.drop_removed_tables,
        )


def _plan_json(p: Any, verbose: bool) -> dict[str, Any]:
    from tsaccess.plan.format import action_of, object_of

    return {
        "steps": [
            {
                "summary": s.summary,
                "phase": s.phase,
                "sql": s.text(),
                "action": action_of(s),
                "object": object_of(s, p.logins),
            }
            for s in p.steps
        ],
        "counts": p.counts(verbose=verbose),
        "warnings": list(p.warnings),
        "timescaledb": p.timescaledb,
        "catalog_queries": p.catalog_queries,
        "fingerprint": p.fingerprint,
    }


def plan_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess plan``."""
    from tsaccess.plan.saved import save_plan

    policy = tools.policy(args)
    pw = tools.passwords(args, [u.name for u in policy.users])
    p = _make_plan(args, policy, pw, tools)
    if args.out:
        save_plan(
            args.out,
            p,
            policy,
            Path(args.policy).read_text(encoding="utf-8"),
            audit_only=args.audit_only,
            drop_removed=args.drop_removed,
            drop_removed_tables=args.drop_removed_tables,
        )
    if args.json:
        tools.print_json(_plan_json(p, args.verbose))
    elif args.sql:
        # runnable SQL only on stdout; the summary and warnings go to stderr
        print(p.summary(verbose=args.verbose), file=sys.stderr)
        if p:
            print(p.sql(), end="")
    else:
        print(p.summary(verbose=args.verbose))
    if args.out:
        print(
            f"saved the plan to {args.out}; apply exactly it with: tsaccess apply {args.out}",
            file=sys.stderr,
        )
    if args.detailed_exitcode:
        return EXIT_CHANGES if p else EXIT_OK
    return EXIT_OK


def approval_needed(args: argparse.Namespace, what: str = "apply") -> bool:
    """Whether to ask before changing the server: not with ``--yes``; on a terminal, yes; off a
    terminal (a pipe, a script, ``</dev/null``) the command is refused before anything runs."""
    if getattr(args, "yes", False):
        return False
    if not sys.stdin.isatty():
        raise Fail(
            f"{what} changes the server and there is no terminal to ask on (stdin is not a "
            "terminal): nothing was changed. Review the changes with 'tsaccess plan', then run "
            "again with --yes (-y) to apply them without asking"
        )
    return True


def ask(shown: str, *, to_stderr: bool = False) -> None:
    """Show what would change and ask on the terminal; anything but ``yes`` (end of input
    included) cancels with :class:`Fail`."""
    out = sys.stderr if to_stderr else sys.stdout
    print(shown, file=out)
    print("\nApply these changes? Only 'yes' is accepted: ", end="", file=out, flush=True)
    try:
        answer = input().strip()
    except EOFError:
        print(file=out)
        answer = ""
    if answer != "yes":
        raise Fail("apply cancelled; nothing changed (--yes applies without asking)")


def _confirm(shown: Any, *, to_stderr: bool = False) -> Any:
    """Show the plan, ask on the terminal; the returned check refuses any other plan."""
    from tsaccess.errors import ApplyError
    from tsaccess.plan.saved import plan_digest

    ask(shown.summary(), to_stderr=to_stderr)
    want = plan_digest(shown)

    def check(fresh: Any) -> None:
        if plan_digest(fresh) != want or fresh.fingerprint != shown.fingerprint:
            raise ApplyError(
                "the database changed while you were reading the plan; nothing was applied. "
                "Run tsaccess apply again"
            )

    return check


def _saved_summary(saved: Any) -> str:
    lines = [f"saved plan of {saved.created}: {len(saved.steps)} statement(s)"]
    lines += [f"  {summary}" for _, summary, _ in saved.steps]
    return "\n".join(lines)


def apply_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess apply [PLANFILE]``."""
    from psycopg import sql

    from tsaccess.passwords import write_pgpass
    from tsaccess.plan.compose import apply
    from tsaccess.plan.saved import apply_saved, load_plan

    saved = load_plan(args.plan_file) if args.plan_file else None
    if saved is None and args.policy is None:
        raise Fail("give --policy FILE, or a saved plan (tsaccess apply PLANFILE)", EXIT_USAGE)
    if saved is not None and getattr(args, "wait_replicas", None) is not None:
        raise Fail(
            "--wait-replicas is not available with a saved plan yet; apply it, then run "
            "'tsaccess apply --policy FILE --wait-replicas' (an empty plan waits too)",
            EXIT_USAGE,
        )
    if saved is not None and (args.policy or args.audit_only or args.drop_removed):
        raise Fail(
            "a saved plan carries its policy and options; give only the plan file", EXIT_USAGE
        )
    ask_first = approval_needed(args)  # off a terminal without --yes: refused, nothing runs
    if saved is not None and ask_first:
        ask(_saved_summary(saved), to_stderr=args.json)
    policy = saved.policy if saved else tools.policy(args)
    pw = tools.passwords(args, [u.name for u in policy.users])
    gen = Path(args.generate_passwords) if args.generate_passwords else None
    if gen is not None and (gen.exists() or gen.is_symlink()):
        raise Fail(f"{gen} exists; choose a new file for generated passwords")
    ident = sql.Identifier(policy.database)
    created = False
    exists = _policy_db_exists(args, policy, tools)
    if saved is not None and saved.creates_database and exists:
        raise Fail(
            f"the plan was made before database {policy.database!r} existed, and now it "
            "exists: the database moved; nothing was applied. Make the plan again"
        )
    if not exists and (args.create_database or (saved is not None and saved.creates_database)):
        with tools.admin(args, maintenance_dbname(args, policy.database)) as conn:
            conn.autocommit = True
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
                created = True
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # created meanwhile by another apply: use it (and never drop it)
    written: list[Path] = []

    def write_generated(p: Any) -> None:
        # before the commit: a failure after it cannot lose the passwords it set
        assert gen is not None
        write_pgpass(gen, p.generated, dbname=policy.database)
        written.append(gen)

    try:
        if saved is not None:
            with tools.admin(args, policy.database) as conn:
                result = apply_saved(
                    conn,
                    saved,
                    passwords=pw,
                    generate_passwords=gen is not None,
                    before_commit=write_generated if gen is not None else None,
                    allow_cluster_changes=getattr(args, "allow_cluster_changes", False),
                )
        else:
            with tools.admin(args, policy.database) as conn:
                opts: dict[str, Any] = {
                    "phases": AUDIT_ONLY if args.audit_only else None,
                    "drop_removed": args.drop_removed,
                    "drop_removed_tables": args.drop_removed_tables,
                }
                check = None
                if ask_first:
                    from tsaccess.plan.compose import plan

                    shown = plan(conn, policy, passwords=pw, **opts)
                    conn.rollback()
                    if not shown:
                        print(shown.summary(), file=sys.stderr if args.json else sys.stdout)
                        if args.json:
                            tools.print_json({"applied": 0, "steps": []})
                        return EXIT_OK
                    check = _confirm(shown, to_stderr=args.json)
                result = apply(
                    conn,
                    policy,
                    passwords=pw,
                    check=check,
                    wait_replicas=getattr(args, "wait_replicas", None),
                    generate_passwords=gen is not None,
                    before_commit=write_generated if gen is not None else None,
                    allow_cluster_changes=getattr(args, "allow_cluster_changes", False),
                    **opts,
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
        if created and not lost:  # a failed or cancelled apply leaves no new database behind
            with tools.admin(args, maintenance_dbname(args, policy.database)) as conn:
                conn.autocommit = True
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        raise
    if args.json:
        tools.print_json(
            {
                "applied": result.applied,
                "seconds": round(result.seconds, 3),
                "steps": [s.summary for s in result.plan.steps],
                "generated_passwords": sorted(result.plan.generated),
                **_replica_json(args, result),
            }
        )
    else:
        print(result.plan.summary(verbose=args.verbose))
        print(f"applied {result.applied} statement(s) in {result.seconds * 1000:.0f} ms")
        if getattr(args, "wait_replicas", None) is not None:
            print(
                f"replayed on {len(result.replicas)} standby(s) in "
                f"{result.replica_seconds * 1000:.0f} ms (LSN {result.commit_lsn})"
            )
        if gen is not None:
            users = ", ".join(sorted(result.plan.generated)) or "none (no new user)"
            print(f"generated passwords for {users} written to {gen} (mode 0600)")
    return EXIT_OK


def _replica_json(args: argparse.Namespace, result: Any) -> dict[str, Any]:
    if getattr(args, "wait_replicas", None) is None:
        return {}
    return {
        "commit_lsn": result.commit_lsn,
        "standbys": [s.name for s in result.replicas],
        "replica_seconds": round(result.replica_seconds, 3),
    }


def _prune_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--drop-removed",
        action="store_true",
        help="drop users and roles tsaccess managed that the policy no longer names "
        "(default: NOLOGIN, memberships and privileges revoked); never those owning objects",
    )
    sp.add_argument(
        "--drop-removed-tables",
        action="store_true",
        help="drop tables tsaccess managed that the policy no longer names, WITH THEIR DATA "
        "(default: kept, grants revoked)",
    )
    sp.add_argument(
        "--verbose",
        action="store_true",
        help="list every statement (audit internals and bookkeeping are folded otherwise)",
    )


def add_plan_options(sp: argparse.ArgumentParser) -> None:
    """The options of ``plan`` beyond the policy, DSN and passwords."""
    sp.add_argument(
        "--sql",
        action="store_true",
        help="print only the runnable SQL on stdout (the summary goes to stderr)",
    )
    _prune_flags(sp)
    sp.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="save the plan (mode 0600); tsaccess apply FILE applies exactly it, or refuses if "
        "the database changed since",
    )
    sp.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when nothing changes, 2 when the plan has changes, 1 on error (for CI)",
    )


def add_apply_options(sp: argparse.ArgumentParser) -> None:
    """The options of ``apply`` beyond the policy, DSN and passwords."""
    sp.add_argument(
        "plan_file",
        nargs="?",
        type=Path,
        metavar="PLANFILE",
        help="a plan saved by tsaccess plan --out: applied exactly, or refused if the "
        "database changed since",
    )
    _prune_flags(sp)
    sp.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="apply without asking; without it apply asks on a terminal and, with no terminal "
        "(a pipe, a script, CI), refuses and changes nothing",
    )
    sp.add_argument(
        "--allow-cluster-changes",
        action="store_true",
        help="apply even when the plan changes roles (attributes, memberships, passwords) that "
        "the policies of other databases of the cluster also manage (refused by default)",
    )
