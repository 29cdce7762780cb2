"""The ``xray`` argument parser: the common options every subcommand accepts anywhere on the line, each
command's own options (one ``*_arguments`` function per command, named by the command table,
``streaming.cli.table``), and errors said in one line with a "did you mean" (`XrayParser`).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from streaming.cli.exits import (
    EXIT_CODES_HELP,
    package_version,
)
from streaming.core.names import LABELS, LAYERS
from streaming.lakehouse.catalog import ALL_TABLES

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
        from streaming.lakehouse.enginechoice import expected_engine

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
                       help="Delta engine: auto is native Delta where the Spark runtime brings Delta Lake (Databricks, "
                            "spark-submit with the jars) and delta-rs in a session built here (faster per "
                            "commit; README: Two Delta engines); delta-rs or delta-spark pin it")
    group.add_argument("--mlflow-tracking-uri", metavar="URI",
                       help="MLflow tracking/registry URI (default: SQLite store under the lakehouse)")
    group.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                       help="log verbosity (default INFO); Spark's own warnings show only at DEBUG")
    return common


# How alike a mistyped name and a valid one must be (difflib's ratio) to be offered as "did you mean".
CLOSE_ENOUGH = 0.75


class XrayParser(argparse.ArgumentParser):
    """argparse with errors in one line, no usage block: the mistake, the likely intent ("did you mean",
    difflib) and where to read more (``--help``). Exit code 2, as argparse's own."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_explain(message)} (see {self.prog} --help)\n")


def _explain(message: str) -> str:
    """argparse's message with the closest valid choice when a value is not one."""
    match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if match is None:
        return message
    choices = re.findall(r"'([^']*)'", match.group(2)) or [c.strip() for c in match.group(2).split(",")]
    close = difflib.get_close_matches(match.group(1), choices, n=1, cutoff=CLOSE_ENOUGH)
    what = message[:match.start()].rstrip(": ")
    if what == "argument COMMAND":
        return (f"no command '{match.group(1)}'" + (f"; did you mean 'xray {close[0]}'?" if close else
                                                     f"; the commands: {', '.join(choices)}"))
    return f"{what}: '{match.group(1)}' is not one of {', '.join(choices)}" + (
        f"; did you mean '{close[0]}'?" if close else "")


class TopParser(XrayParser):
    """The ``xray`` parser: also names the command an option belongs to when it was put before the command
    (``xray --once stream``), and suggests the closest option of the command for a mistyped one."""

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        if message == "the following arguments are required: COMMAND":
            message = f"no command given; the commands: {', '.join(self.commands)}"
        super().error(message)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        argv = list(sys.argv[1:] if args is None else args)
        self._check_before_command(argv)
        parsed, extras = self.parse_known_args(argv, namespace)
        if extras:  # said by the command's parser: its name and its --help
            self.commands[parsed.command].error(self._unrecognized(extras, parsed.command))
        return parsed

    def _check_before_command(self, argv: list[str]) -> None:
        """An option of a command given before the command's name: say whose it is, where it goes."""
        for token in argv:
            if token == "--" or token in self.commands:
                return
            option = token.split("=", 1)[0]
            if not option.startswith("-") or option in self._option_string_actions:
                continue
            owners = [name for name, command in self.commands.items() if option in command._option_string_actions]
            if owners:
                self.error(f"{option} is an option of {_names(owners)}, not of xray itself: put it after the "
                           f"command: xray {owners[0]} {token} ...")

    def _unrecognized(self, extras: list[str], command: str) -> str:
        option = next((e.split("=", 1)[0] for e in extras if e.startswith("-")), None)
        if option is None:
            return f"unexpected argument '{extras[0]}'"
        known = self.commands[command]._option_string_actions
        close = difflib.get_close_matches(option, [o for o in known if o.startswith("--")], n=1, cutoff=CLOSE_ENOUGH)
        if close:
            return f"no option {option}; did you mean {close[0]}?"
        owners = [name for name, parser in self.commands.items() if option in parser._option_string_actions]
        if owners:
            return f"{option} is an option of {_names(owners)}, not of xray {command}"
        return f"no option {option}"


def _names(commands: Iterable[str]) -> str:
    return " and ".join(f"'xray {c}'" for c in list(commands)[:3])


