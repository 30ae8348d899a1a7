"""From a policy to the database: plan, apply, saved plans, many databases, ``init/`` scripts.

Bottom to top: the phases (:mod:`~tsaccess.plan.phases`, in the order they run; the audit phase
is :mod:`tsaccess.audit.ddl`) speak the step vocabulary of :mod:`tsaccess.steps`;
:mod:`~tsaccess.plan.build` puts every phase's steps in order; :mod:`~tsaccess.plan.format`
prints them like ``terraform plan``; :mod:`~tsaccess.plan.render_init` writes them as psql
scripts; :mod:`~tsaccess.plan.compose` reads the catalog, plans and applies in one transaction;
:mod:`~tsaccess.plan.saved` saves and applies exact plans; :mod:`~tsaccess.plan.targets` brings
one policy to many databases and verifies each.
"""

from tsaccess.plan.compose import ApplyResult, Plan, apply, install_audit, plan, render_init

__all__ = ["ApplyResult", "Plan", "apply", "install_audit", "plan", "render_init"]
