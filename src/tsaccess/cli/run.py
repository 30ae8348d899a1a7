"""Running one command: its exit status, every expected error as one line, warnings as one line,
a closed pipe and Ctrl-C without a traceback (the statuses: ``docs/reference/cli.md``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from typing import Any

import psycopg

from tsaccess.cli.plan import Fail
from tsaccess.errors import TsaccessError

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_PIPE", "run_command", "say", "show_warning"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DENIED, EXIT_UNDECIDED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_PIPE = 130, 141  # 128 + SIGINT, 128 + SIGPIPE, as a shell reports them
VERIFY_EXIT = {
    "agree": EXIT_OK,
    "disagree": EXIT_DENIED,
    "incomplete": EXIT_UNDECIDED,
    "error": EXIT_ERROR,  # a try ended in an error: nothing proved for it
}


def say(line: str) -> None:
    """One line on stderr (quietly nothing if stderr is gone too)."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """The reader of stdout went away: send what is still buffered nowhere, so the interpreter's
    last flush does not fail again (the recipe of Python's signal module documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run_command(args: argparse.Namespace) -> int:
    """The command, every expected error as one line and its exit status."""
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        say("tsaccess: interrupted")
        return EXIT_INTERRUPTED
    except Fail as exc:
        say(f"tsaccess: error: {exc}")
        return exc.code
    except TsaccessError as exc:
        say(f"tsaccess: error: {exc}")
        return EXIT_ERROR
    except psycopg.Error as exc:
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        say(f"tsaccess: error: {msg}")
        return EXIT_ERROR
    except OSError as exc:  # a file or directory that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        say(f"tsaccess: error: {where}{exc.strerror or exc}")
        return EXIT_ERROR
    except Exception as exc:
        if getattr(args, "log_level", None) == "debug":
            traceback.print_exc()
        msg = " ".join(str(exc).split())
        say(
            f"tsaccess: internal error: {exc.__class__.__name__}: {msg} (a bug: please report "
            "it; --log-level debug shows where)"
        )
        return EXIT_ERROR


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    say(f"tsaccess: warning: {message}")
