"""The ``fieldapp`` command line. ``app`` holds the group and the dispatcher."""

from fieldapp.cli.app import CliState, cli, exit_code_for, main, run

__all__ = ["CliState", "cli", "exit_code_for", "main", "run"]
