"""Roles are the cluster's: a plan that changes one another database's policy manages says so.

Roles, memberships, ``LOGIN``, ``BYPASSRLS``, passwords and settings for every database belong to
the cluster, not to the database a policy is applied to. tsaccess marks each role it manages with
the databases whose policies manage it (:mod:`tsaccess.plan.phases.markers`). A step that would
change such a role while another of those databases relies on it — its attributes, password,
``BYPASSRLS`` or settings (``ALTER ROLE``, not ``ALTER ROLE ... IN DATABASE``), who is a member
of it, or dropping it — is a :class:`ClusterChange`: :func:`tsaccess.plan.compose.plan` lists them among
its warnings and :func:`tsaccess.plan.compose.apply` refuses the plan unless
``allow_cluster_changes=True`` (``tsaccess apply --allow-cluster-changes``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tsaccess.catalog import CatalogSnapshot
from tsaccess.plan.phases.markers import marked_databases
from tsaccess.steps import Step

__all__ = ["ClusterChange", "cluster_changes"]

_NAME = r'("(?:[^"]|"")+"|[^\s"]+)'
_FORMS = (
    re.compile(r"^ALTER ROLE " + _NAME + r"(?! IN DATABASE )\s"),
    re.compile(r"^DROP ROLE " + _NAME + r"$"),
    re.compile(r"^GRANT " + _NAME + r" TO " + _NAME + r"$"),  # a membership (no ON)
    re.compile(r"^REVOKE " + _NAME + r" FROM " + _NAME + r"$"),
)


@dataclass(frozen=True)
class ClusterChange:
    """A step that changes a role another tsaccess-managed database relies on."""

    role: str
    databases: tuple[str, ...]
    """The other databases whose policies manage the role."""
    summary: str
    """The step, as the plan shows it."""

    def __str__(self) -> str:
        return (
            f"{self.summary}: role {self.role} is cluster-wide and also managed for "
            f"{', '.join(self.databases)}"
        )


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _roles(step: Step) -> list[str]:
    """The roles a step changes cluster-wide whose other databases may rely on the change:
    the role of an ``ALTER ROLE`` or ``DROP ROLE``; for a membership, the group (the databases
    that manage a group rely on who is in it: their slices, their privileges). None for grants
    on objects, comments, ``ALTER ROLE ... IN DATABASE``."""
    text = step.statement.as_string(None)
    for form in _FORMS:
        m = form.match(text)
        if m:
            return [_unquote(m.group(1))]
    return []


def cluster_changes(
    steps: Sequence[Step], cat: CatalogSnapshot | None, database: str
) -> tuple[ClusterChange, ...]:
    """The steps that change a role the policies of other databases manage."""
    if cat is None:
        return ()
    out: list[ClusterChange] = []
    for step in steps:
        for role in _roles(step):
            info = cat.roles.get(role)
            others = tuple(
                d for d in marked_databases(info.comment if info else None) if d != database
            )
            if others:
                out.append(ClusterChange(role, others, step.summary))
    return tuple(out)
