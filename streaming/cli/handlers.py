"""What each ``xray`` command does: one function per command, ``(args, config) -> exit code``, each calling
one importable function of its package. Imports are inside the functions: ``xray --help`` and a user error
load none of Spark, MLflow or delta-rs. The command table (``streaming.cli.table``) says which function runs
for which name.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from streaming.cli.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR
from streaming.core.config import XrayConfig
from streaming.core.names import LAYERS


def _spark(config: XrayConfig):  # keeps pyspark out of the import path of `--help`
    from streaming.lakehouse.session import get_spark

    return get_spark(config)


def stream(args: argparse.Namespace, config: XrayConfig) -> int:
    import signal

    from streaming.ops.forget import finish_pending_erasures
    from streaming.pipeline.service import run_stream
    from streaming.pipeline.stopping import StopEvent, StopWatchdog, install_stop_signals

    finish_pending_erasures(config)  # an interrupted `xray forget`, finished before any batch runs
    layers = LAYERS if not args.layer or "all" in args.layer else tuple(args.layer)
    if args.once and not args.watch:
        from streaming.pipeline.idle import nothing_to_do

        idle = nothing_to_do(config, layers)  # in a second, from files and Delta logs: no JVM for nothing
        if idle:
            print(f"xray stream --once: {idle}")
            return EXIT_OK
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
    from streaming.ops.sendresults import results_task

    # Beside the queries of continuous mode; None when both retrain triggers are off / no results_destination.
    background = [task for task in (retrain_task(config), results_task(config)) if task]
    try:
        service = run_stream(_spark(config), config, layers=layers, once=args.once, watch_inbox=args.watch,
                             timeout=args.timeout, stop_event=stop_event,
                             background=background)
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
    if args.once and not service.processed and stop_event.signum is None:
        print("xray stream --once: nothing new: no file in landing to ingest, no batch to replay, no image to score")
    return EXIT_OK  # SIGTERM included: the service's normal stop (see streaming/cli/exits.py)


def watch(args: argparse.Namespace, config: XrayConfig) -> int:
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


def receive(args: argparse.Namespace, config: XrayConfig) -> int:
    import signal

    from streaming.ingest.receive import receive

    stopped_by = receive(config, args.port, args.ae_title, allow_remote=args.allow_remote)
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else EXIT_OK


def send_results(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ops.sendresults import send_results

    report = send_results(config, args.to, args.limit)
    print(f"sent {report.sent} report(s); {report.already_sent} sent before, {report.not_dicom} not DICOM (no "
          f"instance to refer to), {report.missing_original} without their original in bronze, "
          f"{report.refused} refused by the destination")
    return EXIT_OK if report.refused == 0 else EXIT_USER_ERROR


def ingest_kaggle(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ingest import ingest_kaggle

    # Spark starts only to record the run, after the download and staging checked everything.
    ingest_kaggle(None, config, download_dir=args.download_dir, **_staging_options(args))
    return 0


def ingest_folder(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ingest import ingest_folder

    ingest_folder(None, config, args.path, labels=args.labels, **_staging_options(args))
    return 0


def retrain(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.retraining import run_cycle

    config = config.with_overrides(model_family=args.family, retrain_max_minutes=args.max_minutes)
    if args.every is not None:
        return _retrain_every(args, config)
    # Under the lock of periodic retraining, recorded in retrain_runs: the schedule counts from this run.
    run_cycle(lambda: _spark(config), config, seed=args.seed, force_promote=args.force_promote, full=False)
    return 0


def _retrain_every(args: argparse.Namespace, config: XrayConfig) -> int:
    """`xray retrain --every`: a service like `xray stream`; a stop signal ends the wait at once, a running
    cycle first (a second Ctrl-C aborts it); SIGTERM exits 0, Ctrl-C 130."""
    import signal

    from batch.retraining import RetrainLoop
    from batch.training.schedule import RetrainPolicy, format_duration, parse_duration
    from streaming.core.signals import StopEvent, stop_on_signals

    every = parse_duration(args.every)
    log = logging.getLogger(__name__)
    stop_event = StopEvent()
    restore = stop_on_signals(stop_event, lambda signum: log.info(
        "retrain: stopping (signal %d) once the running cycle, if any, ends", signum))
    try:
        log.info("retrain: a cycle every %s (Ctrl-C or SIGTERM stops)", format_duration(every))
        # Spark starts when the first cycle is due: waiting hours holds no JVM.
        RetrainLoop(config, RetrainPolicy.from_config(config, every=every), lambda: _spark(config),
                    "xray retrain --every", seed=args.seed).run(stop_event)
    finally:
        restore()
    if stop_event.signum == signal.SIGINT:
        print("xray retrain: interrupted (Ctrl-C); stopped between cycles", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK  # SIGTERM included: the service's normal stop, as for xray stream


def metrics(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.evaluation.metrics import run_metrics

    run_metrics(_spark(config), config, all_versions=args.all_versions, write_report=not args.no_report)
    return 0


def rescore(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.training.rescore import rescore

    rescore(_spark(config), config)
    return 0


def feedback(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ops.audit import current_run_id
    from streaming.ops.feedback import feedback_command

    # delta-rs only, no Spark: a label is recorded in about a second, beside a running stream.
    report = feedback_command(config, image_id=args.image_id, label=args.label, reader=args.reader,
                              comment=args.comment, csv_path=args.csv, run_id=current_run_id())
    for line in report.lines():
        print(line)
    report.check()  # refused rows: exit 2 naming their lines, after the good ones are recorded
    return 0


def refeature(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.silver.refeature import CHUNK_IMAGES, refeature

    refeature(_spark(config), config, chunk_images=args.chunk_images or CHUNK_IMAGES)
    return 0


def status(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ops.status import print_status

    # Status reads Delta logs and small columns with delta-rs: no Spark start unless the engine needs it.
    print_status(_spark(config) if config.delta_engine == "delta-spark" else None, config, as_json=args.json)
    return 0


def serve(args: argparse.Namespace, config: XrayConfig) -> int:
    import signal

    from streaming.ops.serve import listen_address, serve

    address = listen_address(config, args.host, args.port)  # messages name the option or the setting
    stopped_by = serve(config, address.host, address.port, allow_remote=args.allow_remote, address=address)
    # SIGTERM is the normal stop of a service (exit 0, as for `xray stream`); Ctrl-C is 130.
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else EXIT_OK


def maintain(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.lakehouse.enginechoice import native_session
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


def recover(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.pipeline.consistency import recover

    for rewind in recover(config, tuple(args.query or LAYERS)):
        print(rewind.describe())
    return 0


def forget(args: argparse.Namespace, config: XrayConfig) -> int:
    from streaming.ops.audit import current_run_id
    from streaming.ops.forget import forget_patient

    # delta-rs only: no Spark session, so an erasure runs beside a stream without competing for memory.
    for line in forget_patient(config, args.patient, yes=args.yes, run_id=current_run_id()).lines():
        print(line)
    return 0


def demo(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.demo import run_demo

    run_demo(_spark(config), config, per_class=args.per_class, source=args.source)
    return 0


def bench(args: argparse.Namespace, config: XrayConfig) -> int:
    from batch.bench.main import run_bench

    run_bench(config, data=args.data, output=args.output, only=args.only, max_files=args.files,
              copies=args.copies, image_format=args.image_format)
    return 0
