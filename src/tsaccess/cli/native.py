"""``tsaccess native install``: build the compiled trigger functions into a PostgreSQL
installation on this machine (see :mod:`tsaccess.native` and ``docs/native.md``)."""

from __future__ import annotations

import argparse
import glob
import shutil
from typing import Any

from tsaccess.cli.run import say
from tsaccess.native import LIBRARY, VERSION, install

__all__ = ["add_native_parser", "native_command"]


def add_native_parser(sub: Any) -> None:
    sp = sub.add_parser(
        "native",
        help=f"install the compiled trigger functions ({LIBRARY}) into a local PostgreSQL",
    )
    sp.add_argument("action", choices=["install"], help="build and install the library")
    sp.add_argument(
        "--pg-config",
        metavar="PATH",
        help="the pg_config of the PostgreSQL to install into (default: pg_config on PATH, "
        "else the newest /usr/lib/postgresql/*/bin/pg_config)",
    )


def _default_pg_config() -> str | None:
    found = shutil.which("pg_config")
    if found:
        return found
    configs = glob.glob("/usr/lib/postgresql/*/bin/pg_config")
    return max(configs, key=lambda p: int(p.split("/")[-3]), default=None)


def native_command(args: argparse.Namespace) -> int:
    """Build and install; the next ``tsaccess apply`` (as a superuser) uses it."""
    pg_config = args.pg_config or _default_pg_config()
    install(pg_config)
    say(
        f"installed {LIBRARY} {VERSION} with {pg_config}; the next `tsaccess apply` as a "
        "superuser uses it (PostgreSQL needs no restart)"
    )
    return 0
