"""``xray feedback``: radiologists' labels into ``gold_radiologist_feedback``, and what ``xray status`` says
of them.

One label by options (``--image-id ID --label LABEL [--reader NAME] [--comment TEXT]``) or many from a CSV
(``--csv FILE``: columns ``image_id,label``, optional ``reader,comment``). Rows are checked one by one
(`streaming.gold.feedback.check_feedback`): the good ones are recorded exactly once, the others counted by
reason with their CSV lines (never their values) and the command ends with exit 2 saying which lines to
correct; running the same CSV again after the correction adds nothing twice. delta-rs only: no Spark.

Who the reader is: ``--image-id`` records the reader named by ``--reader``, else the operating-system user
running the command (the person at the workstation). A CSV is usually imported by someone other than its
readers, so its rows never default to that user: each row's ``reader`` cell, else ``--reader``, else the
row is refused.
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from streaming.core.config import XrayConfig
from streaming.core.csvfile import read_csv_file
from streaming.core.errors import FeedbackError
from streaming.gold.feedback import (
    FeedbackBatch,
    FeedbackInput,
    agreement,
    check_feedback,
    decide_labels,
    known_images,
    read_feedback,
    record_feedback,
)
from streaming.lakehouse.catalog import GOLD_PREDICTIONS
from streaming.ops.text import iso_utc

__all__ = ["CSV_COLUMNS", "FeedbackReport", "feedback_command", "feedback_lines", "feedback_status",
           "read_feedback_csv"]

REQUIRED_COLUMNS, OPTIONAL_COLUMNS = ("image_id", "label"), ("reader", "comment")
CSV_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
LINES_SHOWN = 10  # line numbers named per reason; more are counted


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid still names someone
        return str(os.getuid())


def read_feedback_csv(path: str | Path, reader: str | None = None) -> list[FeedbackInput]:
    """The rows of a feedback CSV (header required; ``reader`` fills empty reader cells). `FeedbackError`,
    one line, for a file that cannot be read or whose columns are not the expected ones."""
    return read_csv_file(path, "feedback", "--csv", FeedbackError,
                         lambda where, handle: _parse(where, handle, reader))


def _parse(path: Path, handle: IO[str], reader: str | None) -> list[FeedbackInput]:
    lines = csv.reader(handle)
    columns = [c.strip().lower() for c in next(lines, None) or []]
    expected = f"expected a header with {', '.join(REQUIRED_COLUMNS)} and optionally {', '.join(OPTIONAL_COLUMNS)}"
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if missing or unknown or len(set(columns)) != len(columns):
        found = ", ".join(c[:30] for c in columns) or "none"
        raise FeedbackError(f"feedback file {path.name} has the columns {found}; {expected} (each once)")
    if "reader" not in columns and not reader:
        raise FeedbackError(f"feedback file {path.name} has no reader column; add one naming each row's reader, "
                            "or pass --reader NAME for all its rows")
    index = {c: columns.index(c) for c in columns}
    given = []
    for cells in lines:
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, often at the end of an exported sheet
        value = {c: cells[i] if i < len(cells) else "" for c, i in index.items()}
        given.append(FeedbackInput(lines.line_num, value["image_id"], value["label"],
                                   value.get("reader", "").strip() or reader or "", value.get("comment", "")))
    if not given:
        raise FeedbackError(f"feedback file {path.name} has no rows under its header; add one row per label")
    return given


def _where(lines: list[int | None]) -> str:
    shown = ", ".join(str(n) for n in lines[:LINES_SHOWN])
    more = f" and {len(lines) - LINES_SHOWN} more" if len(lines) > LINES_SHOWN else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"


@dataclass
class FeedbackReport:
    """What one `xray feedback` did: rows given, checked, recorded."""

    given: int
    batch: FeedbackBatch
    counts: dict[str, int] = field(default_factory=dict)
    from_csv: bool = True

    def lines(self) -> list[str]:
        c = self.counts
        if not self.batch.rows:
            return []  # everything refused: `check` says why
        lines = [f"feedback: {len(self.batch.rows)} label(s) recorded in gold_radiologist_feedback: "
                 f"{c.get('added', 0)} added, {c.get('replaced', 0)} replaced (a correction by the same reader), "
                 f"{c.get('unchanged', 0)} unchanged (already recorded)"]
        if self.batch.superseded:
            pairs = ", ".join(f"line {new} over line {old}" for old, new in self.batch.superseded[:LINES_SHOWN])
            more = f" and {len(self.batch.superseded) - LINES_SHOWN} more" * (len(self.batch.superseded) > LINES_SHOWN)
            lines.append(f"  {len(self.batch.superseded)} line(s) gave an image and reader again; the later line "
                         f"is kept: {pairs}{more}")
        return lines

    def check(self) -> None:
        """`FeedbackError` naming the refused lines by reason, when any was refused."""
        refused = self.batch.rejected_count
        if not refused:
            return
        if not self.from_csv:
            raise FeedbackError(f"nothing recorded: {next(iter(self.batch.rejected))}; correct it and run the "
                                "command again")
        reasons = "; ".join(f"{_where(lines)}: {reason}" for reason, lines in self.batch.rejected.items())
        taken = (f"the other {self.given - refused} were taken" if refused < self.given else "nothing was recorded")
        raise FeedbackError(f"{refused} of {self.given} row(s) refused ({reasons}); {taken}: correct the refused "
                            "lines and run the same CSV again (rows already recorded are not added twice)")


def feedback_command(config: XrayConfig, image_id: str | None = None, label: str | None = None,
                     reader: str | None = None, comment: str | None = None, csv_path: str | None = None,
                     run_id: str | None = None) -> FeedbackReport:
    """Check and record labels (see the module docstring); the report's `check` raises for refused rows."""
    if csv_path is not None:
        given = read_feedback_csv(csv_path, reader)
    else:
        given = [FeedbackInput(None, image_id or "", label or "", reader or os_user(), comment or "")]
    known = known_images(config, (item.image_id for item in given))
    batch = check_feedback(given, known, config.patient_salt(), dt.datetime.now(dt.timezone.utc), run_id)
    return FeedbackReport(len(given), batch, record_feedback(config, batch.rows), from_csv=csv_path is not None)


