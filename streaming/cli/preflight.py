"""What each command needs, checked before Spark starts (seconds, not the minute a JVM and a job take).

Every failure is a named error (exit 2, one line saying what to do next). The checks read only the file
system and Delta logs with delta-rs (``streaming.lakehouse.tables``): no JVM, no MLflow import unless a model
store exists. A check that cannot decide (a table delta-rs cannot read) lets the command run; the command
then reports for itself. Which check a command has, whether it may create a lakehouse and whether it only
reads are declared in the command table (``streaming.cli.table``).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from streaming.core.checks import check_folder, check_input_path, check_lakehouse_writable, check_landing
from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError, InputPathError, NothingToDoError

if TYPE_CHECKING:
    from streaming.cli.table import Command

__all__ = ["NO_LABELLED_SILVER", "preflight"]

NO_LABELLED_SILVER = ("no labelled images in silver yet: stage images (xray ingest-folder / ingest-kaggle) "
                      "and run xray stream first")
CREATING_COMMANDS = "xray stream, xray ingest-folder, xray ingest-kaggle or xray demo"


def preflight(args: argparse.Namespace, config: XrayConfig, command: Command) -> None:
    """Check the lakehouse path and the command's arguments and input; raise a named error. A command that
    may create the lakehouse and finds none creates it here and says so in one line (stderr)."""
    check_lakehouse_writable(config.root, create=False)  # a file in the way
    if not command.creates_lakehouse:
        lakehouse_exists(config, command.name)
    if command.check is not None:
        command.check(args, config)  # before the folder is made: a mistaken command leaves no lakehouse behind
    if command.read_only:
        return
    new = not config.root.exists()
    check_lakehouse_writable(config.root, create=True)
    if new:
        print(f"xray {command.name}: created a new lakehouse at {config.root}", file=sys.stderr)


def lakehouse_exists(config: XrayConfig, command: str) -> None:
    """A command that works on an existing lakehouse: a mistyped --lakehouse is one line, nothing created."""
    if not config.root.is_dir():
        raise InputPathError(f"no lakehouse at {config.root}; check --lakehouse (or XRAY_LAKEHOUSE, or lakehouse "
                             f"in the settings file): 'xray {command}' works on an existing lakehouse, "
                             f"{CREATING_COMMANDS} creates one")


def check_stream(args: argparse.Namespace, config: XrayConfig) -> None:
    if args.watch:
        check_folder(args.watch, "inbox", "create it (mkdir -p) or pass the drop-zone folder to --watch")
    if not args.layer or {"all", "bronze"} & set(args.layer):
        # Moving files in (--watch) and archiving them out (clean_source) write in landing.
        check_landing(config.landing_dir, write=bool(args.watch) or config.clean_source != "off")


def check_watch(args: argparse.Namespace, config: XrayConfig) -> None:
    check_folder(args.inbox, "inbox", "create it (mkdir -p) or pass the drop-zone folder to watch")
    check_landing(config.landing_dir, write=True)


def check_staging(args: argparse.Namespace, config: XrayConfig) -> None:
    check_landing(config.landing_dir, write=True)


def check_ingest_folder(args: argparse.Namespace, config: XrayConfig) -> None:
    check_landing(config.landing_dir, write=True)
    check_input_path(args.path, "source", "pass a folder (or .zip/.tar) holding split/LABEL/*.jpeg images")
    if args.labels is not None:
        from streaming.ingest.labels import read_labels

        read_labels(args.labels)  # the whole CSV is checked now: a wrong row is answered before Spark


def check_retrain(args: argparse.Namespace, config: XrayConfig) -> None:
    if (args.family or config.model_family) == "cnn":
        from streaming.imaging.cnn import missing_reason

        if missing_reason() is not None:
            raise ConfigError(f"model_family = cnn: {missing_reason()}; or train the sklearn family")
    if args.every is not None:
        from batch.training.schedule import parse_duration

        parse_duration(args.every)  # before anything starts; the loop itself waits for labelled images
        if args.force_promote:
            raise ConfigError("--force-promote applies to one retrain, not to every cycle of --every: "
                              "run xray retrain --force-promote once, without --every")
        return
    if _labelled_silver_rows(config) == 0:
        raise NothingToDoError(f"cannot retrain: {NO_LABELLED_SILVER}")


def check_metrics(args: argparse.Namespace, config: XrayConfig) -> None:
    if _rows(config, "silver_xray_metadata") == 0 and not _has_champion(config):
        raise NothingToDoError("nothing to evaluate: no images in silver and no champion model yet: stage "
                               "images (xray ingest-folder / ingest-kaggle), run xray stream, then xray retrain")


def check_rescore(args: argparse.Namespace, config: XrayConfig) -> None:
    if _rows(config, "gold_pneumonia_predictions") == 0:
        raise NothingToDoError("nothing to rescore: gold holds no predictions yet; run xray stream (with a "
                               "champion model from xray retrain) first")
    if not _has_champion(config):
        raise NothingToDoError("nothing to rescore with: no model has the 'champion' alias yet; "
                               "run xray retrain first")


def check_refeature(args: argparse.Namespace, config: XrayConfig) -> None:
    if args.chunk_images is not None and args.chunk_images < 1:
        raise ConfigError(f"--chunk-images must be at least 1 (got {args.chunk_images})")
    from streaming.core.locks import stream_lock

    with stream_lock(config.root):  # a running stream refuses it now, not after the JVM started
        pass
    if _rows(config, "silver_xray_metadata") == 0:
        raise NothingToDoError("nothing to refeature: no images in silver yet; stage images and run xray stream")
    status = _features_status(config)
    if status is not None and status["stale"] == 0:
        raise NothingToDoError(f"nothing to refeature: every silver image with features has features of the "
                               f"current version {status['feature_version']}")


def _features_status(config: XrayConfig) -> dict | None:
    """Silver's images lacking current-version features, read with delta-rs (None: cannot decide)."""
    from streaming.silver.refeature import current_features_status

    try:
        return current_features_status(config)
    except Exception:  # cannot decide here: the command itself reports
        return None


