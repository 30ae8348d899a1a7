"""Sessions: tests, lint, typecheck, demo, bench, examples, docs.

``nox -s tests`` is what CI runs. Sessions reuse their virtualenvs (``-R`` skips reinstalling).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests against a real throwaway TLS server."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + format check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "bench", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "examples", "noxfile.py")


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
