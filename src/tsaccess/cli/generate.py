"""``tsaccess generate``: write the policy of an existing database, as it is (see
:mod:`tsaccess.plan.adopt`).

The TOML goes to stdout or ``--out FILE`` (created mode 0600; an existing file is replaced only
with ``--force``); what applying it would still change, if anything, goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tsaccess.cli.plan import EXIT_OK, Fail, Tools

__all__ = ["add_generate_parser", "generate_command"]


def generate_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess generate``."""
    from tsaccess._files import write_private
    from tsaccess.plan.adopt import generate

    with tools.admin(args) as conn:
        result = generate(conn, args.schema)
    policy = result.policy
    if args.out:
        try:
            write_private(args.out, result.text, replace=args.force)
        except FileExistsError:
            raise Fail(
                f"{args.out} exists; choose another file, or replace it with --force"
            ) from None
    if args.json:
        tools.print_json(
            {
                "policy": None if args.out else result.text,
                "out": str(args.out) if args.out else None,
                "changes": list(result.changes),
                "neutral": list(result.neutral),
                "notes": list(result.notes),
            }
        )
    elif not args.out:
        sys.stdout.write(result.text)
    where = f"wrote {args.out}" if args.out else "the policy"
    print(
        f"{where}: database {policy.database}, schema {policy.schema}: {len(policy.tables)} "
        f"tables, {len(policy.aggregates)} aggregates, {len(policy.roles)} group roles, "
        f"{len(policy.users)} users",
        file=sys.stderr,
    )
    if result.changes:
        print(
            "applying it as it is would still change (the policy cannot say these):",
            file=sys.stderr,
        )
        for line in result.changes:
            print(f"  {line}", file=sys.stderr)
    else:
        print(
            "applying it changes no one's access (tsaccess apply adds only tsaccess's markers"
            + (" and CONNECT/USAGE that PUBLIC already gives)" if result.neutral else ")"),
            file=sys.stderr,
        )
    return EXIT_OK


def add_generate_parser(sub: Any, dsn_action: Any) -> None:
    """The ``generate`` subcommand's parser (``sub``: the CLI's subparsers)."""
    sp: argparse.ArgumentParser = sub.add_parser(
        "generate",
        help="write the policy of an existing database as it is (adopting changes nothing)",
    )
    sp.add_argument(
        "--dsn",
        action=dsn_action,
        help="libpq connection string or URI of an administrator (default: PG* variables); "
        "sslmode below require is refused",
    )
    sp.add_argument(
        "--schema", default="public", help="the schema whose tables to describe (default public)"
    )
    sp.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write the policy to FILE (mode 0600) instead of stdout",
    )
    sp.add_argument("--force", action="store_true", help="replace an existing --out file")
    sp.add_argument(
        "--json",
        action="store_true",
        help="print JSON: the policy (unless --out), what apply would still change, notes",
    )
