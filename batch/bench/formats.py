"""The ``dicom`` part: the same images as JPEG (or PNG) and as their DICOM copies, measured in the same run,
interleaved, best of several rounds; DICOM's throughput as a ratio to JPEG's (the machine is shared and
noisy: a ratio from one run says more than two figures from two runs).

* *decode*: silver's work per file (read, SHA-256, ``inspect_image``: sniff, decode to the feature size,
  quality measures, features) in a process pool of as many processes as cores;
* *pipeline*: one running, warmed-up ``xray stream`` (``local[2]``); in each round the JPEG backlog and
  the DICOM backlog appear at once, one after the other (order alternating between rounds), each a fresh
  content of every image; seconds until the last of them is visible in gold.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from batch.bench.context import BenchContext, BenchFile, stage
from batch.bench.dicomcopy import dicom_copies, fresh_copy, is_dicom, summary
from batch.bench.host import load_average, worker_pool
from batch.bench.report import rounded, say
from batch.bench.settings import FORMAT_ROUNDS, MAX_PIXELS, MEASURED_MASTER
from batch.bench.streams import RunningStream, warmup_images
from batch.bench.tables import wait_for_events


def _silver_work(path: str) -> int:
    from streaming.imaging.images import expected_format, inspect_image

    with open(path, "rb") as handle:
        content = handle.read()
    hashlib.sha256(content).hexdigest()
    inspected = inspect_image(content, MAX_PIXELS, expected_format(os.path.basename(path)))
    if inspected.features is None:
        raise RuntimeError(f"{path} did not decode: {inspected.decode_error or inspected.content_kind}")
    return int(inspected.features.shape[0])


def _pool_seconds(pool: Any, paths: list[str], processes: int) -> float:
    clock = time.perf_counter()
    pool.map(_silver_work, paths, chunksize=max(1, len(paths) // (processes * 8)))
    return time.perf_counter() - clock


def decode_rates(jpeg: list[BenchFile], dicom: list[BenchFile], rounds: int = FORMAT_ROUNDS) -> dict[str, Any]:
    """Images/s of silver's per-file work on both sets, rounds interleaved (JPEG first, then DICOM first)."""
    processes = os.cpu_count() or 1
    paths = {"jpeg": [str(f.path) for f in jpeg], "dicom": [str(f.path) for f in dicom]}
    runs: dict[str, list[float]] = {"jpeg": [], "dicom": []}
    with worker_pool(processes) as pool:
        for kind in paths:  # imports, decoder plugins and the first decode out of the timing
            pool.map(_silver_work, paths[kind][: processes * 2])
        for index in range(rounds):
            for kind in (("jpeg", "dicom") if index % 2 == 0 else ("dicom", "jpeg")):
                runs[kind].append(len(paths[kind]) / _pool_seconds(pool, paths[kind], processes))
    best = {kind: max(rates) for kind, rates in runs.items()}
    return {
        "processes": processes,
        "jpeg_images_per_second": round(best["jpeg"], 1),
        "dicom_images_per_second": round(best["dicom"], 1),
        "jpeg_runs": [round(r, 1) for r in runs["jpeg"]],
        "dicom_runs": [round(r, 1) for r in runs["dicom"]],
        "dicom_to_jpeg": round(best["dicom"] / best["jpeg"], 3),
        **round_ratios(runs["jpeg"], runs["dicom"]),
        "work": "read + SHA-256 + inspect_image (sniff, decode to the feature size, quality, features)",
    }


def round_ratios(jpeg: list[float | None], dicom: list[float | None]) -> dict[str, Any]:
    """DICOM / JPEG of each round (the two measured back to back) and their median: less sensitive than
    the ratio of the bests to a load change on a shared machine between rounds."""
    ratios = [d / j for j, d in zip(jpeg, dicom, strict=True) if j and d]
    return {"round_ratios": [round(r, 3) for r in ratios],
            "median_round_ratio": round(statistics.median(ratios), 3) if ratios else None}


