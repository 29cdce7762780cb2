"""The mechanics of an erasure (`xray forget`): find a patient's images, delete their rows from every
table, make the bytes unreachable on disk, delete their files from landing and archive.

A patient's images are the silver rows whose ``patient_id`` is the patient's keyed hash, and every bronze
row whose content is one of those images, whose file name names the patient, or (files quarantined before
silver kept them) whose DICOM header does. Rows are deleted by delta-rs (``DeltaTable.delete``), then every
table that lost rows is vacuumed with no retention and its log history before a new checkpoint is removed:
the old Parquet files held the bytes, and the old commits' statistics may hold file names. Time travel to
before the erasure is gone with them, by design.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streaming.core.checkpoints import newest_batch
from streaming.core.config import XrayConfig
from streaming.core.dicomfile import DICOM_PREAMBLE_LENGTH, has_dicom_preamble
from streaming.core.errors import ErasureError
from streaming.core.paths import parse_xray_path
from streaming.core.pseudonym import patient_ref
from streaming.imaging.dicom import dicom_patient_id
from streaming.lakehouse.catalog import (
    BRONZE_IMAGES,
    GOLD_PREDICTIONS,
    GOLD_RADIOLOGIST_FEEDBACK,
    SILVER_FEATURES,
    SILVER_METADATA,
    SILVER_QUARANTINE,
)
from streaming.lakehouse.forgetlist import is_keyed_hash
from streaming.lakehouse.tables import open_table

log = logging.getLogger(__name__)

__all__ = ["Erasure", "erase_files", "erase_rows", "find_erasure", "purge_history"]

SCAN_BATCH_ROWS = 64  # bronze rows (with their bytes) held at once while looking for DICOM patients
COMMIT_ATTEMPTS = 5  # a delete that meets a concurrent stream commit is tried again


@dataclass
class Erasure:
    """What belongs to one patient. ``landing_paths`` are raw paths (bronze's): kept in memory only."""

    patient: str  # the keyed hash
    image_ids: set[str] = field(default_factory=set)  # content SHA-256 of every image of the patient
    path_refs: set[str] = field(default_factory=set)
    landing_paths: set[str] = field(default_factory=set)
    sizes: set[int] = field(default_factory=set)  # sizes of the erased files: which other files to hash
    silver_images: set[str] = field(default_factory=set)  # the image_ids silver holds for the patient

    def predicates(self) -> dict[str, str]:
        """The delete predicate of each table holding rows of the patient (SQL over hex values only)."""
        ids, refs = _in_list(self.image_ids), _in_list(self.path_refs)
        by_content = f"content_sha256 IN ({ids})" if ids else None
        by_path = f"path_ref IN ({refs})" if refs else None
        by_image = f"image_id IN ({ids})" if ids else None
        file_rows = " OR ".join(p for p in (by_content, by_path) if p)
        found = {
            BRONZE_IMAGES.name: file_rows,
            SILVER_QUARANTINE.name: file_rows,
            SILVER_METADATA.name: " OR ".join(p for p in (by_image, f"patient_id = '{self.patient}'") if p),
            SILVER_FEATURES.name: by_image,
            GOLD_PREDICTIONS.name: by_image,
            GOLD_RADIOLOGIST_FEEDBACK.name: by_image,  # readers' labels and notes on the patient's images
        }
        return {table: predicate for table, predicate in found.items() if predicate}


def _in_list(values: set[str]) -> str:
    # Only hex hashes reach SQL: anything else in a table column is not ours and is not quoted.
    return ", ".join(f"'{v}'" for v in sorted(values) if is_keyed_hash(v))


def find_erasure(config: XrayConfig, patient: str) -> Erasure:
    """Every image, path and file size of the patient (keyed hash ``patient``) the tables know."""
    erasure = Erasure(patient)
    key = config.patient_salt()
    silver = open_table(config, SILVER_METADATA.name)
    rows = [] if silver is None else silver.to_pyarrow_table(columns=["image_id", "patient_id", "path_ref"]).to_pylist()
    for row in rows:  # filtered here: delta-rs may prune string columns wrongly (README: pitfalls)
        if row["patient_id"] == patient:
            erasure.image_ids.add(row["image_id"])
            erasure.path_refs.add(row["path_ref"])
    quarantined = _quarantined_contents(config)
    for row in _bronze_rows(config, ["path", "path_ref", "content_sha256", "size_bytes"]):
        named = patient_ref(parse_xray_path(row["path"] or "").patient_key, key) == patient
        if named or row["content_sha256"] in erasure.image_ids or row["path_ref"] in erasure.path_refs:
            _add_file(erasure, row)
    # Files silver never kept (quarantined) may name the patient only inside: their DICOM header.
    unknown = quarantined - erasure.image_ids
    if unknown:
        for row in _bronze_rows(config, ["path", "path_ref", "content_sha256", "size_bytes", "content"]):
            content = row["content"]
            if row["content_sha256"] in unknown and content and has_dicom_preamble(content[:DICOM_PREAMBLE_LENGTH]):
                if patient_ref(dicom_patient_id(content), key) == patient:
                    _add_file(erasure, row)
    # An image's silver row may name no patient (its first copy had a name without one): its bytes decide.
    erasure.silver_images = {row["image_id"] for row in rows if row["image_id"] in erasure.image_ids}
    return erasure


def _add_file(erasure: Erasure, row: dict) -> None:
    if row["content_sha256"]:
        erasure.image_ids.add(row["content_sha256"])
    erasure.path_refs.add(row["path_ref"])
    erasure.landing_paths.add(row["path"])
    if row["size_bytes"] is not None:
        erasure.sizes.add(int(row["size_bytes"]))


def _quarantined_contents(config: XrayConfig) -> set[str]:
    quarantine = open_table(config, SILVER_QUARANTINE.name)
    if quarantine is None:
        return set()
    return {s for s in quarantine.to_pyarrow_table(columns=["content_sha256"]).column(0).to_pylist() if s}


def _bronze_rows(config: XrayConfig, columns: list[str]) -> Iterator[dict]:
    """Bronze's rows, a few at a time (the bytes of the whole table never sit in memory at once)."""
    bronze = open_table(config, BRONZE_IMAGES.name)
    if bronze is None:
        return
    for batch in bronze.to_pyarrow_dataset().to_batches(columns=columns, batch_size=SCAN_BATCH_ROWS):
        yield from batch.to_pylist()


def erase_rows(config: XrayConfig, erasure: Erasure) -> dict[str, int]:
    """Delete the patient's rows from every table; rows deleted per table. A delete that meets a stream's
    concurrent commit is tried again; afterwards every table is read whole and must hold none of the rows."""
    deleted: dict[str, int] = {}
    for name, predicate in erasure.predicates().items():
        table = open_table(config, name)
        if table is None:
            continue
        deleted[name] = _delete(config, name, predicate)
        left = _still_there(config, name, erasure)
        if left:
            raise ErasureError(f"table {name} still holds {left} row(s) of the patient after the delete; "
                               f"run the same 'xray forget' again")
    return deleted


def _delete(config: XrayConfig, name: str, predicate: str) -> int:
    from streaming.lakehouse.tables import CommitFailedError

    for attempt in range(COMMIT_ATTEMPTS):
        try:
            metrics = open_table(config, name).delete(predicate)
            return int(metrics.get("num_deleted_rows", 0) or 0)
        except CommitFailedError:
            if attempt == COMMIT_ATTEMPTS - 1:
                raise ErasureError(f"table {name}: the delete kept meeting concurrent commits; run the same "
                                   f"'xray forget' again") from None
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _still_there(config: XrayConfig, name: str, erasure: Erasure) -> int:
    """Rows of the patient a whole read of the table still finds (a check of the delete, not trust)."""
    table = open_table(config, name)
    columns = {c for c in ("content_sha256", "path_ref", "image_id", "patient_id")
               if c in table.schema().to_arrow().names}
    rows = table.to_pyarrow_table(columns=sorted(columns)).to_pylist()
    return sum(1 for r in rows if r.get("content_sha256") in erasure.image_ids or r.get("image_id") in erasure.image_ids
               or r.get("path_ref") in erasure.path_refs or r.get("patient_id") == erasure.patient)


def purge_history(config: XrayConfig, name: str) -> int:
    """Make the deleted rows unreachable: vacuum the table with no retention (the replaced Parquet files
    go), write a checkpoint and remove the log before it. Returns the data files removed."""
    table = open_table(config, name)
    removed = table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    table = open_table(config, name)
    table.create_checkpoint()
    keep_from = min([table.version(), *_stream_floors(config, name)])
    log_dir = Path(config.table_path(name)) / "_delta_log"
    for entry in os.listdir(log_dir):
        match = re.match(r"(\d{20})\.", entry)
        if match and int(match.group(1)) < keep_from:
            (log_dir / entry).unlink(missing_ok=True)
    return len(removed)


# Queries that read a table as a Delta stream (`xray stream --layer silver` / `--layer gold`, see
# `streaming.pipeline.service.start_query`): the commits they have not read yet must stay in the log.
STREAM_INPUTS = {"silver": BRONZE_IMAGES.name, "gold": SILVER_FEATURES.name}


def _stream_floors(config: XrayConfig, table: str) -> list[int]:
    """The oldest table version a Delta-stream query of this table still has to read (from the newest
    offsets of its checkpoint), if any."""
    floors = []
    for query, source in STREAM_INPUTS.items():
        folder = config.checkpoint_path(query) / "offsets"
        batch = newest_batch(folder) if source == table else None
        if batch is None:
            continue
        lines = (folder / str(batch)).read_text().splitlines()
        offsets = [json.loads(line) for line in lines[2:] if line.startswith("{")]
        floors += [int(o["version"]) for o in offsets if isinstance(o, dict) and "version" in o]
    return floors


def erase_files(config: XrayConfig, erasure: Erasure) -> int:
    """Delete the patient's files from landing and archive: the paths bronze recorded (and their archived
    copies), files whose name or DICOM header names the patient, and files with the bytes of an erased
    image. A symlink is judged by its path only and removed as a link (its target is never opened or
    touched); special files (FIFOs, devices) are never opened."""
    key = config.patient_salt()
    deleted = 0
    for folder in (config.landing_dir, config.archive_dir):
        for path, is_link in _entries(folder):
            recorded = str(path) in erasure.landing_paths
            named = patient_ref(parse_xray_path(str(path)).patient_key, key) == erasure.patient
            if recorded or named or (not is_link and _holds_patient(path, erasure, key)):
                path.unlink(missing_ok=True)
                deleted += 1
    return deleted


def _entries(folder: Path) -> Iterator[tuple[Path, bool]]:
    """(path, is a symlink) of the regular files and symlinks under ``folder`` (links are not followed)."""
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                yield path, stat.S_ISLNK(mode)


def _holds_patient(path: Path, erasure: Erasure, key: str) -> bool:
    """Whether a regular file is the patient's by its content: its DICOM header, or its bytes when its size
    is that of an erased file, whatever its name (a ``.tmp`` copy holds the same bytes). Opened like
    executors open landing files: no link followed, never blocking."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    with os.fdopen(descriptor, "rb") as handle:
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                return False
            if has_dicom_preamble(handle.read(DICOM_PREAMBLE_LENGTH)):
                handle.seek(0)
                if patient_ref(dicom_patient_id(handle), key) == erasure.patient:
                    return True
            if status.st_size not in erasure.sizes:
                return False
            handle.seek(0)
            return hashlib.file_digest(handle, "sha256").hexdigest() in erasure.image_ids
        except OSError:
            return False
