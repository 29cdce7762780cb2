"""How a staging run chooses and drops its files: one frozen, validated value passed from the entry point
(`ingest_kaggle`, `ingest_folder`) to the planning, the placing and the recorded row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streaming.core.errors import IngestError
from streaming.core.names import SPLITS
from streaming.ingest.labels import LabelsFile, read_labels

__all__ = ["StagingOptions"]


@dataclass(frozen=True)
class StagingOptions:
    """``sample_per_class``: at most N random images per split/LABEL (None: all), drawn with ``seed``;
    ``splits``: the splits to stage (a sequence, or a comma-separated string); ``batch_files`` and
    ``interval_seconds``: drop K files at a time, S seconds apart, to simulate arrivals (0: all at once);
    ``labels``: a labels CSV (`streaming.ingest.labels`), read and checked here, before anything is staged.

    Checked once, when made: `IngestError` for an unknown split, a sample below 1, a negative pace or a bad
    labels file. ``splits`` is kept lower-case, without repeats, in the order given.
    """

    sample_per_class: int | None = None
    splits: Sequence[str] = SPLITS
    seed: int = 0
    batch_files: int = 0
    interval_seconds: float = 0.0
    labels: LabelsFile | str | Path | None = None

    def __post_init__(self) -> None:
        splits = self.splits
        if isinstance(splits, str):
            splits = tuple(s.strip() for s in splits.split(",") if s.strip())
        chosen = tuple(dict.fromkeys(s.lower() for s in splits))
        unknown = [s for s in chosen if s not in SPLITS]
        if unknown or not chosen:
            raise IngestError(
                f"unknown split(s) {', '.join(unknown) or '(none)'}; choose among {', '.join(SPLITS)}"
            )
        if self.sample_per_class is not None and self.sample_per_class < 1:
            raise IngestError(
                f"--sample must be at least 1 (got {self.sample_per_class}); omit it to stage everything"
            )
        if self.batch_files < 0 or self.interval_seconds < 0:
            raise IngestError("--batch-files and --interval-seconds must be >= 0")
        object.__setattr__(self, "splits", chosen)
        if self.labels is not None and not isinstance(self.labels, LabelsFile):
            object.__setattr__(self, "labels", read_labels(self.labels))

    @property
    def labels_file(self) -> LabelsFile | None:
        """The checked labels file, or None (typed: ``labels`` is always one after construction)."""
        return self.labels if isinstance(self.labels, LabelsFile) else None

    def as_record(self) -> dict[str, Any]:
        """The options as recorded in ``bronze_kaggle_dataset_info.sampling_options``."""
        record = {"sample_per_class": self.sample_per_class, "splits": list(self.splits), "seed": self.seed,
                  "batch_files": self.batch_files, "interval_seconds": self.interval_seconds}
        if self.labels_file is not None:  # its name only: where the labels came from, not what they say
            record["labels_file"] = self.labels_file.path.name
        return record
