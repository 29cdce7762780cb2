"""The command table: every ``xray`` command declared once, with what the rest of the CLI needs to know.

A command is its name, its help, its options (a function of ``streaming.cli.parser``), what it runs (a
function of ``streaming.cli.handlers``, or of its package), its preflight check (``streaming.cli.preflight``,
run before Spark starts) and three facts:

* ``read_only``: it changes nothing under the lakehouse. Every other command is audited (a started and a
  finished row in ``audit_log``, ``streaming.ops.audit``): `AUDITED` is derived here, so a new command that
  writes cannot be left out of the audit trail (``audited_elsewhere`` names the one exception and why).
* ``creates_lakehouse``: it may start a new lakehouse (and says so in one line). Any other command on a
  path with no lakehouse is one line, exit 2: a mistyped ``--lakehouse`` creates nothing.

The parser, the dispatch, the preflight and the audit all read this table; adding a command is one entry.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from streaming.cli import handlers, parser, preflight
from streaming.core.config import XrayConfig
from streaming.ops.mlflowui import MLFLOW_UI_HELP, add_mlflow_ui_arguments, mlflow_ui_command
from streaming.ops.sql import SQL_HELP, add_sql_arguments, sql_command

__all__ = ["AUDITED", "COMMANDS", "COMMANDS_BY_NAME", "Command", "build_parser"]


@dataclass(frozen=True)
class Command:
    """One ``xray`` command (see the module doc)."""

    name: str
    arguments: Callable[[argparse.ArgumentParser], None] | None
    run: Callable[[argparse.Namespace, XrayConfig], int]
    help: str
    check: Callable[[argparse.Namespace, XrayConfig], None] | None = None
    read_only: bool = False
    creates_lakehouse: bool = False
    audited_elsewhere: str | None = None  # why a command that writes has no row in this lakehouse's audit_log

    @property
    def audited(self) -> bool:
        """Whether a run leaves its started and finished rows in ``audit_log``."""
        return not self.read_only and self.audited_elsewhere is None


COMMANDS: tuple[Command, ...] = (
    Command("stream", parser.stream_arguments, handlers.stream, check=preflight.check_stream,
            creates_lakehouse=True,
            help="Run the streaming layers: landing -> bronze -> silver -> gold, exactly once. Drift of the "
                 "scored images and alerts (log, pipeline_alerts, the webhook alert_webhook_url): settings "
                 "drift_* and alert_* (README: Drift and alerts)."),
    Command("recover", parser.recover_arguments, handlers.recover,
            help="Rewind a stream's checkpoint to the last batch every table holds (after a lost Delta commit), "
                 "so the next 'xray stream' replays the batches a table lacks."),
    Command("watch", parser.watch_arguments, handlers.watch, check=preflight.check_watch, creates_lakehouse=True,
            help="Move files copied into INBOX to landing once they are complete."),
    Command("ingest-kaggle", parser.ingest_kaggle_arguments, handlers.ingest_kaggle,
            check=preflight.check_staging, creates_lakehouse=True,
            help="Download the Kaggle chest X-ray dataset and stage it into landing."),
    Command("ingest-folder", parser.ingest_folder_arguments, handlers.ingest_folder,
            check=preflight.check_ingest_folder, creates_lakehouse=True,
            help="Stage a local copy of the dataset (or any folder of X-rays) into landing."),
    Command("retrain", parser.retrain_arguments, handlers.retrain, check=preflight.check_retrain,
            help="Train a model on labelled silver features; promote it if it beats the champion."),
    Command("metrics", parser.metrics_arguments, handlers.metrics, check=preflight.check_metrics,
            help="Evaluate models per split, refresh the dataset summary and write the report."),
    Command("rescore", None, handlers.rescore, check=preflight.check_rescore,
            help="Re-score gold predictions made by older models with the current champion."),
    Command("feedback", parser.feedback_arguments, handlers.feedback, check=preflight.check_feedback,
            help="Record radiologists' labels of images in gold_radiologist_feedback, exactly once: the same "
                 "labels twice add nothing, a reader's later label of an image replaces their earlier one. "
                 "xray retrain prefers these labels to the folders'."),
    Command("refeature", parser.refeature_arguments, handlers.refeature, check=preflight.check_refeature,
            help="Recompute silver features of the current feature version for images that only have "
                 "older-version features (after an upgrade that changes features; then xray retrain, then xray "
                 "rescore). Incremental and exactly once; refused while a stream runs on the lakehouse."),
    Command("status", parser.status_arguments, handlers.status, read_only=True,
            help="Show tables, streams, backlog, champion model and quarantine on one screen."),
    Command("serve", parser.serve_arguments, handlers.serve, check=preflight.check_serve, read_only=True,
            help="Serve a read-only status page that refreshes itself every 5 s: tables, streams and lag, "
                 "backlog, quarantine, champion and hold-out figures, drift, alerts, the report's charts (counts "
                 "and hashes only). Loopback only unless --allow-remote; Ctrl-C/SIGTERM stop it."),
    Command("sql", add_sql_arguments, sql_command, read_only=True, help=SQL_HELP),
    Command("mlflow-ui", add_mlflow_ui_arguments, mlflow_ui_command, read_only=True, help=MLFLOW_UI_HELP),
    Command("forget", parser.forget_arguments, handlers.forget,
            help="Erase a patient (right to erasure): every row of every table, their files in landing and "
                 "archive, and the history that still held them; their files arriving later are refused. Safe "
                 "while a stream runs. Without --yes, only says what would be erased."),
    Command("maintain", parser.maintain_arguments, handlers.maintain,
            help="Compact small files, checkpoint and trim each Delta log, vacuum files replaced longer ago than "
                 "the retention, and delete never-committed files older than orphan_min_age_hours; prints files "
                 "and bytes before and after. Safe while 'xray stream' runs (which also does it every "
                 "maintenance_interval_minutes)."),
    Command("demo", parser.demo_arguments, handlers.demo, check=preflight.check_staging, creates_lakehouse=True,
            help="Run the whole service once on a sample: stage, stream, train, score, report."),
    Command("bench", parser.bench_arguments, handlers.bench, creates_lakehouse=True,
            audited_elsewhere="it works in its own lakehouses under <lakehouse>/bench/, whose commands are "
                              "audited there",
            help="Measure throughput, latency, memory and scaling; print a table and write JSON."),
)

COMMANDS_BY_NAME: dict[str, Command] = {command.name: command for command in COMMANDS}
# The commands whose runs leave rows in audit_log: every command but the read-only ones (and bench).
AUDITED: frozenset[str] = frozenset(command.name for command in COMMANDS if command.audited)


def build_parser() -> argparse.ArgumentParser:
    """The full ``xray`` argument parser (also read by the Terraform checks under tests/)."""
    return parser.make_parser(COMMANDS)
