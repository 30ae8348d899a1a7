"""Which PostgreSQL installation the local backend uses, and whether TimescaleDB is in it.

One function, :func:`find_installation`, answers both questions for the whole package. It
resolves symlinks first (``/usr/local/bin/initdb`` -> ``/usr/lib/postgresql/15/bin/initdb``) and
asks *that* installation's ``pg_config`` where its extensions live, so neither ``PATH`` order nor
a ``pg_config`` of another installation can make it wrong.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tsaccess.errors import ServerStartError

__all__ = ["PgInstallation", "find_bindir", "find_installation"]

DEBIAN_ROOT = Path("/usr/lib/postgresql")
_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")


@dataclass(frozen=True)
class PgInstallation:
    """A PostgreSQL server installation on this machine."""

    bindir: Path
    """The real directory of ``initdb``, ``pg_ctl`` and ``postgres`` (symlinks resolved)."""
    version: str
    """``postgres --version`` number, e.g. ``15.20``."""
    sharedir: Path
    pkglibdir: Path
    timescaledb: str | None
    """The TimescaleDB version installed into this installation, or None."""
    found_via: str
    """How the bindir was found (``TSACCESS_PG_BINDIR``, ``PATH``, ``pg_config``, ...)."""
    layout_from: str
    """Where ``sharedir``/``pkglibdir`` came from (its ``pg_config``, or the Debian layout)."""

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def describe(self) -> str:
        """One line naming the installation, e.g. for the demo's header and logs."""
        ts = f"TimescaleDB {self.timescaledb}" if self.timescaledb else "no TimescaleDB"
        return (
            f"PostgreSQL {self.version} in {self.bindir} (found via {self.found_via}; "
            f"extensions in {self.sharedir / 'extension'}, {ts})"
        )


def _has_server(d: Path) -> bool:
    return all((d / exe).is_file() for exe in _SERVER_BINARIES)


def _version_key(d: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", d.parent.name)) or (0,)


def _candidates() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    env = os.environ.get("TSACCESS_PG_BINDIR")
    if env:
        found.append((Path(env), "TSACCESS_PG_BINDIR"))
    on_path = shutil.which("initdb")
    if on_path:
        found.append((Path(on_path).resolve().parent, f"PATH ({on_path})"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = _run([pg_config, "--bindir"])
            found.append((Path(out), f"pg_config on PATH ({pg_config})"))
    found += [
        (d, "Debian layout")
        for d in sorted(DEBIAN_ROOT.glob("*/bin"), key=_version_key, reverse=True)
    ]
    return found


def _run(cmd: list[str]) -> str:
    return subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def _layout(bindir: Path, version: str) -> tuple[Path, Path, str]:
    """``sharedir`` and ``pkglibdir`` of the installation in ``bindir``."""
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            share = Path(_run([str(pg_config), "--sharedir"]))
            lib = Path(_run([str(pg_config), "--pkglibdir"]))
            return share, lib, str(pg_config)
    # Debian/Ubuntu ship pg_config beside the server only with postgresql-server-dev-N;
    # their layout is fixed: /usr/lib/postgresql/N/{bin,lib} and /usr/share/postgresql/N.
    major = version.split(".")[0]
    share = Path("/usr/share/postgresql") / major
    return share, bindir.parent / "lib", f"Debian layout for PostgreSQL {major}"


def _timescaledb_version(sharedir: Path, pkglibdir: Path) -> str | None:
    control = sharedir / "extension" / "timescaledb.control"
    if not control.is_file():
        return None
    m = re.search(r"default_version\s*=\s*'([^']+)'", control.read_text(errors="replace"))
    version = m.group(1) if m else "unknown"
    if (
        not (pkglibdir / f"timescaledb-{version}.so").is_file()
        and not (pkglibdir / "timescaledb.so").is_file()
    ):
        return None  # a control file without the library cannot be preloaded
    return version


def find_installation() -> PgInstallation:
    """The PostgreSQL installation to run throwaway servers from.

    Looks at ``TSACCESS_PG_BINDIR``, ``initdb`` on ``PATH`` (symlinks resolved), ``pg_config
    --bindir`` and ``/usr/lib/postgresql/*/bin`` (newest first); the first directory holding
    ``initdb``, ``pg_ctl`` and ``postgres`` wins.

    Raises:
        ServerStartError: no directory holds the server binaries; the message lists where it
            looked and how to install them.
    """
    tried: list[str] = []
    for cand, how in _candidates():
        real = cand.resolve()
        tried.append(str(cand) if real == cand else f"{cand} (= {real})")
        if not _has_server(real):
            continue
        try:
            out = _run([str(real / "postgres"), "--version"])
        except (OSError, subprocess.SubprocessError) as exc:
            tried[-1] += f" [postgres --version failed: {exc.__class__.__name__}]"
            continue
        m = re.search(r"(\d+(?:\.\d+)?)", out)
        version = m.group(1) if m else "0"
        share, lib, layout_from = _layout(real, version)
        return PgInstallation(
            bindir=real,
            version=version,
            sharedir=share,
            pkglibdir=lib,
            timescaledb=_timescaledb_version(share, lib),
            found_via=how,
            layout_from=layout_from,
        )
    raise ServerStartError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in "
        f"{', '.join(tried) or 'PATH'}. Install them (Debian/Ubuntu: "
        "'apt-get install postgresql'), or set TSACCESS_PG_BINDIR, or give a server with "
        "TSACCESS_TEST_DSN."
    )


def find_bindir() -> Path:
    """The real directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    return find_installation().bindir
