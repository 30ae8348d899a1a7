"""Install only the audit trail: the audit phase of :func:`tsaccess.bootstrap.apply`.

This module sits above :mod:`tsaccess.bootstrap` (it applies a plan), while
:mod:`tsaccess.audit.ddl` sits below it (the plan's audit steps); the import-linter contract in
``pyproject.toml`` keeps it that way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from tsaccess._steps import AUDIT_ONLY, Step
from tsaccess.policy import Policy

if TYPE_CHECKING:
    from tsaccess.bootstrap import ApplyResult

__all__ = ["install"]


def install(
    conn: psycopg.Connection[Any],
    policy: Policy,
    *,
    on_step: Callable[[int, Step], None] | None = None,
) -> ApplyResult:
    """Install, or bring up to date, only the audit trail of ``policy``, in one transaction.

    The audit part of :func:`tsaccess.bootstrap.apply`: the audit owner role, the audit table,
    the per-row data schema, the definer functions, the triggers on every audited table, the
    ``<audit table>_rows`` view and the audit grants. The tables and group roles must exist
    already (created by ``tsaccess apply`` or by your own migrations); a missing one raises
    :class:`~tsaccess.PolicyError` naming it, before anything runs. Preview with
    ``tsaccess.bootstrap.plan(conn, policy, phases=("audit",))``.

    Returns:
        what was applied (:class:`~tsaccess.bootstrap.ApplyResult`).
    """
    # imported here: bootstrap imports tsaccess.audit.ddl, which loads this package first
    from tsaccess.bootstrap import apply

    return apply(conn, policy, on_step=on_step, phases=AUDIT_ONLY)
