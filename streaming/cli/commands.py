"""The ``xray`` command: parses options, builds the config and calls one function per subcommand.

Every subcommand accepts the common options (``--lakehouse``, ``--config``, ``--master``, ...) anywhere
on the line, so job definitions (Databricks wheel tasks, spark-submit) pass them as they like.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from streaming.cli.exits import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    Terminated,
    package_version,
    terminate_on_sigterm,
)
from streaming.cli.parser import COMMON_CONFIG_OPTIONS, build_parser
from streaming.cli.preflight import preflight
from streaming.core.config import XrayConfig, load_config
from streaming.core.errors import XrayError, is_transported
from streaming.core.names import LAYERS
from streaming.core.permissions import apply_permissions
from streaming.ops.audit import CommandAudit
from streaming.ops.sql import sql_command


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


def _run(args: argparse.Namespace, config: XrayConfig) -> int:
    handlers: dict[str, Callable[[argparse.Namespace, XrayConfig], int]] = {
        "stream": _stream,
        "watch": _watch,
        "ingest-kaggle": _ingest_kaggle,
        "ingest-folder": _ingest_folder,
        "retrain": _retrain,
        "metrics": _metrics,
        "rescore": _rescore,
        "feedback": _feedback,
        "refeature": _refeature,
        "status": _status,
        "serve": _serve,
        "sql": sql_command,
        "maintain": _maintain,
        "recover": _recover,
        "forget": _forget,
        "demo": _demo,
        "bench": _bench,
    }
    return handlers[args.command](args, config)


def _spark(config: XrayConfig):  # noqa: ANN202 - keeps pyspark out of the import path of `--help`
    from streaming.lakehouse.session import get_spark

    return get_spark(config)


def _stream(args: argparse.Namespace, config: XrayConfig) -> int:
    import signal

    from streaming.pipeline.service import run_stream
    from streaming.pipeline.stopping import StopEvent, StopWatchdog, install_stop_signals

    layers = LAYERS if not args.layer or "all" in args.layer else tuple(args.layer)
    # Signals are handled before Spark starts, so SIGTERM during start-up also ends cleanly.
    stop_event = StopEvent()
    restore = install_stop_signals(stop_event)
    watchdog = StopWatchdog(stop_event)  # a stop that does not end within its deadline ends the process
    watchdog.start()
    warming = None
    if "gold" in layers:
        from streaming.gold.scoring import warm_up

        warming = warm_up(config)  # loads the champion while Spark starts
    from batch.retraining import retrain_task

    retraining = retrain_task(config)  # beside the queries of continuous mode; None when both triggers are off
    try:
        run_stream(_spark(config), config, layers=layers, once=args.once, watch_inbox=args.watch,
                   timeout=args.timeout, stop_event=stop_event, background=[retraining] if retraining else [])
    finally:
        restore()
        if warming is not None:
            warming.join(timeout=60)  # never exit in the middle of loading native libraries
        if "pyspark" in sys.modules:
            from streaming.lakehouse.session import stop_owned_sessions

            stop_owned_sessions()  # Spark's own stop is part of the service's: under the watchdog too
        watchdog.finish()
    if stop_event.signum == signal.SIGINT:
        print("xray stream: interrupted (Ctrl-C); stopped at a micro-batch boundary", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK  # SIGTERM included: the service's normal stop (see streaming/cli/exits.py)


def _watch(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ingest.watch import watch_inbox

    watch_inbox(config, args.inbox, timeout=args.timeout)
    return 0


def _staging_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "sample_per_class": args.sample,
        "splits": tuple(s.strip() for s in args.splits.split(",") if s.strip()),
        "seed": args.seed,
        "batch_files": args.batch_files,
        "interval_seconds": args.interval_seconds,
    }


def _ingest_kaggle(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ingest import ingest_kaggle

    # Spark starts only to record the run, after the download and staging checked everything.
    ingest_kaggle(None, config, download_dir=args.download_dir, **_staging_options(args))
    return 0


def _ingest_folder(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ingest import ingest_folder

    ingest_folder(None, config, args.path, labels=args.labels, **_staging_options(args))
    return 0


def _retrain(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.retraining import run_cycle

    if args.every is not None:
        return _retrain_every(args, config)
    # Under the lock of periodic retraining, recorded in retrain_runs: the schedule counts from this run.
    run_cycle(lambda: _spark(config), config, seed=args.seed, force_promote=args.force_promote, full=False)
    return 0


def _retrain_every(args: argparse.Namespace, config: XrayConfig) -> int:
    """`xray retrain --every`: a service like `xray stream`; a stop signal ends the wait at once, a running
    cycle first (a second Ctrl-C aborts it); SIGTERM exits 0, Ctrl-C 130."""
    import signal
    import threading

    from batch.retraining import RetrainLoop
    from batch.training.schedule import RetrainPolicy, format_duration, parse_duration

    every = parse_duration(args.every)
    stop_event, received = threading.Event(), []

    def handle(signum, frame):  # noqa: ANN001
        if stop_event.is_set():
            signal.default_int_handler(signum, frame)
        received.append(signum)
        logging.getLogger(__name__).info("retrain: stopping (signal %d) once the running cycle, if any, ends",
                                         signum)
        stop_event.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        logging.getLogger(__name__).info("retrain: a cycle every %s (Ctrl-C or SIGTERM stops)",
                                         format_duration(every))
        # Spark starts when the first cycle is due: waiting hours holds no JVM.
        RetrainLoop(config, RetrainPolicy.from_config(config, every=every), lambda: _spark(config),
                    "xray retrain --every", seed=args.seed).run(stop_event)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signal.SIGINT in received:
        print("xray retrain: interrupted (Ctrl-C); stopped between cycles", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK  # SIGTERM included: the service's normal stop, as for xray stream


def _metrics(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.evaluation.metrics import run_metrics

    run_metrics(_spark(config), config, all_versions=args.all_versions, write_report=not args.no_report)
    return 0


def _rescore(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.training.rescore import rescore

    rescore(_spark(config), config)
    return 0


def _feedback(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ops.audit import current_run_id
    from streaming.ops.feedback import feedback_command

    # delta-rs only, no Spark: a label is recorded in about a second, beside a running stream.
    report = feedback_command(config, image_id=args.image_id, label=args.label, reader=args.reader,
                              comment=args.comment, csv_path=args.csv, run_id=current_run_id())
    for line in report.lines():
        print(line)
    report.check()  # refused rows: exit 2 naming their lines, after the good ones are recorded
    return 0


def _refeature(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.silver.refeature import CHUNK_IMAGES, refeature

    refeature(_spark(config), config, chunk_images=args.chunk_images or CHUNK_IMAGES)
    return 0


def _status(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ops.status import print_status

    # Status reads Delta logs and small columns with delta-rs: no Spark start unless the engine needs it.
    print_status(_spark(config) if config.delta_engine == "delta-spark" else None, config, as_json=args.json)
    return 0


def _serve(args: argparse.Namespace, config: XrayConfig) -> int:
    import signal

    from streaming.ops.serve import serve

    stopped_by = serve(config, args.host or config.serve_host, config.serve_port if args.port is None else args.port,
                       allow_remote=args.allow_remote)
    # SIGTERM is the normal stop of a service (exit 0, as for `xray stream`); Ctrl-C is 130.
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else EXIT_OK


def _maintain(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.lakehouse.engine import native_session
    from streaming.ops.maintain import maintain_command

    # delta-rs does the work and records the row (no Spark session starts), unless the lakehouse uses the
    # native engine: then Delta Lake's own OPTIMIZE and VACUUM.
    report = maintain_command(config, tables=args.table, retention_hours=args.retention_hours,
                              dry_run=args.dry_run, spark=native_session(config, _spark))
    if report.errors:
        print(f"xray maintain: {len(report.errors)} table(s) failed (see above), the others were maintained; "
              "run it again, and for a damaged table see README: Recovery", file=sys.stderr)
        return EXIT_USER_ERROR
    return EXIT_OK


def _recover(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.pipeline.consistency import recover

    for rewind in recover(config, tuple(args.query or LAYERS)):
        print(rewind.describe())
    return 0


def _forget(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ops.audit import current_run_id
    from streaming.ops.forget import forget_patient

    # delta-rs only: no Spark session, so an erasure runs beside a stream without competing for memory.
    for line in forget_patient(config, args.patient, yes=args.yes, run_id=current_run_id()).lines():
        print(line)
    return 0


def _demo(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.demo import run_demo

    run_demo(_spark(config), config, per_class=args.per_class, source=args.source)
    return 0


def _bench(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.bench.main import run_bench

    run_bench(config, data=args.data, output=args.output, only=args.only, max_files=args.files,
              copies=args.copies, image_format=args.image_format)
    return 0


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
    audit = CommandAudit(args.command, vars(args), package_version())
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
        # First thing after logging: every file any command writes is private (see streaming/permissions.py).
        apply_permissions(config)
        audit.bind(config)
        # Arguments, paths and the command's input, before any JVM starts: mistakes answered in a second.
        preflight(args, config)
        audit.started()
        try:
            return _run(args, config)
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
