"""The ``xray`` command: parses options, builds the config, checks, and runs the command the table names.

Every subcommand accepts the common options (``--lakehouse``, ``--config``, ``--master``, ...) anywhere
on the line, so job definitions (Databricks wheel tasks, spark-submit) pass them as they like. What each
command is (its options, its function, its check, whether it writes) is declared once in
``streaming.cli.table``.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import sys
from collections.abc import Sequence
from typing import Any

from streaming.cli.exits import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    package_version,
    terminate_on_sigterm,
)
from streaming.cli.parser import COMMON_CONFIG_OPTIONS
from streaming.cli.preflight import preflight
from streaming.cli.table import COMMANDS_BY_NAME, build_parser
from streaming.core.config import XrayConfig, load_config
from streaming.core.errors import XrayError, is_transported
from streaming.core.permissions import apply_permissions
from streaming.ops.audit import CommandAudit


def config_from_args(args: argparse.Namespace) -> XrayConfig:
    """The configuration: file and environment, overridden by the options given on the command line."""
    overrides: dict[str, Any] = {key: getattr(args, option, None) for option, key in COMMON_CONFIG_OPTIONS.items()}
    if getattr(args, "trigger_seconds", None) is not None:
        overrides["trigger_seconds"] = args.trigger_seconds
    if getattr(args, "max_files_per_trigger", None) is not None:
        overrides["max_files_per_trigger"] = args.max_files_per_trigger
    if getattr(args, "stable_seconds", None) is not None:
        overrides["watch_stable_seconds"] = args.stable_seconds
    if getattr(args, "dataset", None) is not None:
        overrides["kaggle_dataset"] = args.dataset
    return load_config(args.config, **overrides)


def _not_a_named_error(record: logging.LogRecord) -> bool:
    return not (record.exc_info and is_transported(str(record.exc_info[1])))


def _configure_logging(config: XrayConfig) -> None:
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "urllib3", "alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A named error raised in a micro-batch crosses the JVM and is printed below as one line; py4j's
    # own report of it would add a Python traceback.
    logging.getLogger("py4j.clientserver").addFilter(_not_a_named_error)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xray`` console script; returns the exit code (see streaming/cli/exits.py)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # A native crash (a library aborting) then leaves every thread's Python stack in the log.
    with contextlib.suppress(ValueError, OSError, AttributeError):  # stderr without a file (captured)
        faulthandler.enable()
    # Commands that change the lakehouse leave a started and a finished row in audit_log (README: Audit
    # trail); the audit neither changes the command's exit code nor hides its result.
    audit = CommandAudit(args.command, vars(args), package_version(), COMMANDS_BY_NAME[args.command].audited)
    restore_sigterm = terminate_on_sigterm()
    code = EXIT_INTERNAL
    try:
        code = _main(args, audit)
    except BaseException as error:  # a bug (Python prints the traceback) or an exit from inside a command
        code = error.code if isinstance(error, SystemExit) and isinstance(error.code, int) else EXIT_INTERNAL
        audit.failed(error)
        raise
    finally:
        restore_sigterm()
        audit.finish(code)
    return code


def _main(args: argparse.Namespace, audit: CommandAudit) -> int:
    """Configure, check, run the command; a named error, a storage failure or a signal ends in one line."""
    try:
        config = config_from_args(args)
        _configure_logging(config)
        # First thing after logging: every file any command writes is private (see streaming/core/permissions.py).
        apply_permissions(config)
        audit.bind(config)
        # Arguments, paths and the command's input, before any JVM starts: mistakes answered in a second.
        command = COMMANDS_BY_NAME[args.command]
        preflight(args, config, command)
        audit.started()
        try:
            return command.run(args, config)
        finally:
            if "pyspark" in sys.modules:
                from streaming.lakehouse.session import stop_owned_sessions

                stop_owned_sessions()
    except XrayError as error:
        audit.failed(error)
        print(f"xray {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:
        # A full disk or a damaged Delta log met outside the translated paths: still one line, no trace.
        from streaming.lakehouse.failures import storage_error

        named = storage_error(error)
        if named is None:
            raise
        audit.failed(named)
        print(f"xray {args.command}: error: {named}", file=sys.stderr)
        return named.exit_code
    except KeyboardInterrupt:
        print(f"xray {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"xray {args.command}: terminated (SIGTERM) before it finished; run it again",
              file=sys.stderr)
        return EXIT_TERMINATED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