def check_serve(args: argparse.Namespace, config: XrayConfig) -> None:
    from streaming.ops.serve import check_address, listen_address

    address = listen_address(config, args.host, args.port)
    check_address(address.host, address.port, args.allow_remote, address)


def check_feedback(args: argparse.Namespace, config: XrayConfig) -> None:
    if args.csv is not None:
        if args.label is not None or args.comment is not None:
            raise ConfigError("--label and --comment go with --image-id; a CSV gives them per row (columns label, "
                              "comment)")
        from streaming.ops.feedback import read_feedback_csv

        read_feedback_csv(args.csv, args.reader)  # its header and rows, before anything is recorded
    elif args.label is None:
        raise ConfigError("--image-id needs --label NORMAL or PNEUMONIA (the reader's label of the image)")


def _rows(config: XrayConfig, name: str) -> int | None:
    """Rows of a table from its log's statistics (0 when it does not exist; None when unknown)."""
    from streaming.lakehouse.tables import count_rows

    try:
        return count_rows(config, name)
    except Exception:  # cannot decide here: the command itself reports
        return None


def _labelled_silver_rows(config: XrayConfig) -> int | None:
    """Silver images with a label and features (what `xray retrain` can learn from); None when unknown."""
    import pyarrow.dataset as ds

    from streaming.lakehouse.tables import count_rows

    try:
        if count_rows(config, "silver_image_features") == 0:
            return 0
        return count_rows(config, "silver_xray_metadata", ds.field("label").is_valid())
    except Exception:  # cannot decide here: the command itself reports
        return None


def _has_champion(config: XrayConfig) -> bool:
    from streaming.core.registry import champion, local_store_exists

    # Without a store there is no champion: no need to import MLflow (seconds) to say so.
    return local_store_exists(config) and champion(config) is not None