# -- xray status ----------------------------------------------------------------------------------------
def _champion_agreement(config: XrayConfig, model: dict, confirmed: dict[str, str]) -> dict[str, Any] | None:
    """The champion's gold predictions against the readers' confirmed labels (None: no champion)."""
    if model.get("version") is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    from streaming.lakehouse.tables import read_arrow

    predicted: dict[str, str] = {}
    # Filtered after the read, never in the scan: files a MERGE (`xray rescore`) wrote hold `string_view`
    # columns, which a dataset filter against a string value cannot compare (ArrowNotImplementedError).
    columns = ["image_id", "predicted_label", "model_name", "model_version"]
    rows = read_arrow(config, GOLD_PREDICTIONS.name, columns) if confirmed else None
    if rows is not None:
        wanted = pc.and_(pc.and_(pc.equal(rows.column("model_name"), model["name"]),
                                 pc.equal(rows.column("model_version"), str(model["version"]))),
                         pc.is_in(rows.column("image_id"), value_set=pa.array(sorted(confirmed), pa.string())))
        predicted = {r["image_id"]: r["predicted_label"] for r in rows.filter(wanted).to_pylist()
                     if r["predicted_label"]}
    ids = sorted(predicted)
    return {"model_version": model["version"],
            **agreement([predicted[i] for i in ids], [confirmed[i] for i in ids])}


def feedback_status(config: XrayConfig, model: dict) -> dict[str, Any]:
    """Labels, readers, images confirmed and disputed, and the champion's agreement (``model``: the
    champion entry of `streaming.ops.status.champion_status`). delta-rs reads of small columns only."""
    table = read_feedback(config)
    rows = table.to_pylist() if table is not None else []
    decided = decide_labels(rows)
    newest = max((r["feedback_time"] for r in rows if r["feedback_time"]), default=None)
    return {
        "labels": len(rows),
        "images": len(decided.readers),
        "readers": len({r["reader_id"] for r in rows}),
        "confirmed": len(decided.confirmed),
        "disputed": len(decided.disputed),
        "newest_time": iso_utc(newest),
        "champion": _champion_agreement(config, model, decided.confirmed),
    }


def feedback_lines(status: dict) -> list[str]:
    """The FEEDBACK section of the status screen."""
    fb = status["feedback"]
    if not fb["labels"]:
        return ["FEEDBACK  no radiologist labels yet (xray feedback)"]
    # Fits 100 columns with 5-digit counts; "disputed": readers split evenly, no label decided.
    lines = [f"FEEDBACK  {fb['labels']} label(s), {fb['readers']} reader(s), {fb['images']} image(s): "
             f"{fb['confirmed']} confirmed, {fb['disputed']} disputed (a tie)"]
    champion = fb["champion"]
    if champion is None:
        return lines
    if not champion["images"]:
        return [*lines, f"  champion version {champion['model_version']}: no gold prediction of it for the "
                        "confirmed images yet"]
    kappa = champion["cohen_kappa"]
    return [*lines, f"  champion version {champion['model_version']} agrees with readers on {champion['agreeing']} "
                    f"of {champion['images']} ({champion['agreement']:.1%}), Cohen's kappa "
                    f"{'-' if kappa is None else f'{kappa:.3f}'}"]

