"""DICOM copies of the bench's images, and fresh contents of a file for a repeated measurement.

A DICOM copy holds the image's gray pixels at full size, 8 bits, uncompressed explicit little endian
(``dicom_from_image_bytes``), under the same folder with a ``.dcm`` name: the pipeline then does the same
work per image as on the JPEG but reads a DICOM. Every copy gets new UIDs, so copies of copies (``--copies``)
are new contents too.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from batch.bench.context import BenchFile
from batch.bench.host import worker_pool
from streaming.core.names import DICOM_SUFFIXES

__all__ = ["dicom_copies", "fresh_copy", "is_dicom", "summary"]


def is_dicom(item: BenchFile) -> bool:
    return item.relative.suffix.lower() in DICOM_SUFFIXES


def _bench_file(path: Path, relative: Path, content: bytes) -> BenchFile:
    return BenchFile(path, relative, len(content), hashlib.sha256(content).hexdigest())


def _convert(job: tuple[str, str]) -> bytes:
    from streaming.imaging.dicomwrite import DicomSpec, dicom_from_image_bytes

    source, target = job
    content = dicom_from_image_bytes(Path(source).read_bytes(), DicomSpec(compression="none"))
    Path(target).write_bytes(content)
    return hashlib.sha256(content).digest()  # the worker hashes: the parent only records


def dicom_copies(files: list[BenchFile], folder: Path) -> list[BenchFile]:
    """The DICOM copy of every file (already DICOM files are kept as they are), in the same order, written
    under ``folder`` keeping the relative folders (label folders survive); converted in a process pool."""
    jobs: list[tuple[BenchFile, Path, Path]] = []
    for item in files:
        if is_dicom(item):
            continue
        relative = item.relative.with_suffix(".dcm")
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((item, target, relative))
    with worker_pool(os.cpu_count() or 1) as pool:
        digests = pool.map(_convert, [(str(item.path), str(target)) for item, target, _ in jobs], chunksize=8)
    converted = {item.path: BenchFile(target, relative, target.stat().st_size, digest.hex())
                 for (item, target, relative), digest in zip(jobs, digests, strict=True)}
    return [converted.get(item.path, item) for item in files]


def _new_uids(content: bytes) -> bytes:
    """The same DICOM with new SOP instance, series and study UIDs: a new content, the same pixels."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(io.BytesIO(content))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def fresh_copy(item: BenchFile, folder: Path, tag: str) -> BenchFile:
    """A new content of ``item`` with the same decode work, named ``<tag>-<name>`` under ``folder``: a DICOM
    with new UIDs, any other image with bytes added after its end marker (decoders ignore them)."""
    content = item.path.read_bytes()
    content = _new_uids(content) if is_dicom(item) else content + f"xray-bench {tag}".encode()
    relative = item.relative.parent / f"{tag}-{item.relative.name}"
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    return _bench_file(target, relative, content)


def summary(files: list[BenchFile]) -> dict[str, float | int]:
    """Count and size of a set of files (for the report: DICOM copies are larger, uncompressed)."""
    total = sum(f.size for f in files)
    return {"files": len(files), "total_mb": round(total / 1e6, 1),
            "mean_kb": round(total / 1e3 / len(files), 1) if files else 0}
