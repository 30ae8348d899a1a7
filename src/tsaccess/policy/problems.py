"""Every error of a policy in one run: the collector the loader and the validators add to, what
the file declares (for "known" lists and to keep one mistake one error), and a key's line.

The loader opens a :func:`collecting` block, parses item by item and builds the
:class:`~tsaccess.policy.Policy` inside it; the policy's validators join that block (a
``ContextVar``) instead of raising. A policy built in code opens its own block. At the end of
the outermost block the errors are raised together: one :class:`~tsaccess.PolicyError`, or a
:class:`~tsaccess.PolicyErrors` listing each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from tsaccess.errors import PolicyError, PolicyErrors

__all__ = ["Problems", "collecting", "key_line"]


class Problems:
    """The errors found so far, and what the policy declares (whatever had an error)."""

    def __init__(self, source: str = "", locate: Callable[[str], int | None] | None = None):
        self.source = source
        self._locate = locate
        self.errors: list[PolicyError] = []
        self._seen: set[str] = set()
        self.tables: dict[str, frozenset[str]] = {}
        """Declared tables and their declared column names."""
        self.roles: set[str] = set()
        self.users: set[str] = set()
        self.aggregates: set[str] = set()

    def add(self, message: str, path: str = "") -> None:
        """Record an error (the same message at the same key once)."""
        line = self._locate(path) if self._locate is not None and path else None
        err = PolicyError(message, path=path, source=self.source, line=line)
        if str(err) not in self._seen:
            self._seen.add(str(err))
            self.errors.append(err)

    def add_error(self, exc: PolicyError) -> None:
        for e in exc.errors if isinstance(exc, PolicyErrors) else (exc,):
            self.add(e.message, e.path)

    @contextmanager
    def catch(self) -> Iterator[None]:
        """Record a :class:`PolicyError` raised inside the block and go on after it."""
        try:
            yield
        except PolicyError as exc:
            self.add_error(exc)

    def reported(self, path: str) -> bool:
        """An error was recorded at ``path`` or inside it."""
        return any(e.path == path or e.path.startswith(path + ".") for e in self.errors)

    def known(self, kind: str, built: Iterable[str]) -> set[str]:
        """The declared names of ``kind`` (``tables``, ``roles``...) and those ``built``."""
        declared: Iterable[str] = getattr(self, kind)
        return set(declared) | set(built)

    def declared_only(self, kind: str, name: str, built: Iterable[str]) -> bool:
        """``name`` was declared but had an error of its own (so it was not built): a
        reference to it is not another error."""
        return name in getattr(self, kind) and name not in set(built)

    def column_declared(self, table: str, column: str) -> bool:
        return column in self.tables.get(table, frozenset())

    def raise_if_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise PolicyErrors(self.errors)


_ACTIVE: ContextVar[Problems | None] = ContextVar("tsaccess_policy_problems", default=None)


@contextmanager
def collecting(
    source: str = "", locate: Callable[[str], int | None] | None = None
) -> Iterator[Problems]:
    """The active collector (joined), or a new one whose errors are raised at the end."""
    outer = _ACTIVE.get()
    if outer is not None:
        yield outer
        return
    problems = Problems(source, locate)
    token = _ACTIVE.set(problems)
    try:
        yield problems
    finally:
        _ACTIVE.reset(token)
    problems.raise_if_any()


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")


def _key_parts(dotted: str) -> list[str]:
    return [p.strip().strip("\"'") for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', dotted)]


def _key_at(line: str, key: str, *, start: bool) -> bool:
    name = rf"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')"
    lead = r"^\s*" if start else r"(?:^|[{,\s])"
    return re.search(lead + name + r"\s*(?:=|\.)", line) is not None


def key_line(text: str, path: str) -> int | None:
    """The 1-based line of the key ``path`` (``roles.clerks.grants.items``) in TOML ``text``,
    as far as it can be found (the deepest key found), else None."""
    parts = _key_parts(re.sub(r"\[\d+\]", "", path))
    if not parts:
        return None
    lines = text.splitlines()
    headers = [
        (i, _key_parts(m.group(1))) for i, ln in enumerate(lines) if (m := _HEADER.match(ln))
    ]
    for k in range(len(parts), -1, -1):
        header: int | None = None
        if k:
            found = [i for i, hp in headers if hp == parts[:k]]
            if not found:
                continue
            header = found[0]
        start = 0 if header is None else header + 1
        end = next((i for i, _ in headers if i >= start), len(lines))
        best, pos = header, start
        for depth, key in enumerate(parts[k:]):
            hit = next(
                (i for i in range(pos, end) if _key_at(lines[i], key, start=depth == 0)), None
            )
            if hit is None:
                break
            best, pos = hit, hit
        if best is not None:
            return best + 1
    return None
