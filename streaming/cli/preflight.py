"""What each command needs, checked before Spark starts (seconds, not the minute a JVM and a job take).

Every failure is a named error (exit 2, one line saying what to do next). The checks read only the file
system and Delta logs with delta-rs: no JVM, no MLflow import unless a model store exists. A check that
cannot decide (a table delta-rs cannot read) lets the command run; the command then reports for itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streaming.core.checks import check_folder, check_input_path, check_lakehouse_writable, check_landing
from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError, InputPathError, NothingToDoError

__all__ = ["preflight"]

NO_LABELLED_SILVER = ("no labelled images in silver yet: stage images (xray ingest-folder / ingest-kaggle) "
                      "and run xray stream first")
# Commands that only read the lakehouse: it is not created for them.
READ_ONLY = frozenset({"status", "recover", "serve", "mlflow-ui"})


def preflight(args: argparse.Namespace, config: XrayConfig) -> None:
    """Check the arguments, the lakehouse path and the command's input; raise a named error."""
    check_lakehouse_writable(config.root, create=False)  # a file in the way
    check = _CHECKS.get(args.command)
    if check is not None:
        check(args, config)  # before the folder is made: a mistaken command leaves no lakehouse behind
    if args.command not in READ_ONLY:
        check_lakehouse_writable(config.root, create=True)


def _stream(args: argparse.Namespace, config: XrayConfig) -> None:
    if args.watch:
        check_folder(args.watch, "inbox", "create it (mkdir -p) or pass the drop-zone folder to --watch")
    if not args.layer or {"all", "bronze"} & set(args.layer):
        # Moving files in (--watch) and archiving them out (clean_source) write in landing.
        check_landing(config.landing_dir, write=bool(args.watch) or config.clean_source != "off")


def _watch(args: argparse.Namespace, config: XrayConfig) -> None:
    check_folder(args.inbox, "inbox", "create it (mkdir -p) or pass the drop-zone folder to watch")
    check_landing(config.landing_dir, write=True)


def _staging(args: argparse.Namespace, config: XrayConfig) -> None:  # noqa: ARG001
    check_landing(config.landing_dir, write=True)


def _ingest_folder(args: argparse.Namespace, config: XrayConfig) -> None:
    check_landing(config.landing_dir, write=True)
    check_input_path(args.path, "source", "pass a folder (or .zip/.tar) holding split/LABEL/*.jpeg images")
    if args.labels is not None:
        from streaming.ingest.labels import read_labels

        read_labels(args.labels)  # the whole CSV is checked now: a wrong row is answered before Spark


def _retrain(args: argparse.Namespace, config: XrayConfig) -> None:  # noqa: ARG001
    if args.every is not None:
        from batch.training.schedule import parse_duration

        parse_duration(args.every)  # before anything starts; the loop itself waits for labelled images
        if args.force_promote:
            raise ConfigError("--force-promote applies to one retrain, not to every cycle of --every: "
                              "run xray retrain --force-promote once, without --every")
        return
    if _labelled_silver_rows(config) == 0:
        raise NothingToDoError(f"cannot retrain: {NO_LABELLED_SILVER}")


def _metrics(args: argparse.Namespace, config: XrayConfig) -> None:  # noqa: ARG001
    if _rows(config, "silver_xray_metadata") == 0 and not _has_champion(config):
        raise NothingToDoError("nothing to evaluate: no images in silver and no champion model yet: stage "
                               "images (xray ingest-folder / ingest-kaggle), run xray stream, then xray retrain")


def _rescore(args: argparse.Namespace, config: XrayConfig) -> None:  # noqa: ARG001
    if _rows(config, "gold_pneumonia_predictions") == 0:
        raise NothingToDoError("nothing to rescore: gold holds no predictions yet; run xray stream (with a "
                               "champion model from xray retrain) first")
    if not _has_champion(config):
        raise NothingToDoError("nothing to rescore with: no model has the 'champion' alias yet; "
                               "run xray retrain first")


def _refeature(args: argparse.Namespace, config: XrayConfig) -> None:
    if args.chunk_images is not None and args.chunk_images < 1:
        raise ConfigError(f"--chunk-images must be at least 1 (got {args.chunk_images})")
    if _rows(config, "silver_xray_metadata") == 0:
        raise NothingToDoError("nothing to refeature: no images in silver yet; stage images and run xray stream")


def _existing_lakehouse(args: argparse.Namespace, config: XrayConfig) -> None:
    """Maintenance and erasure work on a lakehouse that exists: a mistyped --lakehouse creates nothing."""
    if not config.root.is_dir():
        raise InputPathError(f"no lakehouse at {config.root}; check --lakehouse (or XRAY_LAKEHOUSE): "
                             f"'xray {args.command}' works on an existing lakehouse")


def _serve(args: argparse.Namespace, config: XrayConfig) -> None:
    from streaming.ops.serve import check_address, listen_address

    address = listen_address(config, args.host, args.port)
    check_address(address.host, address.port, args.allow_remote, address)


def _feedback(args: argparse.Namespace, config: XrayConfig) -> None:
    _existing_lakehouse(args, config)
    if args.csv is not None:
        if args.label is not None or args.comment is not None:
            raise ConfigError("--label and --comment go with --image-id; a CSV gives them per row (columns label, "
                              "comment)")
        from streaming.ops.feedback import read_feedback_csv

        read_feedback_csv(args.csv, args.reader)  # its header and rows, before anything is recorded
    elif args.label is None:
        raise ConfigError("--image-id needs --label NORMAL or PNEUMONIA (the reader's label of the image)")


_CHECKS = {
    "serve": _serve,
    "maintain": _existing_lakehouse,
    "forget": _existing_lakehouse,
    "feedback": _feedback,
    "stream": _stream,
    "watch": _watch,
    "ingest-folder": _ingest_folder,
    "ingest-kaggle": _staging,
    "demo": _staging,
    "retrain": _retrain,
    "metrics": _metrics,
    "rescore": _rescore,
    "refeature": _refeature,
}


def _table(config: XrayConfig, name: str):  # noqa: ANN202 - deltalake stays out of `--help`'s imports
    """The table with delta-rs; None when it does not exist yet; raises when delta-rs cannot read it."""
    path: Path = config.table_path(name)
    if not (path / "_delta_log").is_dir():
        return None
    from deltalake import DeltaTable

    return DeltaTable(str(path))


def _rows(config: XrayConfig, name: str) -> int | None:
    """Rows of a table from its log's statistics (0 when it does not exist; None when unknown)."""
    try:
        table = _table(config, name)
        if table is None:
            return 0
        return table.to_pyarrow_dataset().count_rows()
    except Exception:  # noqa: BLE001 - cannot decide here: the command itself reports
        return None


def _labelled_silver_rows(config: XrayConfig) -> int | None:
    """Silver images with a label and features (what `xray retrain` can learn from); None when unknown."""
    try:
        metadata = _table(config, "silver_xray_metadata")
        if metadata is None or _rows(config, "silver_image_features") == 0:
            return 0
        import pyarrow.dataset as ds

        return metadata.to_pyarrow_dataset().count_rows(filter=ds.field("label").is_valid())
    except Exception:  # noqa: BLE001 - cannot decide here: the command itself reports
        return None


def _has_champion(config: XrayConfig) -> bool:
    from streaming.core.registry import champion, local_store_exists

    # Without a store there is no champion: no need to import MLflow (seconds) to say so.
    return local_store_exists(config) and champion(config) is not None
