"""Sessions: lint, typecheck, tests, preflight, docker, demo, bench, examples, docs.

``nox`` (the default sessions: lint, typecheck, tests, preflight, docker) is the README's test
command and what CI runs. Sessions reuse their virtualenvs (``-R`` skips reinstalling).
"""

from __future__ import annotations

import glob
import os
import shutil
import tomllib
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "preflight", "docker"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests against a real throwaway TLS server (docker-marked aside)."""
    session.install("-e", ".[test,speed]")
    _native(session)
    # The local backend when PostgreSQL's server binaries are here (fast, and its server log is
    # readable by the tests); the Docker backend has a session of its own. TSACCESS_TEST_BACKEND
    # overrides.
    session.run(
        "pytest",
        "-m",
        "not docker",
        *session.posargs,
        env={"TSACCESS_TEST_BACKEND": _local_backend()},
    )


def _native(session: nox.Session) -> None:
    """Install the compiled trigger functions (``tsaccess native install``) into the newest
    local PostgreSQL when this machine can build them (root, cc, make, the server headers): the
    local servers of the tests, the demo and the benchmarks then have them, as a production
    server with the library would. Else says why and goes on (the PL/pgSQL functions are
    used), unless TSACCESS_REQUIRE_NATIVE=1 (CI): then that is an error."""
    configs = glob.glob("/usr/lib/postgresql/*/bin/pg_config")
    pg_config = max(configs, key=lambda p: int(p.split("/")[-3]), default=None)
    major = pg_config.split("/")[-3] if pg_config else ""
    headers = Path(f"/usr/include/postgresql/{major}/server/postgres.h").is_file()
    cause = (
        "no /usr/lib/postgresql/*/bin/pg_config"
        if pg_config is None
        else "not root (the library goes into PostgreSQL's directories)"
        if os.geteuid() != 0
        else "no C compiler or make"
        if not (shutil.which("cc") and shutil.which("make"))
        else None
    )
    if cause is None and not headers:
        cause = "no server headers (postgresql-server-dev-<major>)"
    if cause is not None:
        if os.environ.get("TSACCESS_REQUIRE_NATIVE") == "1":
            session.error(f"cannot install tsaccess_native: {cause} (TSACCESS_REQUIRE_NATIVE=1)")
        session.log(f"tsaccess_native not installed ({cause}): the PL/pgSQL functions are used")
        return
    assert pg_config is not None
    session.run("tsaccess", "native", "install", "--pg-config", pg_config)


def _local_backend() -> str:
    local = shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb")
    return os.environ.get("TSACCESS_TEST_BACKEND") or ("local" if local else "auto")


def _sqlglot_range() -> tuple[str, str]:
    """(the oldest release, the whole range) of sqlglot, as pyproject.toml declares it."""
    project = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]
    spec = next(d for d in project["dependencies"] if d.startswith("sqlglot"))
    oldest = next(part.strip()[2:] for part in spec[7:].split(",") if ">=" in part)
    return f"sqlglot=={oldest}", spec


PREFLIGHT_TESTS = ["tests/unit/test_preflight_*.py", "tests/integration/test_preflight*.py"]


@nox.session
@nox.parametrize("sqlglot", ["oldest", "newest"])
def preflight(session: nox.Session, sqlglot: str) -> None:
    """The pre-flight tests on the oldest and on the newest sqlglot of the declared range
    (pure Python: without the compiled extra), so the range in pyproject.toml stays honest."""
    session.install("-e", ".[test]")
    oldest, whole = _sqlglot_range()
    session.install("--upgrade", oldest if sqlglot == "oldest" else whole)
    session.run("python", "-c", "import sqlglot; print('sqlglot', sqlglot.__version__)")
    tests = [f for pattern in PREFLIGHT_TESTS for f in sorted(glob.glob(pattern))]
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        *(session.posargs or tests),
        env={"TSACCESS_TEST_BACKEND": _local_backend()},
    )


# The integration tests that also run on the Docker backend (through testcontainers).
DOCKER_SUITE = [
    "tests/integration/test_docker.py",
    "tests/integration/test_connection.py",
    "tests/integration/test_bootstrap.py",
    "tests/integration/test_audit.py",
    "tests/integration/test_timescaledb.py",
]


def _docker_cause() -> str | None:
    """Why Docker cannot run the test image here (None: it can), asked with the standard library
    only (``src/tsaccess/ephemeral/engine.py``, loaded by path): nothing is installed first."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tsaccess_engine", Path("src/tsaccess/ephemeral/engine.py")
    )
    assert spec is not None and spec.loader is not None
    engine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(engine)
    image = os.environ.get("TSACCESS_TEST_IMAGE")
    if not image:  # as tsaccess.ephemeral.docker.default_image: the local PostgreSQL's major
        majors = [int(p.split("/")[-3]) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
        image = f"timescale/timescaledb:latest-pg{max(majors, default=17)}"
    cause: str | None = engine.probe(image)
    return cause


@nox.session
def docker(session: nox.Session) -> None:
    """Connection, bootstrap, audit and TimescaleDB tests on a container of TSACCESS_TEST_IMAGE.

    Decided before anything is installed: skipped, with the exact cause, when the engine
    (DOCKER_HOST, else the local socket) does not answer or the image is neither present nor
    pullable, unless TSACCESS_REQUIRE_DOCKER=1 (CI): then that cause is the error.
    """
    cause = _docker_cause()
    if cause is not None:
        if os.environ.get("TSACCESS_REQUIRE_DOCKER") == "1":
            session.error(f"{cause} (TSACCESS_REQUIRE_DOCKER=1: an error, not a skip)")
        session.skip(f"{cause}; TSACCESS_REQUIRE_DOCKER=1 makes this an error")
    session.install("-e", ".[test,docker]")
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
    session.install("-e", ".[monitor]", "mypy>=1.10")
    session.run("mypy", "--strict")
    session.run("mypy", "--strict", "bench")


@nox.session
def demo(session: nox.Session) -> None:
    """The tutorial's whole journey on a throwaway server: `tsaccess demo` (with the monitor
    extra, so the demo shows one scrape of `tsaccess monitor`)."""
    session.install("-e", ".[monitor]")
    _native(session)
    session.run("tsaccess", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks under bench/ (ratios against a baseline measured in the same run)."""
    session.install("-e", ".[monitor]")
    _native(session)
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
