"""The phases of a plan, in the order :func:`tsaccess.plan.build.build_steps` runs them.

1. :mod:`~tsaccess.plan.phases.tables` — schema: tables, columns, time indexes, hypertables;
2. :mod:`~tsaccess.plan.phases.roles` — security: group roles, login users, memberships, settings;
3. :mod:`~tsaccess.plan.phases.acl` — security: database, schema, table and column privileges,
   default privileges;
4. the audit phase (:mod:`tsaccess.audit.ddl`, below the plan: it only speaks the step
   vocabulary of :mod:`tsaccess.steps`);
5. :mod:`~tsaccess.plan.phases.slices` and :mod:`~tsaccess.plan.phases.timescale` — row slices,
   chunk ACLs, compression, continuous aggregates (audited retention:
   :mod:`tsaccess.audit.retention`);
6. :mod:`~tsaccess.plan.phases.markers` — the managed marker on roles and tables;
7. :mod:`~tsaccess.plan.phases.prune` — what the policy no longer names.

Every phase compares the policy with a catalog snapshot (``None``: an empty database) and returns
only the steps that make a difference.
"""
