"""Radiologist feedback (``gold_radiologist_feedback``): a reader's label of an image, recorded exactly once.

A row is keyed by (image, reader): ``feedback_key`` is the SHA-256 of ``image_id`` and ``reader_id``.
Recording merges by that key (`streaming.lakehouse.direct.merge_rows`, delta-rs, no Spark): a new key is
inserted, a key already there is replaced only when its label or comment changed (``content_hash``), so the
same labels sent twice add nothing and a reader's correction replaces their earlier label. The reader's
name never reaches a table: ``reader_id`` is its keyed hash (`streaming.core.pseudonym.reader_ref`).

What the labels decide (`decide_labels`): per image, the label most of its readers gave; an image whose
readers are split evenly is *disputed* and decides nothing (never guessed). `agreement` measures a model's
labels against the readers' (share agreeing and Cohen's kappa).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.names import LABELS
from streaming.core.pseudonym import reader_ref
from streaming.lakehouse.catalog import GOLD_RADIOLOGIST_FEEDBACK, SILVER_METADATA

__all__ = [
    "COMMENT_MAX_CHARS", "FeedbackBatch", "FeedbackInput", "ReaderLabels", "agreement", "check_feedback",
    "cohen_kappa", "decide_labels", "feedback_row", "known_images", "read_feedback", "record_feedback",
]

COMMENT_MAX_CHARS = 500  # a note, not a report: a report is where PHI would creep in
_IMAGE_ID = re.compile(r"[0-9a-f]{64}")
# Why a row is refused (the report counts them and names their lines, never their values: a mistyped
# image id may be a file name, which names a patient).
NOT_AN_IMAGE_ID = "not an image id (silver's image_id: 64 hex digits)"
UNKNOWN_IMAGE = "no such image in silver (erased, or not streamed yet)"
BAD_LABEL = "label is neither NORMAL nor PNEUMONIA"
NO_READER = "no reader (fill the reader column, or pass --reader)"
LONG_COMMENT = f"comment longer than {COMMENT_MAX_CHARS} characters"


@dataclass(frozen=True)
class FeedbackInput:
    """One label as given: from the options (``line`` None) or a CSV line; values raw, not yet checked."""

    line: int | None
    image_id: str
    label: str
    reader: str
    comment: str = ""


@dataclass
class FeedbackBatch:
    """Checked input: table rows (one per image and reader), refused lines per reason, and lines a later
    line for the same image and reader replaced (the last one wins)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: dict[str, list[int | None]] = field(default_factory=dict)
    superseded: list[tuple[int | None, int | None]] = field(default_factory=list)

    @property
    def rejected_count(self) -> int:
        return sum(len(lines) for lines in self.rejected.values())


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def feedback_row(image_id: str, label: str, reader_id: str, comment: str | None, when: dt.datetime,
                 run_id: str | None = None) -> dict[str, Any]:
    """The table row of one checked label."""
    return {
        "feedback_key": _sha256(f"{image_id}:{reader_id}"),
        "image_id": image_id,
        "reader_label": label,
        "reader_id": reader_id,
        "feedback_time": when,
        "comment": comment,
        "content_hash": _sha256(json.dumps([label, comment])),
        "run_id": run_id,
    }


def _problem(given: FeedbackInput, image_id: str, label: str, comment: str, known: set[str]) -> str | None:
    if not _IMAGE_ID.fullmatch(image_id):
        return NOT_AN_IMAGE_ID
    if image_id not in known:
        return UNKNOWN_IMAGE
    if label not in LABELS:
        return BAD_LABEL
    if not given.reader.strip():
        return NO_READER
    if len(comment) > COMMENT_MAX_CHARS:
        return LONG_COMMENT
    return None


def check_feedback(given: Iterable[FeedbackInput], known: set[str], key: str, when: dt.datetime,
                   run_id: str | None = None) -> FeedbackBatch:
    """Check each input against the images silver holds (``known``) and build its row; ``key`` is the
    lakehouse's pseudonym key. Two inputs for one image and reader: the later is kept (and said)."""
    batch = FeedbackBatch()
    kept: dict[str, tuple[int | None, dict[str, Any]]] = {}
    for item in given:
        image_id, label, comment = item.image_id.strip().lower(), item.label.strip().upper(), item.comment.strip()
        problem = _problem(item, image_id, label, comment, known)
        if problem is not None:
            batch.rejected.setdefault(problem, []).append(item.line)
            continue
        row = feedback_row(image_id, label, reader_ref(item.reader, key), comment or None, when, run_id)
        earlier = kept.pop(row["feedback_key"], None)
        if earlier is not None:
            batch.superseded.append((earlier[0], item.line))
        kept[row["feedback_key"]] = (item.line, row)
    batch.rows = [row for _, row in kept.values()]
    return batch


