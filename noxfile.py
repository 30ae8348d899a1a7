"""Sessions: lint, typecheck, tests, docker, demo, bench, examples, docs.

``nox`` (the default sessions: lint, typecheck, tests, docker) is the README's test command and
what CI runs. Sessions reuse their virtualenvs (``-R`` skips reinstalling).
"""

from __future__ import annotations

import glob
import os
import shutil

import nox
from nox.command import CommandFailed

nox.options.sessions = ["lint", "typecheck", "tests", "docker"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests against a real throwaway TLS server (docker-marked aside)."""
    session.install("-e", ".[test]")
    # The local backend when PostgreSQL's server binaries are here (fast, and its server log is
    # readable by the tests); the Docker backend has a session of its own. TSACCESS_TEST_BACKEND
    # overrides.
    local = shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb")
    backend = os.environ.get("TSACCESS_TEST_BACKEND") or ("local" if local else "auto")
    session.run(
        "pytest", "-m", "not docker", *session.posargs, env={"TSACCESS_TEST_BACKEND": backend}
    )


# The integration tests that also run on the Docker backend (through testcontainers).
DOCKER_SUITE = [
    "tests/integration/test_docker.py",
    "tests/integration/test_connection.py",
    "tests/integration/test_bootstrap.py",
    "tests/integration/test_audit.py",
    "tests/integration/test_timescaledb.py",
]


@nox.session
def docker(session: nox.Session) -> None:
    """Connection, bootstrap, audit and TimescaleDB tests on a container of TSACCESS_TEST_IMAGE.

    Skipped when no Docker engine answers or the image can be neither found nor pulled, unless
    TSACCESS_REQUIRE_DOCKER=1 (CI): then that is an error.
    """
    session.install("-e", ".[test,docker]")
    # the same checks as the backend itself: an engine (DOCKER_HOST honoured), then the image
    probe = (
        "from tsaccess.ephemeral.docker import _client, _ensure_image, default_image\n"
        "c = _client()\n"
        "assert c is not None, 'no Docker engine answers'\n"
        "_ensure_image(c, default_image())\n"
    )
    try:
        session.run("python", "-c", probe, silent=True)
    except CommandFailed:
        if os.environ.get("TSACCESS_REQUIRE_DOCKER") != "1":
            session.skip(
                "no Docker engine answers, or TSACCESS_TEST_IMAGE (default: the official "
                "timescale/timescaledb image) is neither present nor pullable; "
                "TSACCESS_REQUIRE_DOCKER=1 makes this an error"
            )
        session.run("python", "-c", probe)  # again, loud: its error says what is missing
        raise
    session.run(
        "pytest", *(session.posargs or DOCKER_SUITE), env={"TSACCESS_TEST_BACKEND": "docker"}
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + format check + the import-linter contracts (layers, see pyproject.toml)."""
    session.install("ruff>=0.5", "import-linter>=2.1")
    session.run("ruff", "check", "src", "tests", "bench", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "examples", "noxfile.py")
    session.run("lint-imports", env={"PYTHONPATH": "src"})


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the benchmarks."""
    session.install("-e", ".", "mypy>=1.10")
    session.run("mypy", "--strict")
    session.run("mypy", "--strict", "bench")


@nox.session
def demo(session: nox.Session) -> None:
    """The tutorial's whole journey on a throwaway server: `tsaccess demo`."""
    session.install("-e", ".")
    session.run("tsaccess", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks under bench/ (ratios against a baseline measured in the same run)."""
    session.install("-e", ".")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session
def examples(session: nox.Session) -> None:
    """Run every script in examples/ (and the notebook) against a throwaway server."""
    session.install("-e", ".[examples]")
    session.run("python", "examples/run_all.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
