"""The access matrix: every privilege tried as every user by every path (tables, columns, chunks,
views, aggregates, the audit trail), compared with what the policy says.

:mod:`~tsaccess.verify.run` connects and tries; :mod:`~tsaccess.verify.matrix` holds the cells
and renders them; :mod:`~tsaccess.verify.timescale` finds TimescaleDB's extra objects.
"""

from tsaccess.verify.matrix import AccessMatrix, Cell
from tsaccess.verify.run import verify

__all__ = ["AccessMatrix", "Cell", "verify"]