def known_images(config: XrayConfig, image_ids: Iterable[str]) -> set[str]:
    """Which of ``image_ids`` silver holds (its ``image_id`` column, read with delta-rs)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from streaming.lakehouse.tables import read_arrow

    wanted = sorted({i.strip().lower() for i in image_ids})
    silver = read_arrow(config, SILVER_METADATA.name, ["image_id"]) if wanted else None
    if silver is None:
        return set()
    column = silver.column("image_id")
    # Filtered here: delta-rs may prune files on long string columns wrongly (README: pitfalls).
    return set(column.filter(pc.is_in(column, value_set=pa.array(wanted, pa.string()))).to_pylist())


def record_feedback(config: XrayConfig, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Merge checked rows into the table (one commit, none when nothing changed): ``added``, ``replaced``
    and ``unchanged`` (already recorded with the same label and comment)."""
    from streaming.lakehouse.direct import merge_rows

    if not rows:
        return {"added": 0, "replaced": 0, "unchanged": 0}
    counts = merge_rows(config, GOLD_RADIOLOGIST_FEEDBACK.name, rows, key="feedback_key", changed="content_hash")
    added, replaced = counts.get("num_target_rows_inserted", 0), counts.get("num_target_rows_updated", 0)
    return {"added": added, "replaced": replaced, "unchanged": len(rows) - added - replaced}


def read_feedback(config: XrayConfig, columns: Sequence[str] = ("image_id", "reader_id", "reader_label",
                                                                 "feedback_time")) -> Any:
    """The feedback rows (Arrow, the named columns), or None when no feedback was ever recorded."""
    from streaming.lakehouse.tables import read_arrow

    return read_arrow(config, GOLD_RADIOLOGIST_FEEDBACK.name, columns)


@dataclass
class ReaderLabels:
    """What the readers decided: per image its majority label (``confirmed``), the images whose readers
    are split evenly (``disputed``), and how many readers judged each image."""

    confirmed: dict[str, str] = field(default_factory=dict)
    disputed: set[str] = field(default_factory=set)
    readers: dict[str, int] = field(default_factory=dict)


def decide_labels(rows: Iterable[dict[str, Any]]) -> ReaderLabels:
    """The majority label of each image over its readers (one row per reader, as the table keeps them);
    a tie decides nothing: the image is disputed."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        votes[row["image_id"]][row["reader_label"]] += 1
    decided = ReaderLabels()
    for image_id, counts in votes.items():
        decided.readers[image_id] = sum(counts.values())
        (first, n_first), *rest = counts.most_common()
        if rest and rest[0][1] == n_first:
            decided.disputed.add(image_id)
        else:
            decided.confirmed[image_id] = first
    return decided


def cohen_kappa(matrix: Sequence[Sequence[int]]) -> float | None:
    """Cohen's kappa of a square agreement matrix (rows one rater, columns the other); None when chance
    agreement is total (both gave one and the same label throughout: kappa is undefined)."""
    total = sum(sum(row) for row in matrix)
    if total == 0:
        return None
    observed = sum(matrix[i][i] for i in range(len(matrix))) / total
    chance = sum(sum(matrix[i]) * sum(row[i] for row in matrix) for i in range(len(matrix))) / total ** 2
    return None if chance >= 1.0 else (observed - chance) / (1.0 - chance)


def agreement(predicted: Sequence[str], readers: Sequence[str]) -> dict[str, Any]:
    """How often ``predicted`` labels equal the readers' (pairs in order): images, agreeing, the share
    (None without images) and Cohen's kappa, which discounts the agreement chance alone would give."""
    matrix = [[0] * len(LABELS) for _ in LABELS]
    for mine, theirs in zip(predicted, readers, strict=True):
        matrix[LABELS.index(theirs)][LABELS.index(mine)] += 1
    n = sum(map(sum, matrix))
    agreeing = sum(matrix[i][i] for i in range(len(LABELS)))
    return {"images": n, "agreeing": agreeing, "agreement": agreeing / n if n else None,
            "cohen_kappa": cohen_kappa(matrix)}
