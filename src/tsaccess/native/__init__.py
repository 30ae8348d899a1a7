"""The compiled trigger functions: the ``tsaccess_native`` library (optional).

A PL/pgSQL trigger costs a statement that sends one row about a tenth of its time just to be
called, and an audit row written per statement into the audit hypertable costs TimescaleDB a
chunk lookup per statement. The C beside this file (``tsaccess_native.c``: the trigger
functions; ``buffer.c``: the transaction's records; ``flush.c``: writing them) does the same
work:

* the chunk gate (``tsaccess_chunk_acl()``): one counter comparison when the statement made no
  chunk; otherwise ``tsaccess_chunk_gate_slow()`` (PL/pgSQL) does what the PL/pgSQL gate does;
* the statement and per-row audit (``tsaccess_audit_stmt()``): the row count and the session's
  context are read when the statement runs and the audit row's id is taken then; the records
  (per row: with the changed rows) are written in one INSERT per table just before the
  transaction commits, by owner-only flush functions. A per-row statement of 1,000 rows or
  more is written at once by the table's PL/pgSQL function.

``tsaccess apply`` uses it when the server has the library (``pg_available_extensions`` lists
``tsaccess_native`` at :data:`VERSION`), the administrator may create C functions (a
superuser) or they are in place already, and the policy does not say ``[database] native =
"off"``; else the PL/pgSQL functions, which record the same rows. Install the library with ``tsaccess native install``
(or ``make -C src/tsaccess/native install``). See ``docs/native.md``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tsaccess.errors import TsaccessError

if TYPE_CHECKING:
    from tsaccess.catalog import CatalogSnapshot
    from tsaccess.policy import Policy

__all__ = [
    "AUDIT_SYMBOL",
    "FLUSH_FUNCTION",
    "GATE_SLOW_FUNCTION",
    "GATE_SYMBOL",
    "LIBRARY",
    "VERSION",
    "c_function",
    "install",
    "source_dir",
    "use_native",
]

LIBRARY = "tsaccess_native"
VERSION = "1"
"""The library version this package's SQL expects (the control file's ``default_version``)."""
GATE_SYMBOL = "tsaccess_native_gate"
AUDIT_SYMBOL = "tsaccess_native_audit"
FLUSH_FUNCTION = "tsaccess_audit_flush"
"""In the audit table's schema: writes the buffered audit rows (owner-only)."""
GATE_SLOW_FUNCTION = "tsaccess_chunk_gate_slow"
"""In the policy's schema: the gate's work once a statement may have made a chunk."""


def use_native(policy: Policy, cat: CatalogSnapshot | None) -> bool:
    """Whether ``apply`` makes the compiled trigger functions for ``policy`` on the server read
    into ``cat`` (None: no server, as for ``init/*.sql``: the PL/pgSQL ones).

    Raises:
        TsaccessError: ``native = "require"`` and the server or the administrator cannot.
    """
    if policy.native == "off":
        return False
    problem = None
    if cat is None:
        problem = "there is no server to ask (init scripts use the PL/pgSQL functions)"
    elif cat.native_version is None:
        problem = f"the server has no {LIBRARY} library (pg_available_extensions)"
    elif cat.native_version != VERSION:
        problem = (
            f"the server's {LIBRARY} is version {cat.native_version}, this tsaccess needs {VERSION}"
        )
    elif not cat.superuser and not _installed(policy, cat):
        problem = f"{cat.current_user} is not a superuser (only one may create C functions)"
    if problem is None:
        return True
    if policy.native == "require":
        raise TsaccessError(
            f'[database] native = "require", but {problem}. Install the library on the '
            "server with `tsaccess native install` (as root, on the server's machine), apply as "
            'a superuser, or set native = "prefer" to fall back to the PL/pgSQL functions.'
        )
    return False


def _installed(policy: Policy, cat: CatalogSnapshot) -> bool:
    """Every compiled function the policy needs is in place already (only a superuser could
    create one): a plan read by another role (``tsaccess monitor``'s drift, an administrator
    who is not a superuser) keeps them."""
    needed = {}
    if policy.audited:
        needed["tsaccess_audit_stmt"] = AUDIT_SYMBOL
    if any(t.hypertable for t in policy.tables) and policy.timescaledb != "off":
        needed["tsaccess_chunk_acl"] = GATE_SYMBOL
    return bool(needed) and all(
        (info := cat.functions.get(name)) is not None and info.source == symbol
        for name, symbol in needed.items()
    )


def c_function(symbol: str) -> str:
    """``LANGUAGE c AS '<library>', '<symbol>'`` for a ``CREATE FUNCTION``."""
    return f"LANGUAGE c AS '{LIBRARY}', '{symbol}'"


def source_dir() -> Path:
    """The directory holding the C source, its ``Makefile`` and the extension files."""
    return Path(__file__).resolve().parent


def install(pg_config: str | None = None) -> str:
    """Build the library with PGXS and install it into the PostgreSQL of ``pg_config`` (default:
    the ``pg_config`` on ``PATH``); returns ``make``'s output.

    Needs a C compiler, ``make``, the server's development headers (Debian:
    ``postgresql-server-dev-<major>``) and write access to the installation (root).

    Raises:
        TsaccessError: a tool is missing or the build fails (with its output).
    """
    config = pg_config or shutil.which("pg_config")
    if config is None or not os.access(config, os.X_OK):
        raise TsaccessError(
            "no pg_config found; pass --pg-config /usr/lib/postgresql/<major>/bin/pg_config"
        )
    for tool in ("make", "cc"):
        if shutil.which(tool) is None:
            raise TsaccessError(
                f"{tool} is not installed; install a C toolchain (Debian: build-essential) and "
                "the server headers (postgresql-server-dev-<major>)"
            )
    with tempfile.TemporaryDirectory(prefix="tsaccess-native-") as tmp:
        build = Path(tmp) / "native"
        shutil.copytree(source_dir(), build, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        done = subprocess.run(
            ["make", "-C", str(build), f"PG_CONFIG={config}", "install"],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise TsaccessError(
            f"building {LIBRARY} failed (make exited {done.returncode}); is "
            "postgresql-server-dev-<major> installed, and may this user write to the "
            f"installation?\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done.stdout
