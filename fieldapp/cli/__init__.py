"""The ``fieldapp`` command line. ``app`` holds the group and the dispatcher."""

from fieldapp.cli.app import cli, exit_code_for, main, run
from fieldapp.cli.state import CliState

__all__ = ["CliState", "cli", "exit_code_for", "main", "run"]
