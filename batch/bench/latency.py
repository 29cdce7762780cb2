"""The ``latency`` part, which also measures memory and the idle cost, all in one running ``xray stream``:
drop-to-gold latency of files dropped one at a time, then the idle CPU, then memory after N and 2N files."""

from __future__ import annotations

import math
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch.bench.context import BenchContext, BenchFile, drop
from batch.bench.host import TreeSampler, jvm_heap_used_mb, load_average, measure_tree_cpu, process_kinds
from batch.bench.report import rounded, say
from batch.bench.settings import (
    IDLE_SECONDS,
    LATENCY_DROPS,
    LATENCY_INTERVAL_SECONDS,
    LATENCY_TRIGGER_SECONDS,
    LATENCY_WARMUP_FILES,
    MEASURED_MASTER,
    MEMORY_BURST,
    MEMORY_ROUND_MAX,
)
from batch.bench.streams import GoldWatcher, RunningStream, warmup_images
from batch.bench.tables import batch_durations, wait_for_events


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _plan(ctx: BenchContext) -> tuple[list[BenchFile], list[list[BenchFile]], int]:
    """The distinct images dropped one at a time, the two memory rounds, and how many files the stream has
    seen before the first round (warm-up and drops)."""
    unique: dict[str, BenchFile] = {}
    for item in ctx.files:
        unique.setdefault(item.sha256, item)
    candidates = list(unique.values())
    drops = min(LATENCY_DROPS, len(candidates))
    if drops < 4:
        raise RuntimeError("latency needs at least 4 distinct images")
    measured = candidates[:drops]
    # Memory after N and after 2N files: the rest of the distinct images in two rounds, the second as large
    # as everything before it (at most MEMORY_ROUND_MAX files in the first round).
    rest = candidates[drops:]
    first_round = max(0, min(MEMORY_ROUND_MAX, (len(rest) - LATENCY_WARMUP_FILES - drops) // 2))
    seen_so_far = LATENCY_WARMUP_FILES + drops
    rounds = [rest[:first_round], rest[first_round:][: seen_so_far + first_round]]
    return measured, rounds, seen_so_far


def _measure_drops(stream: RunningStream, measured: list[BenchFile]) -> dict[str, Any]:
    """Drop files one at a time every LATENCY_INTERVAL_SECONDS; seconds from each drop to gold."""
    watcher = stream.watcher
    dropped: dict[str, float] = {}
    begin = time.monotonic()
    for index, item in enumerate(measured):
        dropped[item.sha256] = drop(item, stream.landing)
        time.sleep(max(0.0, begin + (index + 1) * LATENCY_INTERVAL_SECONDS - time.monotonic()))
    result: dict[str, Any] = {"complete": watcher.wait_for(dropped, 180, stream.alive)}
    wait_for_events(stream.lakehouse, "gold", max(dropped.values()))
    latencies = [watcher.visible[i] - t for i, t in dropped.items() if i in watcher.visible]
    to_gold_batch = [watcher.predicted[i] - t for i, t in dropped.items() if i in watcher.predicted]
    result.update({
        "visible": len(latencies),
        "p50_seconds": rounded(_percentile(latencies, 0.5)),
        "p95_seconds": rounded(_percentile(latencies, 0.95)),
        "max_seconds": rounded(max(latencies) if latencies else None),
        "mean_seconds": rounded(statistics.mean(latencies) if latencies else None),
        "drop_to_gold_batch_start_p50_seconds": rounded(_percentile(to_gold_batch, 0.5)),
        "latencies_seconds": [round(v, 2) for v in latencies],
        "layers": batch_durations(stream.lakehouse, since=begin_wall(dropped)),
        "processes": process_kinds(stream.process.pid),
    })
    return result


def _measure_idle(stream: RunningStream) -> dict[str, float]:
    """Nothing arrives; the whole tree's CPU over IDLE_SECONDS, in % of one core (before the memory phase,
    whose forced full GCs would leave the JVM busy for a while)."""
    stream.watcher.pause()
    stream.sampler.pause()
    time.sleep(3)
    idle = measure_tree_cpu(stream.process.pid, IDLE_SECONDS)
    stream.sampler.pause(False)
    stream.watcher.pause(False)
    return idle


def bench_latency(ctx: BenchContext) -> dict[str, Any]:
    """Drop-to-gold latency, then memory after N and 2N files, then the idle cost, in one running stream."""
    measured, rounds, seen_so_far = _plan(ctx)
    drops = len(measured)
    loadavg = load_average()
    say(f"    xray stream (running, trigger {LATENCY_TRIGGER_SECONDS} s): {drops} drops every "
        f"{LATENCY_INTERVAL_SECONDS} s after a warm-up, {len(rounds[0] + rounds[1])} more for memory "
        f"(N -> 2N files), {IDLE_SECONDS:.0f} s idle")
    stream = RunningStream(ctx, ctx.work / "latency", MEASURED_MASTER, ctx.work / "logs" / "latency.log",
                           ["--trigger-seconds", str(LATENCY_TRIGGER_SECONDS)])
    result: dict[str, Any] = {"trigger_seconds": LATENCY_TRIGGER_SECONDS, "drops": drops,
                              "interval_seconds": LATENCY_INTERVAL_SECONDS}
    try:
        result["ready_seconds"] = round(stream.warm_up(warmup_images(ctx)), 1)
        time.sleep(2)
        result.update(_measure_drops(stream, measured))
        result["idle"] = _measure_idle(stream)
        result["memory_flat"] = _memory_phase(stream.process.pid, stream.sampler, stream.watcher,
                                              stream.landing, seen_so_far, rounds, stream.alive)
    finally:
        stream.stop()
        result["memory"] = stream.memory
        if stream.exited_early is not None:
            result["exited_early"] = stream.exited_early
        result["loadavg"] = {"start": loadavg, "end": load_average()}
    shutil.rmtree(stream.lakehouse, ignore_errors=True)
    return result

def begin_wall(dropped: dict[str, float]) -> float | None:
    return min(dropped.values()) if dropped else None


def _memory_phase(root: int, sampler: TreeSampler, watcher: GoldWatcher, landing: Path, files_so_far: int,
                  rounds: list[list[BenchFile]], alive: Callable[[], bool]) -> dict[str, Any]:
    """RSS and live Java heap (after a full GC) after N files, then after as many again (2N).

    Files arrive in bursts of MEMORY_BURST every second, so the stream runs many ordinary micro-batches."""

    def feed(files: list[BenchFile]) -> bool:
        for start in range(0, len(files), MEMORY_BURST):
            for item in files[start: start + MEMORY_BURST]:
                drop(item, landing)
            time.sleep(1.0)
        return watcher.wait_for([f.sha256 for f in files], 300, alive)

    complete = feed(rounds[0])
    time.sleep(1)
    files_n = files_so_far + len(rounds[0])
    first = {"files": files_n, **sampler.snapshot(), "jvm_live_heap": jvm_heap_used_mb(root, True)}
    if len(rounds[1]) < max(4, files_n // 2):
        return {"after_n": first, "note": "not enough distinct images for a second round"}
    complete = feed(rounds[1]) and complete
    time.sleep(1)
    second = {"files": files_n + len(rounds[1]), **sampler.snapshot(),
              "jvm_live_heap": jvm_heap_used_mb(root, True)}

    def growth(key: str) -> float | None:
        before, after = first.get(key), second.get(key)
        return round(after / before - 1, 3) if before and after is not None else None

    return {
        "after_n": first,
        "after_2n": second,
        "complete": complete,
        "driver_jvm_rss_growth": growth("jvm"),
        "driver_python_rss_growth": growth("driver_python"),
        "jvm_live_heap_growth": growth("jvm_live_heap"),
        "tree_pss_growth": growth("tree_pss"),
    }
