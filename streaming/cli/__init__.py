"""The ``xray`` command: parses arguments, builds the configuration and calls one importable function per
subcommand (``main.main`` is the console script).
"""

__all__ = ["main"]
