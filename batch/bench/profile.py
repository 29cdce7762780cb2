"""The ``profile`` part: where one large micro-batch of the real pipeline spends its time.

Two runs on all the files (one micro-batch up to the admission limit, a champion registered): *cold*, ``xray
stream --once`` with the backlog waiting (fresh JVM and Python workers), and *warm*, a running ``xray
stream`` warmed up by two images and then receiving a fifth of the backlog at once, then the rest; both with ``XRAY_PROFILE_FILE`` set (`streaming.core.profiling`): executors time each phase of every
image (read, hash, bronze row and write, decode, measures, features, inspected row, Arrow in/out) per task,
the driver times its phases and every table commit, one JSON line per batch. The largest batch of each is reported:
executor ms per image per phase (summed over tasks, divided by the batch's images) with its share of the
tasks' time, the rest of the task time being Spark's (Arrow transport between the JVM and the Python worker,
waiting for input); driver ms per phase and per table commit, adding up to the batch's wall time. The driver's serial time (a
batch's wall time less its Spark job's) of the warm run's two large batches gives its cost per image and per
batch, and the bound it puts on one stream's throughput however many executors (Amdahl: `driver_serial`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from batch.bench.champion import ensure_champion
from batch.bench.context import BenchContext, stage
from batch.bench.host import load_average
from batch.bench.phases import driver_serial, summarise
from batch.bench.processes import run_xray
from batch.bench.settings import MEASURED_MASTER
from batch.bench.streams import RunningStream, warmup_images
from streaming.core.profiling import PROFILE_ENV


def bench_profile(ctx: BenchContext, kinds: tuple[str, ...] = ("cold", "warm")) -> dict[str, Any]:
    """The largest batch of a cold ``xray stream --once`` and of a warm running stream, profiled (``kinds``:
    which of the two runs)."""
    tracking_uri = ensure_champion(ctx)
    cores = int(MEASURED_MASTER.removeprefix("local[").removesuffix("]"))
    result: dict[str, Any] = {"master": MEASURED_MASTER}
    for kind in kinds:
        lakehouse, output = ctx.work / f"profile-{kind}", ctx.work / f"profile-{kind}.jsonl"
        print(f"    {kind} stream, {len(ctx.files)} files, master {MEASURED_MASTER}, profiled", flush=True)
        loadavg = load_average()
        seconds = (_cold(ctx, lakehouse, output, tracking_uri) if kind == "cold"
                   else _warm(ctx, lakehouse, output))
        batches = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
        shutil.rmtree(lakehouse, ignore_errors=True)
        if not batches:
            raise RuntimeError(f"the profiled {kind} run wrote no batch profile to {output}")
        largest = max(batches, key=lambda b: b.get("images") or 0)
        result[kind] = {**summarise(largest, cores), "batches": len(batches), "wall_seconds": round(seconds, 2),
                        "loadavg": {"start": loadavg, "end": load_average()}}
        if kind == "warm":
            result[kind]["driver_serial"] = driver_serial(batches)
    return result


def _cold(ctx: BenchContext, lakehouse: Path, output: Path, tracking_uri: str) -> float:
    """``xray stream --once`` with the whole backlog waiting (cold JVM and workers)."""
    stage(ctx.files, lakehouse / "landing")
    run = run_xray(["stream", "--once"], lakehouse, MEASURED_MASTER, ctx.work / "logs" / "profile-cold.log",
                   tracking_uri, timeout=max(900.0, len(ctx.files) * 10.0), extra_env={PROFILE_ENV: str(output)})
    run.check(f"xray stream --once ({MEASURED_MASTER}, profiled)")
    return run.seconds


def _warm(ctx: BenchContext, lakehouse: Path, output: Path) -> float:
    """A running ``xray stream``, warmed up, receiving the backlog in two renames, a fifth of the files
    then the rest (two warm batches of different sizes: the driver's cost per image and per batch apart,
    `driver_serial`); the seconds of the second."""
    stream = RunningStream(ctx, lakehouse, MEASURED_MASTER, ctx.work / "logs" / "profile-warm.log",
                           extra_env={PROFILE_ENV: str(output)})
    try:
        stream.warm_up(warmup_images(ctx))
        seconds = 0.0
        part_one = max(len(ctx.files) // 5, 1)
        for part, files in enumerate((ctx.files[:part_one], ctx.files[part_one:])):
            time.sleep(1)
            hidden = stream.landing / f".backlog-{uuid.uuid4().hex}"
            stage(files, hidden)
            clock = time.perf_counter()
            os.rename(hidden, stream.landing / f"backlog-{part}")
            if not stream.watcher.wait_for({f.sha256 for f in files}, max(900.0, len(files) * 10.0), stream.alive):
                raise RuntimeError(f"the profiled warm stream did not bring every file to gold; see {stream.log}")
            seconds = time.perf_counter() - clock
        return seconds
    finally:
        stream.stop()
