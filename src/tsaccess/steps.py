"""One step of a plan: a SQL statement with a human summary (shared by bootstrap and audit)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from psycopg import sql

Phase = Literal["schema", "security", "audit"]
AUDIT_ONLY: tuple[Phase, ...] = ("audit",)


@dataclass(frozen=True)
class Step:
    """A statement to run. ``secret`` steps carry a password verifier: shown redacted."""

    statement: sql.SQL | sql.Composed
    summary: str
    phase: Phase
    secret: bool = False
    psql: str | None = None
    """The statement as written for psql scripts when it differs (passwords as variables)."""
    action: Literal["add", "change", "revoke"] | None = None
    """``add`` (+), ``change`` (~) or ``revoke`` (-); None: read from the summary's verb."""
    object: str | None = None
    """What the step changes (``table vitals``, ``role nurses``); None: read from the summary."""
    internal: bool = False
    """Bookkeeping shown only in a verbose plan (markers), folded into its object's line."""

    def text(self, *, redact: bool = True) -> str:
        if self.secret and redact:
            return f"-- {self.summary} (statement not shown: it carries a password verifier)"
        return self.statement.as_string(None)


def role_ident(name: str) -> sql.Composable:
    """A grantee: ``PUBLIC`` as the keyword, any other role as a quoted identifier."""
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


def grant_steps(
    target: sql.Composable,
    label: str,
    kind: str,
    have: set[tuple[str, str]],
    want: set[tuple[str, str]],
    phase: Phase,
) -> list[Step]:
    """GRANT what is missing and REVOKE what is extra on ``target``, grouped per grantee.

    ``have``/``want`` hold (grantee, privilege); grantee ``PUBLIC`` for everyone.
    """
    steps: list[Step] = []
    for verb, diff, prep in (("REVOKE", have - want, "FROM"), ("GRANT", want - have, "TO")):
        by_grantee: dict[str, list[str]] = {}
        for grantee, priv in diff:
            by_grantee.setdefault(grantee, []).append(priv)
        for grantee in sorted(by_grantee):
            privs = sorted(by_grantee[grantee])
            steps.append(
                Step(
                    sql.SQL("{verb} {privs} ON {kind} {target} {prep} {who}").format(
                        verb=sql.SQL(verb),
                        privs=sql.SQL(", ").join(sql.SQL(p) for p in privs),
                        kind=sql.SQL(kind),
                        target=target,
                        prep=sql.SQL(prep),
                        who=role_ident(grantee),
                    ),
                    f"{verb.lower()} {', '.join(privs)} on {label} {prep.lower()} {grantee}",
                    phase,
                )
            )
    return steps


def function_grants(acl: Iterable[tuple[str, str]] | None, owner: str) -> set[tuple[str, str]]:
    """The (grantee, privilege) grants a function has besides its owner's; ``acl`` None: the
    function does not exist yet, and will be born executable by PUBLIC."""
    if acl is None:
        return {("PUBLIC", "EXECUTE")}
    return {g for g in acl if g[0] != owner}


def managed_grants(grants: Iterable[tuple[str, str]], public: str) -> set[tuple[str, str]]:
    """The (grantee, privilege) grants a plan compares: all of them, or all but PUBLIC's when
    the policy keeps PUBLIC's privileges as they are (``[database] public = "keep"``)."""
    if public == "keep":
        return {g for g in grants if g[0] != "PUBLIC"}
    return set(grants)
