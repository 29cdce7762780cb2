"""The local source: a folder of X-rays (any depth), or a .zip/.tar of one, staged into landing.

Folder files are copied, never moved; an archive is checked and extracted outside landing first.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.dicomfile import is_dicom_file
from streaming.core.errors import IngestError
from streaming.core.names import DICOM_SUFFIXES, is_image_name, may_be_dicom_name
from streaming.ingest.labels import read_sop_uid
from streaming.ingest.options import StagingOptions
from streaming.ingest.plan import IGNORED_FOLDERS, PlannedFile, SourceImage, plan_staging
from streaming.ingest.record import record_run
from streaming.ingest.stage import StagingReport, label_images, stage_archive, stage_plan

log = logging.getLogger(__name__)

__all__ = ["ingest_folder"]


def ingest_folder(
    spark: Any,
    config: XrayConfig,
    path: str | Path,
    **staging: Any,
) -> StagingReport:
    """Stage the X-rays of a local folder (or a .zip/.tar of one) into landing and record the run.

    Images are found at any depth and keep their ``split/LABEL`` from the path (see `plan_staging`), or
    from a labels file (``labels``). Folder files are copied, never moved. ``staging``: the fields of
    `StagingOptions` as keywords (``sample_per_class``, ``splits``, ``seed``, ``batch_files``,
    ``interval_seconds``, ``labels``). Raises `IngestError` when the path does not exist or holds no
    images, or the labels file is not right (before anything is staged). ``spark`` may be None: a session
    is then obtained only to record the run, so a bad path fails before any JVM starts.
    """
    options = StagingOptions(**staging)
    source = _checked_source(config, path)
    report = StagingReport(str(source), "folder", config.landing_dir)
    if source.is_file():
        stage_archive(config, source, report, options)
    else:
        images = _folder_images(source, skip=[config.root])
        if not images:
            raise IngestError(f"no X-ray images (.jpeg/.jpg/.png/.dcm or DICOM) under {source}; check the path")
        images = label_images(images, options, report, functools.partial(_folder_sop_uids, source))
        images = _fingerprint_clashes(source, images)
        plan = plan_staging(images, options, source_prefix=source.name)
        if not plan:
            raise IngestError(
                f"no images of split(s) {', '.join(options.splits)} under {source}; check --splits"
            )
        stage_plan(plan, lambda p: source.joinpath(*PurePosixPath(p.source).parts), report, options, False)
    record_run(spark, config, report, options)
    log.info("%s", report.summary())
    return report


def _checked_source(config: XrayConfig, path: str | Path) -> Path:
    """The resolved source path; `IngestError` when it does not exist or lies inside landing."""
    source = Path(path).expanduser()
    if not source.exists():
        raise IngestError(
            f"{source} does not exist; pass a folder (or .zip) holding split/LABEL/*.jpeg images"
        )
    source = source.resolve()
    landing = config.landing_dir
    if source == landing or source.is_relative_to(landing):
        raise IngestError(f"{source} is inside the landing folder {landing}; stage from a folder outside it")
    return source


def _folder_images(folder: Path, skip: Iterable[Path]) -> list[SourceImage]:
    """Images under ``folder`` at any depth (symlinked folders not followed; hidden folders skipped)."""
    skip_resolved = {p.resolve() for p in skip}
    images = []
    for directory, subdirs, names in os.walk(folder):
        here = Path(directory)
        subdirs[:] = sorted(
            d for d in subdirs
            if not d.startswith(".") and d not in IGNORED_FOLDERS
            and (here / d).resolve() not in skip_resolved
        )
        for name in sorted(names):
            path = here / name
            # Extensionless PACS exports (IM000001, a UID) are inputs only when their content is DICOM;
            # `is_dicom_file` neither follows a link nor blocks on a FIFO.
            if is_image_name(name) and path.is_file():
                dicom = name.lower().endswith(DICOM_SUFFIXES)
            elif may_be_dicom_name(name) and is_dicom_file(path):
                dicom = True
            else:
                continue
            images.append(SourceImage(path.relative_to(folder).as_posix(), path.stat().st_size, dicom=dicom))
    return images


def _folder_sop_uids(folder: Path, images: list[SourceImage]) -> dict[str, str]:
    """The SOP Instance UID of each DICOM image that has one, by source path (headers only)."""
    uids = {}
    for image in images:
        uid = read_sop_uid(folder.joinpath(*PurePosixPath(image.source).parts))
        if uid:
            uids[image.source] = uid
    return uids


def _fingerprint_clashes(folder: Path, images: list[SourceImage]) -> list[SourceImage]:
    """Same landing name twice (a nested copy of the dataset): hash those few so identical copies are
    staged once and different ones both kept. After the labels: they decide the landing name."""
    by_target: dict[PurePosixPath, list[SourceImage]] = defaultdict(list)
    for image in images:
        by_target[PlannedFile.of(image, folder.name).target].append(image)
    result = []
    for clashing in by_target.values():
        if len(clashing) == 1:
            result.extend(clashing)
        else:
            result.extend(SourceImage(i.source, i.size, _sha256(folder / i.source)) for i in clashing)
    return result


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
