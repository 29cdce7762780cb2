"""The ``baseline`` part: the essential work per file in a plain Python process pool, what the pipeline is
compared with."""

from __future__ import annotations

import hashlib
import io
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from batch.bench.context import BenchFile
from batch.bench.host import worker_pool
from batch.bench.settings import BASELINE_REPEATS, MAX_PIXELS
from streaming.core.names import DICOM_SUFFIXES


def _gray(path: str) -> Any:
    """Read the bytes, hash them and decode to the feature size, as bronze and silver do (a DICOM copy,
    ``--format dicom``: pydicom and the display pipeline, as silver does)."""
    from PIL import Image

    from streaming.imaging.features import fixed_size_gray, resize_levels

    with open(path, "rb") as handle:
        content = handle.read()
    hashlib.sha256(content).hexdigest()
    if path.lower().endswith(DICOM_SUFFIXES):
        from streaming.imaging.dicom import read_dicom

        return resize_levels(read_dicom(content, MAX_PIXELS).gray)
    with Image.open(io.BytesIO(content)) as image:
        return fixed_size_gray(image)


def _essential_work(path: str) -> int:
    return int(_gray(path).shape[0])


def _essential_work_with_features(path: str) -> int:
    from streaming.imaging.features import extract_features

    return int(extract_features(_gray(path)).shape[0])


def _pool_rate(pool: Any, work: Callable[[str], int], paths: list[str], processes: int) -> list[float]:
    rates = []
    for _ in range(BASELINE_REPEATS):
        clock = time.perf_counter()
        pool.map(work, paths, chunksize=max(1, len(paths) // (processes * 8)))
        rates.append(len(paths) / (time.perf_counter() - clock))
    return rates


def bench_baseline(files: list[BenchFile]) -> dict[str, Any]:
    processes = os.cpu_count() or 1
    paths = [str(f.path) for f in files]
    with worker_pool(processes) as pool:
        pool.map(_essential_work, paths[: processes * 2])  # imports and first decode out of the timing
        decode = _pool_rate(pool, _essential_work, paths, processes)
        features = _pool_rate(pool, _essential_work_with_features, paths, processes)
    clock = time.perf_counter()
    for path in paths:
        _essential_work(path)
    single_ms = (time.perf_counter() - clock) * 1000 / len(paths)
    return {
        "processes": processes,
        "images_per_second": round(statistics.median(decode), 1),
        "images_per_second_runs": [round(r, 1) for r in decode],
        "with_features_images_per_second": round(statistics.median(features), 1),
        "single_process_ms_per_image": round(single_ms, 2),
        "work": "read + SHA-256 + Image.open + fixed_size_gray (draft decode, resize to 128x128; DICOM: "
                "read_dicom + resize_levels); with_features adds extract_features",
    }
