"""Labels from a CSV file, for exports whose folders do not say NORMAL or PNEUMONIA (``--labels FILE``).

The file has a header; each row names one file by ``file_name`` (its base name) and/or ``sop_instance_uid``
(the DICOM SOPInstanceUID, read from the file's header) and gives its ``label`` (NORMAL or PNEUMONIA, any
case) and, optionally, its ``split`` (train, test, val or validation). The whole file is checked when read,
before anything is staged: each problem is one `IngestError` line naming the CSV line to fix, never the
key's value (file names and UIDs identify patients; only bronze keeps them).

A label reaches the pipeline the way every label does, as the ``<split>/<LABEL>/`` folder of the staged
file in landing: `apply_labels` gives the matched `SourceImage` its label and split, and
`streaming.ingest.plan.PlannedFile` puts it there.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from streaming.core.csvfile import read_csv_file
from streaming.core.errors import IngestError
from streaming.core.names import LABELS, SPLIT_ALIASES

if TYPE_CHECKING:  # the plan imports the options, which import this module: no import at run time
    from streaming.ingest.plan import SourceImage

log = logging.getLogger(__name__)

__all__ = ["LabelMatch", "LabelRow", "LabelsFile", "apply_labels", "read_labels", "read_sop_uid"]

KEY_COLUMNS = ("sop_instance_uid", "file_name")
LABEL_COLUMN, SPLIT_COLUMN = "label", "split"


@dataclass(frozen=True)
class LabelRow:
    """One labelled row: its line in the CSV (for messages), label and split (None: from the path)."""

    line: int
    label: str
    split: str | None = None


@dataclass(frozen=True)
class LabelsFile:
    """A checked labels file: rows by file base name and by SOP Instance UID (a row may be in both)."""

    path: Path
    by_name: Mapping[str, LabelRow]
    by_uid: Mapping[str, LabelRow]
    rows: int

    def lookup(self, name: str, uid: str | None) -> list[LabelRow]:
        """The rows for a file of base name ``name`` and SOP Instance UID ``uid`` (None: not DICOM, or no
        UID read): none, or one or two that agree. `IngestError` when its name and UID lead to rows that
        disagree."""
        rows = [row for row in (self.by_uid.get(uid) if uid else None, self.by_name.get(name)) if row]
        if len({(row.label, row.split) for row in rows}) > 1:
            raise IngestError(
                f"labels file {self.path.name}: lines {rows[1].line} (by file_name) and {rows[0].line} (by "
                "sop_instance_uid) give one file different labels or splits; correct one of them"
            )
        return rows


@dataclass
class LabelMatch:
    """What applying a labels file did: files labelled, and labelled rows that matched no file."""

    labelled_files: int = 0
    unmatched_rows: int = 0
    matched_lines: set[int] = field(default_factory=set)


def read_labels(path: str | Path) -> LabelsFile:
    """Read and check a labels CSV; `IngestError` (one line saying what to fix) for a file that cannot be
    read, a missing column, an unknown label or split, a row without key, or a key given twice with
    different labels."""
    return read_csv_file(path, "labels", "--labels", IngestError, _parse)


def _parse(path: Path, handle: IO[str]) -> LabelsFile:
    reader = csv.reader(handle)
    header = next(reader, None)
    columns = [c.strip().lower() for c in header or []]
    where = f"labels file {path.name}"
    keys = [c for c in KEY_COLUMNS if c in columns]
    if not keys:
        raise IngestError(f"{where} has no sop_instance_uid or file_name column (header: "
                          f"{', '.join(columns) or 'none'}); add one naming each file")
    if LABEL_COLUMN not in columns:
        raise IngestError(f"{where} has no label column; add one holding NORMAL or PNEUMONIA per row")
    index = {c: columns.index(c) for c in (*keys, LABEL_COLUMN, SPLIT_COLUMN) if c in columns}
    tables: dict[str, dict[str, LabelRow]] = {c: {} for c in KEY_COLUMNS}
    rows = 0
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, often at the end of an exported sheet
        value = {c: cells[i].strip() if i < len(cells) else "" for c, i in index.items()}
        row = LabelRow(line, _label(where, line, value[LABEL_COLUMN]), _split(where, line, value.get(SPLIT_COLUMN)))
        given = {c: value[c] for c in keys if value[c]}
        if not given:
            raise IngestError(f"{where} line {line} gives neither sop_instance_uid nor file_name; fill one in")
        for column, key in given.items():
            key = PurePosixPath(key.replace("\\", "/")).name if column == "file_name" else key
            _add(tables[column], key, row, f"{where} lines {{}} and {line} give the same {column} different "
                                           "labels or splits; keep the right one")
        rows += 1
    if rows == 0:
        raise IngestError(f"{where} has no rows under its header; add one row per labelled file")
    return LabelsFile(path, tables["file_name"], tables["sop_instance_uid"], rows)


def _label(where: str, line: int, value: str) -> str:
    label = value.upper()
    if label not in LABELS:
        shown = repr(value[:20]) if value else "empty"
        raise IngestError(f"{where} line {line}: label {shown} is neither NORMAL nor PNEUMONIA; correct it")
    return label


def _split(where: str, line: int, value: str | None) -> str | None:
    if not value:
        return None
    split = SPLIT_ALIASES.get(value.lower())
    if split is None:
        raise IngestError(f"{where} line {line}: split {value[:20]!r} is not train, test, val or validation; "
                          "correct it or leave it empty")
    return split


def _add(table: dict[str, LabelRow], key: str, row: LabelRow, clash: str) -> None:
    """Keep a key's first row; the same key again is fine when it says the same (a file listed twice)."""
    known = table.setdefault(key, row)
    if (known.label, known.split) != (row.label, row.split):
        raise IngestError(clash.format(known.line))


def read_sop_uid(source: str | Path | IO[bytes]) -> str | None:
    """A DICOM file's SOPInstanceUID (from its header, pixels never read), or None when it has none or
    cannot be read: such a file can still be matched by name, and silver judges its content."""
    import pydicom

    try:
        dataset = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        uid = dataset.get("SOPInstanceUID") or dataset.file_meta.get("MediaStorageSOPInstanceUID")
    except Exception as error:  # an unreadable header is the file's property, not ours
        log.debug("no SOPInstanceUID read from a DICOM file (%s)", type(error).__name__)
        return None
    text = str(uid or "").strip().rstrip("\x00")
    return text or None


def apply_labels(
    images: Iterable[SourceImage], labels: LabelsFile, uids: Mapping[str, str]
) -> tuple[list[SourceImage], LabelMatch]:
    """The images, those a row matches given that row's label (and split, when it gives one).

    ``uids``: the SOP Instance UID of each DICOM image, by source path (read only when the file has rows by
    UID). Files are matched by base name and by UID; the counts are for the log, names only at DEBUG.
    """
    match = LabelMatch()
    labelled = []
    for image in images:
        rows = labels.lookup(PurePosixPath(image.source).name, uids.get(image.source))
        if not rows:
            labelled.append(image)
            continue
        row = rows[0]
        log.debug("%s: label %s, split %s from line %d of the labels file", image.source, row.label,
                  row.split or "from its path", row.line)
        match.labelled_files += 1
        match.matched_lines.update(r.line for r in rows)
        labelled.append(dataclasses.replace(image, label=row.label, split=row.split))
    match.unmatched_rows = labels.rows - len(match.matched_lines)
    return labelled, match
