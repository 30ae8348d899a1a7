"""The policy as an ``init/`` folder: psql scripts plus a ``docker-compose.yml``.

:func:`render_init` writes the plan for an empty database as ``01-schema.sql``,
``02-security.sql``, ``03-audit.sql`` and a ``docker-compose.yml`` for a
``docker-entrypoint-initdb.d`` setup (re-exported by :mod:`tsaccess.plan.compose`).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tsaccess.plan.build import build_steps
from tsaccess.plan.initdir import entrypoint_script
from tsaccess.policy import Policy

__all__ = ["render_init"]

_COMPOSE = """\
# Rendered by tsaccess: TimescaleDB with TLS on and only hostssl + SCRAM logins.
# Put the server certificate and key in ../ssl (tsaccess certs --out ssl/) and the passwords in
# the environment (TSACCESS_PASSWORD_<USER>, POSTGRES_PASSWORD), never in this file.
services:
  db:
    image: timescale/timescaledb:latest-pg16
    environment:
      POSTGRES_DB: {database}
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}}
      TIMESCALEDB_TELEMETRY: "off"
{password_env}    ports:
      - "127.0.0.1:5432:5432"
    volumes:
      - ./:/docker-entrypoint-initdb.d:ro     # this folder: 01-schema.sql, 02-..., 03-...
      - ../ssl:/tsaccess-ssl:ro
    entrypoint:
      - sh
      - -c
      - >-
{entrypoint}
"""


def render_init(
    policy: Policy, out_dir: str | Path, *, timescaledb: bool | None = None
) -> list[Path]:
    """Write the policy as psql scripts plus a docker-compose.yml; returns the files written.

    Passwords are psql variables read from ``TSACCESS_PASSWORD_<USER>`` with ``\\getenv``
    (psql 15+); a missing variable stops the script. ``timescaledb`` defaults to the policy
    (True unless ``timescaledb = "off"``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ts = policy.timescaledb != "off" if timescaledb is None else timescaledb
    steps, _ = build_steps(policy, None, {}, timescaledb=ts)
    header = (
        f"-- Rendered by tsaccess from {policy.source or 'a policy'}; do not edit by hand.\n"
        "\\set ON_ERROR_STOP on\nBEGIN;\n"
    )
    files: list[Path] = []
    for n, phase, title in (
        (1, "schema", "schema"),
        (2, "security", "security"),
        (3, "audit", "audit"),
    ):
        body = "".join(
            f"-- {s.summary}\n{s.psql if s.psql else s.text(redact=False)};\n"
            for s in steps
            if s.phase == phase
        )
        path = out / f"0{n}-{title}.sql"
        path.write_text(header + body + "COMMIT;\n", encoding="utf-8")
        files.append(path)
    env_lines = "".join(
        f"      {u.password_env}: ${{{u.password_env}:?set {u.password_env}}}\n"
        for u in policy.users
    )
    compose = out / "docker-compose.yml"
    compose.write_text(
        _COMPOSE.format(
            database=policy.database,
            password_env=env_lines,
            entrypoint=textwrap.indent(entrypoint_script(), " " * 8),
        ),
        encoding="utf-8",
    )
    files.append(compose)
    return files
