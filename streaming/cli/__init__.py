"""The ``xray`` command: parses arguments, builds the configuration and calls one importable function per
subcommand, as the command table (``streaming.cli.table``) declares them. ``streaming.cli:main`` is the console script (setup.cfg) and the Databricks wheel entry point;
``python -m streaming.cli`` runs it too.
"""

from streaming.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