def make_parser(commands: Iterable[Any]) -> TopParser:
    """The full ``xray`` parser from the command table: each command's ``name``, ``help`` and ``arguments``
    (a function adding its options)."""
    parser = TopParser(
        prog="xray",
        description="Chest X-ray lakehouse: stream X-ray files into Delta tables (bronze, silver, gold), "
                    "train and serve a NORMAL/PNEUMONIA classifier, and report its performance.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_parser(default=None)],
    )
    parser.add_argument("--version", action=_VersionAction, help="show the version and the Delta engine, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=XrayParser)
    after = _common_parser(default=argparse.SUPPRESS)
    parser.commands = {}
    for command in commands:
        entry = sub.add_parser(command.name, help=command.help, description=command.help, parents=[after],
                               epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
        if command.arguments is not None:
            command.arguments(entry)
        parser.commands[command.name] = entry
    return parser



# -- each command's options -----------------------------------------------------------------------
def stream_arguments(stream: argparse.ArgumentParser) -> None:
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


def recover_arguments(recover: argparse.ArgumentParser) -> None:
    recover.add_argument("--query", choices=LAYERS, action="append", default=None,
                         help="the streaming query to recover (repeat for several; default all)")


def watch_arguments(watch: argparse.ArgumentParser) -> None:
    watch.add_argument("inbox", metavar="INBOX", help="drop-zone folder to watch")
    watch.add_argument("--stable-seconds", type=float, default=None, metavar="S",
                       help="a file is complete when its size and mtime are unchanged for S seconds (default 2)")
    watch.add_argument("--timeout", type=float, default=None, metavar="S", help="stop after S seconds")


def receive_arguments(receive: argparse.ArgumentParser) -> None:
    receive.add_argument("--port", type=int, default=None, metavar="N",
                         help="port to listen on (default receive_port, 11112; 0: any free port, printed)")
    receive.add_argument("--ae-title", default=None, metavar="T", help="our AE title (default receive_ae_title, XRAY)")
    receive.add_argument("--stow-port", type=int, default=None, metavar="N",
                         help="also serve STOW-RS (DICOMweb POST /studies) on port N (default stow_port; 0: off); "
                              "needs stow_token")
    receive.add_argument("--allow-remote", action="store_true",
                         help="let any calling AE in from other machines (without it, and with receive_calling_aes "
                              "empty, only this machine may connect)")


def send_results_arguments(results: argparse.ArgumentParser) -> None:
    results.add_argument("--to", default=None, metavar="AE@HOST:PORT",
                         help="the destination DICOM node (default results_destination)")
    results.add_argument("--limit", type=int, default=None, metavar="N", help="send at most N reports this run")


def ingest_kaggle_arguments(kaggle: argparse.ArgumentParser) -> None:
    kaggle.add_argument("--dataset", default=None, metavar="OWNER/SLUG",
                        help="Kaggle dataset (default paultimothymooney/chest-xray-pneumonia)")
    kaggle.add_argument("--download-dir", default=None, metavar="DIR",
                        help="where the archive is downloaded and extracted (default <lakehouse>/downloads)")
    _add_staging_options(kaggle)


def ingest_folder_arguments(folder: argparse.ArgumentParser) -> None:
    folder.add_argument("path", metavar="PATH",
                        help="folder (or .zip/.tar) holding split/LABEL/image files at any depth: JPEG, PNG, "
                             "DICOM (.dcm, or extensionless PACS exports found by content)")
    folder.add_argument("--labels", default=None, metavar="FILE.csv",
                        help="CSV with a header giving each file's label when its folders do not: a "
                             "file_name and/or sop_instance_uid column, label (NORMAL or PNEUMONIA), optional "
                             "split (train, test, val); a labelled file lands in <split>/<LABEL>/")
    _add_staging_options(folder)


def retrain_arguments(retrain: argparse.ArgumentParser) -> None:
    retrain.add_argument("--seed", type=int, default=0, help="seed of the patient-grouped split and model")
    retrain.add_argument("--force-promote", action="store_true",
                         help="make the new version champion even if it does not beat the current one")
    retrain.add_argument("--every", metavar="DURATION", default=None,
                         help="keep running: a cycle (retrain, rescore when gold lags the champion, metrics) every "
                              "DURATION (90s, 30m, 6h, 1d), counted from the last cycle recorded in retrain_runs, "
                              "and sooner once retrain_min_new_labels new labels arrived; until Ctrl-C or SIGTERM "
                              "(exit 0; a running cycle ends first). Without it: one retrain now")
    retrain.add_argument("--family", choices=("sklearn", "cnn"), default=None,
                         help="model family to train (default: the model_family setting, XRAY_MODEL_FAMILY, else "
                              "sklearn): sklearn on silver's features, or cnn, the convolutional network on silver's "
                              "frames (needs the [cnn] extra; README: Model families)")
    retrain.add_argument("--max-minutes", type=float, default=None, metavar="M",
                         help="the cnn family's budget for the whole command (collecting frames, training, "
                              "validation, registration): training stops early enough to leave the estimated "
                              "time of what follows it, after at least one epoch, and keeps its best epoch "
                              "(default: retrain_max_minutes, 20; 0: no budget)")


def metrics_arguments(metrics: argparse.ArgumentParser) -> None:
    metrics.add_argument("--all-versions", action="store_true",
                         help="evaluate every registered version, not only the champion")
    metrics.add_argument("--no-report", action="store_true", help="skip the PNG/HTML report")


def refeature_arguments(refeature: argparse.ArgumentParser) -> None:
    refeature.add_argument("--chunk-images", type=int, default=None, metavar="N",
                           help="images recomputed and committed at a time (default 1000): what an "
                                "interruption keeps; each chunk reads bronze once")


def feedback_arguments(feedback: argparse.ArgumentParser) -> None:
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


def status_arguments(status: argparse.ArgumentParser) -> None:
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")


def serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default=None, metavar="H",
                       help="address to listen on (default serve_host, 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=None, metavar="N",
                       help="port to listen on (default serve_port, 8765; 0: any free port, printed)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a --host that other machines can reach (a warning is printed): the page has no "
                            "login, so prefer an SSH tunnel or an authenticating proxy")


def forget_arguments(forget: argparse.ArgumentParser) -> None:
    forget.add_argument("--patient", required=True, metavar="ID",
                        help="the patient as file names or DICOM PatientID give it (person123, IM-0115), or its "
                             "keyed hash (silver patient_id, 64 hex digits)")
    forget.add_argument("--yes", action="store_true",
                        help="erase (irreversible: time travel to before the erasure is gone too)")


def maintain_arguments(maintain: argparse.ArgumentParser) -> None:
    maintain.add_argument("--table", action="append", default=None, choices=[t.name for t in ALL_TABLES],
                          metavar="NAME", help="maintain only this table (repeat for several; default all)")
    maintain.add_argument("--retention-hours", type=_hours, default=None, metavar="H",
                          help="delete replaced files older than H hours (default vacuum_retention_hours, 168; "
                               "below 168 time travel and a replay after a crash may miss files)")
    maintain.add_argument("--dry-run", action="store_true",
                          help="say what would be compacted, vacuumed and removed; change nothing")


def demo_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--per-class", type=int, default=None, metavar="N",
                      help="synthetic images per class per split (default 60)")
    demo.add_argument("--source", choices=("auto", "synthetic", "kaggle"), default="auto",
                      help="sample source: auto uses Kaggle when credentials exist, else synthetic images")


def bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--data", default=None, metavar="DIR",
                       help="images to use (default ../shared/data/chest_xray_originals when present, "
                            "else generated full-size images)")
    bench.add_argument("--output", default=None, metavar="FILE", help="JSON results file")
    bench.add_argument("--only", default=None, metavar="LIST",
                       help="comma-separated parts: sink, baseline, pipeline, dicom (JPEG vs DICOM copies of the "
                            "same images, ratios from one run), latency, scaling, checkpoint, maintenance (200 one-image "
                            "micro-batches, then xray maintain at retention 0), profile (where one large micro-batch "
                            "spends its time, per phase; the driver's serial time per image and per batch and the "
                            "bound it puts on one stream), receive (xray receive's C-STORE instances/s and MB/s against a "
                            "plain pynetdicom SCP writing files, same instances), engines (the two Delta engines on the same "
                            "files: cold start, throughput, latency, commit time per table), cnn (the cnn model family's "
                            "scoring cost, ms per image, and landing -> gold with a cnn champion against a sklearn "
                            "one; needs the [cnn] extra)")
    bench.add_argument("--files", type=int, default=None, metavar="N", help="use at most N images")
    bench.add_argument("--copies", type=int, default=1, metavar="K",
                       help="measure on K copies of every image, each a new content with the same decode work "
                            "(bytes added after the end marker): a larger backlog for steady-state figures")
    bench.add_argument("--format", dest="image_format", choices=("original", "dicom"), default="original",
                       help="measure on the images as found (default) or on DICOM copies of them (8-bit, "
                            "uncompressed explicit little endian, .dcm): every part then measures DICOM")


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


def _hours(text: str) -> int:
    """A whole number of hours >= 0 (argparse turns the ValueError into a usage error)."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value
