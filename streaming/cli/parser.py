"""The ``xray`` argument parser: the common options every subcommand accepts anywhere on the line, and one
group of subcommands per concern (stream, ingest, model, operations). ``streaming.cli.commands`` runs them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from streaming.cli.exits import (
    EXIT_CODES_HELP,
    package_version,
)
from streaming.core.names import LABELS, LAYERS
from streaming.lakehouse.catalog import ALL_TABLES
from streaming.ops.sql import SQL_HELP, add_sql_arguments

# Options every subcommand accepts; each maps to the config key of the same name.
COMMON_CONFIG_OPTIONS = {
    "lakehouse": "lakehouse",
    "master": "spark_master",
    "delta_engine": "delta_engine",
    "log_level": "log_level",
    "mlflow_tracking_uri": "mlflow_tracking_uri",
}


class _VersionAction(argparse.Action):
    """``--version``: the package's version, then which Delta engine a run would use and why (the options
    given before it, e.g. ``--delta-engine``, count)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: Any) -> None:
        from streaming.core.config import load_config
        from streaming.lakehouse.engine import expected_engine

        config = load_config(delta_engine=getattr(namespace, "delta_engine", None))
        print(f"{parser.prog} {package_version()}\n{expected_engine(config)}")
        parser.exit()


def _common_parser(default: Any) -> argparse.ArgumentParser:
    """The common options. The main parser gives them ``default`` None; each subcommand's copy gives them
    ``argparse.SUPPRESS``, so an option not repeated after the subcommand keeps the value given before it
    (argparse would otherwise overwrite it with the subparser's default) and one given after wins."""
    common = argparse.ArgumentParser(add_help=False, argument_default=default)
    group = common.add_argument_group("common options (before or after COMMAND; given in both places, "
                                      "the one after COMMAND wins)")
    group.add_argument("--lakehouse", metavar="DIR",
                       help="lakehouse root holding tables, landing, checkpoints, models "
                            "(env XRAY_LAKEHOUSE; default ./lakehouse)")
    group.add_argument("--config", metavar="FILE",
                       help="settings file, TOML or YAML (env XRAY_CONFIG; default ./xray.toml if present)")
    group.add_argument("--master", metavar="URL",
                       help="Spark master when no session is active (env XRAY_SPARK_MASTER; default local[*])")
    group.add_argument("--delta-engine", choices=("auto", "delta-rs", "delta-spark"),
                       help="Delta engine: auto uses the native 'delta' format when its jars load, else delta-rs")
    group.add_argument("--mlflow-tracking-uri", metavar="URI",
                       help="MLflow tracking/registry URI (default: SQLite store under the lakehouse)")
    group.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                       help="log verbosity (default INFO); Spark's own warnings show only at DEBUG")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full ``xray`` argument parser (also read by the Terraform checks under tests/)."""
    parser = argparse.ArgumentParser(
        prog="xray",
        description="Chest X-ray lakehouse: stream X-ray files into Delta tables (bronze, silver, gold), "
                    "train and serve a NORMAL/PNEUMONIA classifier, and report its performance.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_parser(default=None)],
    )
    parser.add_argument("--version", action=_VersionAction, help="show the version and the Delta engine, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    after = _common_parser(default=argparse.SUPPRESS)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[after],
                              epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)

    for add_commands in (_stream_commands, _ingest_commands, _model_commands, _operations_commands):
        add_commands(add)
    return parser


def _stream_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    stream = add("stream", "Run the streaming layers: landing -> bronze -> silver -> gold, exactly once. Drift of "
                           "the scored images and alerts (log, pipeline_alerts, the webhook alert_webhook_url): "
                           "settings drift_* and alert_* (README: Drift and alerts).")
    stream.add_argument("--once", action="store_true",
                        help="process what is in landing now, then exit (availableNow trigger)")
    stream.add_argument("--layer", choices=(*LAYERS, "all"), action="append", default=None,
                        help="run only this layer (repeat for several; default all, in one pass per micro-batch): "
                             "bronze alone ingests without decoding; silver or gold without bronze re-read "
                             "the layer before as a Delta stream")
    stream.add_argument("--trigger-seconds", type=float, default=None, metavar="S",
                        help="processing-time trigger of the continuous mode (default 1)")
    stream.add_argument("--max-files-per-trigger", type=int, default=None, metavar="N",
                        help="at most N landing files per bronze micro-batch (default 4000)")
    stream.add_argument("--watch", metavar="INBOX", default=None,
                        help="also move completed files from INBOX into landing (see 'xray watch')")
    stream.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="stop after S seconds (continuous mode; default: run until Ctrl-C/SIGTERM)")
    recover = add("recover", "Rewind a stream's checkpoint to the last batch every table holds (after a lost "
                             "Delta commit), so the next 'xray stream' replays the batches a table lacks.")
    recover.add_argument("--query", choices=LAYERS, action="append", default=None,
                         help="the streaming query to recover (repeat for several; default all)")


def _add_staging_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--sample", type=int, default=None, metavar="N",
                         help="stage at most N files per class per split (default: all)")
    command.add_argument("--splits", default="train,test,val", metavar="LIST",
                         help="comma-separated splits to stage (default train,test,val)")
    command.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    command.add_argument("--batch-files", type=int, default=0, metavar="K",
                         help="drop K files at a time to simulate arrivals (default 0: all at once)")
    command.add_argument("--interval-seconds", type=float, default=0.0, metavar="S",
                         help="pause S seconds between drops of --batch-files files")


def _ingest_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    watch = add("watch", "Move files copied into INBOX to landing once they are complete.")
    watch.add_argument("inbox", metavar="INBOX", help="drop-zone folder to watch")
    watch.add_argument("--stable-seconds", type=float, default=None, metavar="S",
                       help="a file is complete when its size and mtime are unchanged for S seconds (default 2)")
    watch.add_argument("--timeout", type=float, default=None, metavar="S", help="stop after S seconds")

    kaggle = add("ingest-kaggle", "Download the Kaggle chest X-ray dataset and stage it into landing.")
    kaggle.add_argument("--dataset", default=None, metavar="OWNER/SLUG",
                        help="Kaggle dataset (default paultimothymooney/chest-xray-pneumonia)")
    kaggle.add_argument("--download-dir", default=None, metavar="DIR",
                        help="where the archive is downloaded and extracted (default <lakehouse>/downloads)")
    _add_staging_options(kaggle)

    folder = add("ingest-folder", "Stage a local copy of the dataset (or any folder of X-rays) into landing.")
    folder.add_argument("path", metavar="PATH",
                        help="folder (or .zip/.tar) holding split/LABEL/image files at any depth: JPEG, PNG, "
                             "DICOM (.dcm, or extensionless PACS exports found by content)")
    folder.add_argument("--labels", default=None, metavar="FILE.csv",
                        help="CSV with a header giving each file's label when its folders do not: a "
                             "file_name and/or sop_instance_uid column, label (NORMAL or PNEUMONIA), optional "
                             "split (train, test, val); a labelled file lands in <split>/<LABEL>/")
    _add_staging_options(folder)


def _model_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    retrain = add("retrain", "Train a model on labelled silver features; promote it if it beats the champion.")
    retrain.add_argument("--seed", type=int, default=0, help="seed of the patient-grouped split and model")
    retrain.add_argument("--force-promote", action="store_true",
                         help="make the new version champion even if it does not beat the current one")
    retrain.add_argument("--every", metavar="DURATION", default=None,
                         help="keep running: a cycle (retrain, rescore when gold lags the champion, metrics) every "
                              "DURATION (90s, 30m, 6h, 1d), counted from the last cycle recorded in retrain_runs, "
                              "and sooner once retrain_min_new_labels new labels arrived; until Ctrl-C or SIGTERM "
                              "(exit 0; a running cycle ends first). Without it: one retrain now")

    metrics = add("metrics", "Evaluate models per split, refresh the dataset summary and write the report.")
    metrics.add_argument("--all-versions", action="store_true",
                         help="evaluate every registered version, not only the champion")
    metrics.add_argument("--no-report", action="store_true", help="skip the PNG/HTML report")

    add("rescore", "Re-score gold predictions made by older models with the current champion.")
    _feedback_command(add)

    refeature = add("refeature", "Recompute silver features of the current feature version for images that only "
                                 "have older-version features (after an upgrade that changes features; then "
                                 "xray retrain, then xray rescore). Incremental and exactly once; refused while "
                                 "a stream runs on the lakehouse.")
    refeature.add_argument("--chunk-images", type=int, default=None, metavar="N",
                           help="images recomputed and committed at a time (default 1000): what an "
                                "interruption keeps; each chunk reads bronze once")


def _feedback_command(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    feedback = add("feedback", "Record radiologists' labels of images in gold_radiologist_feedback, exactly once: "
                               "the same labels twice add nothing, a reader's later label of an image replaces "
                               "their earlier one. xray retrain prefers these labels to the folders'.")
    given = feedback.add_mutually_exclusive_group(required=True)
    given.add_argument("--image-id", metavar="ID",
                       help="the image (silver image_id, as gold_pneumonia_predictions shows it: 64 hex digits)")
    given.add_argument("--csv", metavar="FILE",
                       help="a CSV with the header image_id,label and optionally reader,comment: one label a "
                            "row; refused rows are listed by line and the rest recorded")
    feedback.add_argument("--label", type=str.upper, choices=LABELS, default=None,
                          help="with --image-id: the reader's label, NORMAL or PNEUMONIA")
    feedback.add_argument("--reader", metavar="NAME", default=None,
                          help="who read the image (stored as a keyed hash only); with --image-id the default "
                               "is the operating-system user; with --csv it fills empty reader cells")
    feedback.add_argument("--comment", metavar="TEXT", default=None,
                          help="with --image-id: a short note (at most 500 characters, no patient identifiers)")


def _hours(text: str) -> int:
    """A whole number of hours >= 0 (argparse turns the ValueError into a usage error)."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _operations_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    status = add("status", "Show tables, streams, backlog, champion model and quarantine on one screen.")
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    serve = add("serve", "Serve a read-only status page that refreshes itself every 5 s: tables, streams and lag, "
                         "backlog, quarantine, champion and hold-out figures, drift, alerts, the report's charts "
                         "(counts and hashes only). Loopback only unless --allow-remote; Ctrl-C/SIGTERM stop it.")
    serve.add_argument("--host", default=None, metavar="H",
                       help="address to listen on (default serve_host, 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=None, metavar="N",
                       help="port to listen on (default serve_port, 8765; 0: any free port, printed)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a --host that other machines can reach (a warning is printed): the page has no "
                            "login, so prefer an SSH tunnel or an authenticating proxy")
    add_sql_arguments(add("sql", SQL_HELP))
    forget = add("forget", "Erase a patient (right to erasure): every row of every table, their files in landing "
                           "and archive, and the history that still held them; their files arriving later are "
                           "refused. Safe while a stream runs. Without --yes, only says what would be erased.")
    forget.add_argument("--patient", required=True, metavar="ID",
                        help="the patient as file names or DICOM PatientID give it (person123, IM-0115), or its "
                             "keyed hash (silver patient_id, 64 hex digits)")
    forget.add_argument("--yes", action="store_true",
                        help="erase (irreversible: time travel to before the erasure is gone too)")

    maintain = add("maintain", "Compact small files, checkpoint and trim each Delta log, vacuum files replaced "
                               "longer ago than the retention, and delete never-committed files older than "
                               "orphan_min_age_hours; prints files and bytes before and after. Safe while "
                               "'xray stream' runs (which also does it every maintenance_interval_minutes).")
    maintain.add_argument("--table", action="append", default=None, choices=[t.name for t in ALL_TABLES],
                          metavar="NAME", help="maintain only this table (repeat for several; default all)")
    maintain.add_argument("--retention-hours", type=_hours, default=None, metavar="H",
                          help="delete replaced files older than H hours (default vacuum_retention_hours, 168; "
                               "below 168 time travel and a replay after a crash may miss files)")
    maintain.add_argument("--dry-run", action="store_true",
                          help="say what would be compacted, vacuumed and removed; change nothing")

    demo = add("demo", "Run the whole service once on a sample: stage, stream, train, score, report.")
    demo.add_argument("--per-class", type=int, default=None, metavar="N",
                      help="synthetic images per class per split (default 60)")
    demo.add_argument("--source", choices=("auto", "synthetic", "kaggle"), default="auto",
                      help="sample source: auto uses Kaggle when credentials exist, else synthetic images")

    bench = add("bench", "Measure throughput, latency, memory and scaling; print a table and write JSON.")
    bench.add_argument("--data", default=None, metavar="DIR",
                       help="images to use (default ../shared/data/chest_xray_originals when present, "
                            "else generated full-size images)")
    bench.add_argument("--output", default=None, metavar="FILE", help="JSON results file")
    bench.add_argument("--only", default=None, metavar="LIST",
                       help="comma-separated parts: sink, baseline, pipeline, dicom (JPEG vs DICOM copies of the "
                            "same images, ratios from one run), latency, scaling, checkpoint, maintenance (200 one-image "
                            "micro-batches, then xray maintain at retention 0), profile (where one large micro-batch "
                            "spends its time, per phase)")
    bench.add_argument("--files", type=int, default=None, metavar="N", help="use at most N images")
    bench.add_argument("--copies", type=int, default=1, metavar="K",
                       help="measure on K copies of every image, each a new content with the same decode work "
                            "(bytes added after the end marker): a larger backlog for steady-state figures")
    bench.add_argument("--format", dest="image_format", choices=("original", "dicom"), default="original",
                       help="measure on the images as found (default) or on DICOM copies of them (8-bit, "
                            "uncompressed explicit little endian, .dcm): every part then measures DICOM")
