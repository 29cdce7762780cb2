"""The files the bench measures on (a data folder, the shared originals or generated images, plus copies),
the context every part receives, and how files are put into a landing folder."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.bench.settings import DEFAULT_DATA, DEFAULT_GENERATED_FILES, GENERATED_SIZE
from streaming.core.config import XrayConfig
from streaming.core.dicomfile import is_input_file
from streaming.core.errors import ConfigError
from streaming.core.names import LABELS, NORMAL, PNEUMONIA


@dataclass(frozen=True)
class BenchFile:
    """One image of the bench set: where it is, its path relative to the data root (kept in landing so the
    label folders survive), size and content hash (the image id in silver and gold)."""

    path: Path
    relative: Path
    size: int
    sha256: str


@dataclass
class BenchContext:
    config: XrayConfig
    work: Path
    files: list[BenchFile]
    results: dict[str, Any]
    tracking_uri: str | None = None
    pipeline_runs: dict[str, dict] = field(default_factory=dict)
    source_files: list[BenchFile] = field(default_factory=list)
    """The files as found (JPEG, PNG), when ``files`` are their DICOM copies (``--format dicom``)."""
    dicom_files: list[BenchFile] = field(default_factory=list)
    """The DICOM copies of ``files`` once made (``--format dicom`` or the ``dicom`` part)."""


def label_of(relative: Path) -> str:
    upper = [part.upper() for part in relative.parts[:-1]]
    return next((label for label in LABELS if label in upper), "")


def _interleave_by_label(paths: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Sorted files, classes alternating, so any prefix holds both classes (the model needs both)."""
    groups: dict[str, list[tuple[Path, Path]]] = {}
    for item in sorted(paths, key=lambda p: str(p[1])):
        groups.setdefault(label_of(item[1]), []).append(item)
    ordered: list[tuple[Path, Path]] = []
    queues = [groups[key] for key in sorted(groups)]
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def _write_noisy_jpegs(root: Path, count: int, size: tuple[int, int]) -> None:
    """Full-size noisy grayscale JPEGs in the Kaggle layout (used when streaming.imaging.synthetic is missing)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    body = 110 + 60 * np.cos((x / width - 0.5) * 3) * np.cos((y / height - 0.55) * 2.5)
    for index in range(count):
        label = LABELS[index % 2]
        pixels = body + rng.normal(0, 18, size=(height, width))
        if label == PNEUMONIA:
            cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.55, 0.8) * height
            pixels += 90 * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (0.02 * width * height)))
        name = (f"IM-{index + 1:04d}-0001.jpeg" if label == NORMAL
                else f"person{index + 1}_bacteria_{index + 1}.jpeg")
        path = root / "train" / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(path, "JPEG", quality=90)


def _data_root(data: str | Path | None, max_files: int | None, work: Path) -> tuple[Path, str]:
    """The folder of images to measure on and where it comes from (generating images when needed)."""
    if data is not None:
        root = Path(data).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"bench data folder {root} does not exist; pass --data DIR holding images")
        return root, "folder"
    if DEFAULT_DATA.is_dir():
        return DEFAULT_DATA.resolve(), "chest_xray_originals"
    root = work / "generated"
    count = max_files or DEFAULT_GENERATED_FILES
    try:
        from streaming.imaging.synthetic import write_synthetic_dataset
    except ImportError:
        _write_noisy_jpegs(root, count, GENERATED_SIZE)
        return root, "generated (noisy JPEGs)"
    write_synthetic_dataset(root, per_class=math.ceil(count / 2), splits=("train",), seed=0,
                            size=GENERATED_SIZE)
    return root, "generated (streaming.imaging.synthetic)"


def _bench_file(path: Path, relative: Path, content: bytes) -> BenchFile:
    return BenchFile(path, relative, len(content), hashlib.sha256(content).hexdigest())


def _add_copies(originals: list[BenchFile], work: Path, copies: int) -> list[BenchFile]:
    """Variants of every file that differ only by bytes after the image's end marker."""
    made = []
    for copy in range(1, copies):
        for item in originals:
            relative = item.relative.parent / f"copy{copy}-{item.relative.name}"
            target = work / "copies" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            content = item.path.read_bytes() + f"xray-bench copy {copy}".encode()
            target.write_bytes(content)
            made.append(_bench_file(target, relative, content))
    return made


def _describe(files: list[BenchFile], root: Path, source: str, copies: int) -> dict[str, Any]:
    sizes = [f.size for f in files]
    return {
        "source": source,
        "root": str(root),
        "files": len(files),
        "copies": copies,
        "unique_contents": len({f.sha256 for f in files}),
        "labels": {label or "none": sum(1 for f in files if label_of(f.relative) == label)
                   for label in {label_of(f.relative) for f in files}},
        "total_mb": round(sum(sizes) / 1e6, 1),
        "mean_kb": round(statistics.mean(sizes) / 1e3, 1),
    }


def resolve_dataset(data: str | Path | None, max_files: int | None, work: Path,
                    copies: int = 1) -> tuple[list[BenchFile], dict]:
    """The images to measure on, and a description of where they come from.

    ``copies`` > 1 adds variants of every file that differ only by bytes after the image's end marker:
    decoders ignore them, so each copy costs the same work but is a new content (not a duplicate in
    silver). A larger backlog measures steady-state throughput and scaling rather than per-batch costs.
    """
    root, source = _data_root(data, max_files, work)
    found = [(p, p.relative_to(root)) for p in root.rglob("*") if p.is_file() and is_input_file(p)]
    ordered = _interleave_by_label(found)
    if max_files:
        ordered = ordered[:max_files]
    if not ordered:
        raise ConfigError(f"no .jpeg/.jpg/.png/.dcm or DICOM images under {root}; pass --data DIR holding images")
    # Reading every file also brings it into the page cache before anything is timed.
    files = [_bench_file(path, relative, path.read_bytes()) for path, relative in ordered]
    files += _add_copies(list(files), work, copies)
    return files, _describe(files, root, source, copies)


def stage(files: Iterable[BenchFile], landing: Path, prefix: str = "") -> None:
    """Copy files into landing keeping their relative folders (fresh modification times, like staging)."""
    for item in files:
        target = landing / item.relative.parent / (prefix + item.relative.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, target)


def drop(item: BenchFile, landing: Path) -> float:
    """Place a file in landing atomically: hidden temporary name in the target folder, then rename."""
    folder = landing / item.relative.parent
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".bench-{uuid.uuid4().hex}.tmp"
    shutil.copyfile(item.path, temporary)
    os.rename(temporary, folder / item.relative.name)
    return time.time()
