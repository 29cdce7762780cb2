"""Putting a plan into landing: files placed one by one (optionally a few at a time, to simulate arrivals),
archives extracted first into a temporary folder outside landing, and the report of what was staged.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from streaming.core.config import XrayConfig
from streaming.core.errors import IngestError
from streaming.core.progress import progress
from streaming.ingest.archive import archive_images, archive_sop_uids, safe_extract
from streaming.ingest.labels import apply_labels
from streaming.ingest.options import StagingOptions
from streaming.ingest.place import place_file
from streaming.ingest.plan import PlannedFile, SourceImage, plan_staging

log = logging.getLogger(__name__)

__all__ = ["StagingReport", "label_images", "stage_archive", "stage_plan"]


@dataclass
class StagingReport:
    """What a staging run put into landing."""

    dataset_ref: str
    source: str
    landing_dir: Path
    files_staged: int = 0
    bytes_staged: int = 0
    per_split_label: dict[str, int] = field(default_factory=dict)
    skipped_duplicates: int = 0
    renamed: int = 0
    staged_paths: list[Path] = field(default_factory=list)
    title: str | None = None
    version: int | None = None
    license: str | None = None
    labels_file: str | None = None
    labelled_from_file: int = 0
    unmatched_label_rows: int = 0

    def summary(self) -> str:
        """One line for the log (counts only: file names and UIDs identify patients)."""
        groups = ", ".join(f"{k}={v}" for k, v in sorted(self.per_split_label.items())) or "none"
        line = (
            f"staged {self.files_staged} files ({self.bytes_staged / 2**20:.1f} MiB) from {self.dataset_ref} "
            f"into {self.landing_dir} [{groups}]; {self.skipped_duplicates} duplicates skipped, "
            f"{self.renamed} renamed"
        )
        if self.labels_file is not None:
            line += (f"; labels file {self.labels_file}: {self.labelled_from_file} files labelled, "
                     f"{self.unmatched_label_rows} labelled rows matched no file")
        return line


def stage_plan(
    plan: list[PlannedFile],
    resolve: Callable[[PlannedFile], Path],
    report: StagingReport,
    options: StagingOptions,
    move: bool,
) -> None:
    """Place the planned files into landing, ``options.batch_files`` at a time when set, to simulate
    arrivals; ``resolve`` gives a planned file's path in the source."""
    order = list(plan)
    batch_files, interval_seconds = options.batch_files, options.interval_seconds
    if batch_files:
        # Mixed batches look like real arrivals: every micro-batch gets some of each class.
        random.Random(options.seed).shuffle(order)
    counts: Counter[str] = Counter()
    with progress(len(order), "stage", unit="file") as bar:
        for index, planned in enumerate(order):
            if batch_files and index and index % batch_files == 0 and interval_seconds:
                time.sleep(interval_seconds)
            source = resolve(planned)
            size = source.stat().st_size
            path, status = place_file(source, report.landing_dir / planned.group, planned.name, move=move)
            bar.update(1)
            if status == "duplicate":
                report.skipped_duplicates += 1
                continue
            report.renamed += status == "renamed"
            report.files_staged += 1
            report.bytes_staged += size
            report.staged_paths.append(path)
            counts[planned.group] += 1
    report.per_split_label = dict(sorted(counts.items()))


def label_images(
    images: Sequence[SourceImage],
    options: StagingOptions,
    report: StagingReport,
    read_uids: Callable[[list[SourceImage]], Mapping[str, str]],
) -> list[SourceImage]:
    """The images with the labels of ``options.labels`` applied, counted in ``report``. ``read_uids`` gives
    the SOP Instance UID of DICOM images by source path; it is called only when rows name files by UID."""
    labels = options.labels_file
    if labels is None:
        return list(images)
    dicom = [image for image in images if image.dicom]
    uids = read_uids(dicom) if labels.by_uid and dicom else {}
    labelled, match = apply_labels(images, labels, uids)
    report.labels_file = labels.path.name
    report.labelled_from_file, report.unmatched_label_rows = match.labelled_files, match.unmatched_rows
    if match.unmatched_rows:
        log.warning("%d of %d rows of labels file %s matched no file (by file_name or sop_instance_uid); "
                    "--log-level DEBUG names the files labelled", match.unmatched_rows, labels.rows,
                    labels.path.name)
    return labelled


def _staging_dir(config: XrayConfig) -> Path:
    """A fresh temporary folder under the lakehouse (same filesystem as landing, outside it)."""
    parent = config.root / ".staging"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=parent))


def stage_archive(config: XrayConfig, archive: Path, report: StagingReport, options: StagingOptions) -> None:
    """Plan the images of ``archive``, extract only those (checked whole) outside landing, then place them."""
    images = archive_images(archive)  # refuses an unsafe archive before anything is extracted
    if not images:
        raise IngestError(f"no X-ray images (.jpeg/.jpg/.png/.dcm or DICOM) in archive {archive}; check the dataset")
    images = label_images(images, options, report, lambda dicom: archive_sop_uids(archive, dicom))
    plan = plan_staging(images, options)
    if not plan:
        raise IngestError(
            f"no images of split(s) {', '.join(options.splits)} in archive {archive}; check --splits"
        )
    workdir = _staging_dir(config)
    try:
        extracted = workdir / "extract"
        safe_extract(archive, extracted, members=[p.source for p in plan])
        for planned in plan:  # a short file means a damaged archive: stop before touching landing
            path = extracted.joinpath(*PurePosixPath(planned.source).parts)
            if not path.is_file() or path.stat().st_size != planned.size:
                raise IngestError(f"archive {archive.name} member {planned.source!r} did not extract whole; "
                                  "download it again")
        stage_plan(plan, lambda p: extracted.joinpath(*PurePosixPath(p.source).parts), report, options, True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
