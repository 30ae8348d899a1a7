"""The ``tsaccess`` command (:mod:`~tsaccess.cli.main`): argparse, exit codes, JSON output.

:mod:`~tsaccess.cli.plan` holds ``plan``/``apply`` (saved plans, confirmation) and
:mod:`~tsaccess.cli.tools` ``check``, ``audit``, ``certs`` and several targets. Only the CLI
configures logging.
"""

from tsaccess.cli.main import main

__all__ = ["main"]