def _backlog_seconds(stream: RunningStream, files: list[BenchFile], lakehouse: Path) -> float | None:
    """Stage ``files`` hidden, expose them at once (one rename), seconds until the last one is in gold."""
    hidden = stream.landing / f".backlog-{uuid.uuid4().hex}"
    stage(files, hidden)
    exposed = time.time()
    os.rename(hidden, stream.landing / f"backlog-{uuid.uuid4().hex[:8]}")
    wanted = {f.sha256 for f in files}
    if not stream.watcher.wait_for(wanted, max(900.0, len(files) * 10.0), stream.alive):
        return None
    seconds = max(stream.watcher.visible[i] for i in wanted) - exposed
    wait_for_events(lakehouse, "gold", exposed)  # the batch's events committed: the stream is idle again
    return seconds


def pipeline_rates(ctx: BenchContext, sets: dict[str, list[BenchFile]], rounds: int = FORMAT_ROUNDS
                   ) -> dict[str, Any]:
    """Landing → gold images/s of each set in one warm running stream, rounds interleaved, best of each."""
    lakehouse = ctx.work / "formats"
    say(f"    xray stream (running, warm), {rounds} rounds of {' and '.join(sets)} backlogs "
        f"({len(next(iter(sets.values())))} files each), master {MEASURED_MASTER}")
    stream = RunningStream(ctx, lakehouse, MEASURED_MASTER, ctx.work / "logs" / "formats.log")
    runs: dict[str, list[float | None]] = {kind: [] for kind in sets}
    result: dict[str, Any] = {"master": MEASURED_MASTER, "rounds": rounds}
    try:
        result["ready_seconds"] = round(stream.warm_up(warmup_images(ctx)), 1)
        order = list(sets)
        for index in range(rounds):
            for kind in (order if index % 2 == 0 else order[::-1]):
                files = [fresh_copy(f, ctx.work / f"formats-{kind}-{index}", f"r{index}") for f in sets[kind]]
                seconds = _backlog_seconds(stream, files, lakehouse)
                runs[kind].append(len(files) / seconds if seconds else None)
                shutil.rmtree(ctx.work / f"formats-{kind}-{index}", ignore_errors=True)
                say(f"    round {index + 1} {kind}: {rounded(runs[kind][-1], 1)} images/s")
    finally:
        stream.stop()
        result["memory"] = stream.memory
    shutil.rmtree(lakehouse, ignore_errors=True)
    for kind, rates in runs.items():
        done = [r for r in rates if r]
        result[f"{kind}_images_per_second"] = round(max(done), 1) if done else None
        result[f"{kind}_runs"] = [rounded(r, 1) for r in rates]
    jpeg, dicom = result.get("jpeg_images_per_second"), result.get("dicom_images_per_second")
    result["dicom_to_jpeg"] = round(dicom / jpeg, 3) if jpeg and dicom else None
    result.update(round_ratios(runs["jpeg"], runs["dicom"]))
    return result


def bench_dicom(ctx: BenchContext) -> dict[str, Any]:
    """The ``dicom`` part: the bench's images (as found, before ``--format dicom``) against their DICOM copies."""
    jpeg = [f for f in ctx.source_files or ctx.files if not is_dicom(f)]
    if not jpeg:
        raise RuntimeError("the dicom part needs JPEG or PNG images to compare with their DICOM copies")
    dicom = ctx.dicom_files or dicom_copies(jpeg, ctx.work / "dicom")
    ctx.dicom_files = dicom
    loadavg = load_average()
    say(f"    silver's per-file work, JPEG vs DICOM, {len(jpeg)} images, {FORMAT_ROUNDS} interleaved rounds")
    result: dict[str, Any] = {"jpeg_files": summary(jpeg), "dicom_files": summary(dicom),
                              "dicom_encoding": "8-bit MONOCHROME2, explicit VR little endian, uncompressed",
                              "decode": decode_rates(jpeg, dicom)}
    result["pipeline"] = pipeline_rates(ctx, {"jpeg": jpeg, "dicom": dicom})
    result["loadavg"] = {"start": loadavg, "end": load_average()}
    return result
