"""The ``checkpoint`` part: restart cost of the bronze landing source as its landing log grows, on crafted
checkpoints, each restart in a fresh child process (``restart_child``)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from batch.bench.context import BenchContext, BenchFile
from batch.bench.host import load_average
from batch.bench.processes import run_child
from batch.bench.report import say
from batch.bench.settings import CHECKPOINT_NEW_FILES, CHECKPOINT_ROUNDS, MEASURED_MASTER


def _write_log_file(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.write("v1")
        for line in lines:
            handle.write("\n")
            handle.write(line)


def craft_checkpoint(lakehouse: Path, offsets_metadata: str, entries: list[tuple[str, int]]) -> None:
    """A bronze checkpoint whose landing log already holds ``entries`` (path, mtime ms), all admitted and
    committed in batch 0 (an empty batch as far as the tables know: its events transaction marks it done)."""
    from streaming.lakehouse.catalog import PIPELINE_EVENTS
    from streaming.lakehouse.deltars import DeltaRsCommitMessage, commit_files

    checkpoint = lakehouse / "checkpoints" / "bronze"
    log = checkpoint / "landing"
    (log / "files").mkdir(parents=True, exist_ok=True)
    with open(log / "files" / f"{0:012d}.jsonl", "w") as handle:
        for seq, (path, stamp) in enumerate(entries):
            handle.write(json.dumps({"path": path, "mtime_ms": stamp, "size": 0, "status": "file",
                                     "target": None, "seq": seq}) + "\n")
    (log / "plan.jsonl").write_text(json.dumps({"start": 0, "end": len(entries)}) + "\n")
    metadata = json.loads(offsets_metadata)
    metadata["batchTimestampMs"] = int(time.time() * 1000) - 1000
    _write_log_file(checkpoint / "offsets" / "0", [json.dumps(metadata, separators=(",", ":")),
                                                   json.dumps({"seq": len(entries)})])
    _write_log_file(checkpoint / "commits" / "0", ['{"nextBatchWatermarkMs":0}'])
    (checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}))
    commit_files(str(lakehouse / "tables" / PIPELINE_EVENTS.name), PIPELINE_EVENTS.schema, [DeltaRsCommitMessage()],
                 "append", "bronze:events", 0)


def _make_seen_files(landing: Path, count: int, newest_ms: int, age_ms: int, create: bool) -> list[tuple[str, int]]:
    """``count`` landing paths (created as empty files when ``create``) with mtimes spread over ``age_ms``
    before ``newest_ms``; (path, mtime ms) each."""
    entries = []
    for index in range(count):
        path = landing / "seen" / f"d{index // 1000:04d}" / f"IM-{index:06d}-0001.jpeg"
        stamp = newest_ms - (age_ms * (count - index)) // max(1, count)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb"):
                pass
            os.utime(path, ns=(stamp * 1_000_000, stamp * 1_000_000))
            stamp = os.stat(path).st_mtime_ns // 1_000_000
        entries.append((str(path), stamp))
    return entries


def restart_child(lakehouse: str, master: str) -> dict[str, Any]:
    """One bronze restart (``xray stream --once --layer bronze``) in this fresh process, timed in parts."""
    from streaming.core.config import load_config
    from streaming.lakehouse.engine import Lakehouse
    from streaming.lakehouse.session import get_spark
    from streaming.pipeline.service import run_stream

    clock = time.perf_counter()
    config = load_config(environ={}, lakehouse=lakehouse, spark_master=master, shuffle_partitions=2)
    spark = get_spark(config)
    session_seconds = time.perf_counter() - clock
    try:
        clock = time.perf_counter()
        service = run_stream(spark, config, layers=("bronze",), once=True)
        seconds = time.perf_counter() - clock
        query = service.queries.get("bronze")
        durations: dict[str, float] = {}
        for progress in (query.recentProgress if query is not None else []):
            for key, value in (progress.get("durationMs") or {}).items():
                durations[key] = durations.get(key, 0) + value / 1000
        return {
            "session_seconds": round(session_seconds, 2),
            "query_seconds": round(seconds, 2),
            "batch_body_seconds": round(durations.get("addBatch", 0.0), 2),
            "plan_offsets_seconds": round(durations.get("latestOffset", 0.0), 2),
            # Query start: loading the landing log, the availableNow scan of landing, ...
            "outside_triggers_seconds": round(seconds - durations.get("triggerExecution", 0.0), 2),
            "ingested": Lakehouse(spark, config).row_count("bronze_xray_images"),
        }
    finally:
        spark.stop()


CHECKPOINT_SCENARIOS = (
    # name, seen files, options
    ("fresh", 0, {}),
    ("seen_1k", 1_000, {}),
    ("seen_100k", 100_000, {}),
    ("seen_100k_files_still_in_landing", 100_000, {"in_landing": True}),
)


def _checkpoint_restart(ctx: BenchContext, name: str, seen: int, options: dict[str, Any], template: str | None,
                        news: list[BenchFile], round_: int) -> tuple[dict[str, Any], str | None]:
    """Craft one checkpoint scenario, restart bronze on it in a fresh process; (figures, offsets template)."""
    day = 86_400_000
    lakehouse = ctx.work / f"checkpoint-{name}-{round_}"
    landing = lakehouse / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    if seen:
        if template is None:
            raise RuntimeError("the fresh scenario must run first (it gives the offsets format)")
        entries = _make_seen_files(landing, seen, int(time.time() * 1000) - 60_000,
                                   options.get("ages_days", 1) * day, options.get("in_landing", False))
        craft_checkpoint(lakehouse, template, entries)
    crafting = time.perf_counter() - clock
    for index, item in enumerate(news):
        target = landing / "train" / "NORMAL" / f"IM-9{index:03d}-0001.jpeg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, target)
    clock = time.perf_counter()
    figures = run_child("restart_child", {"lakehouse": str(lakehouse), "master": MEASURED_MASTER},
                        ctx.work / "logs" / f"checkpoint-{name}-{round_}.log", MEASURED_MASTER)
    wall = time.perf_counter() - clock
    logs = (lakehouse / "checkpoints" / "bronze" / "landing" / "files").glob("*.jsonl")
    figures.update({
        "process_seconds": round(wall, 2),
        "landing_log_mb": round(sum(p.stat().st_size for p in logs) / 1e6, 2),
        "crafting_seconds": round(crafting, 1),
        "loadavg": load_average(),
    })
    if template is None:
        template = (lakehouse / "checkpoints" / "bronze" / "offsets" / "0").read_text().splitlines()[1]
    shutil.rmtree(lakehouse, ignore_errors=True)
    return figures, template


def bench_checkpoint(ctx: BenchContext) -> dict[str, Any]:
    """Restart cost of the bronze file source with a growing seen-files log; one fresh process per restart
    (a restart is a new JVM, so the log is parsed by cold code). Scenarios run in interleaved rounds and
    the fastest round is reported (timings on a shared machine are noisy)."""
    news = ctx.files[:CHECKPOINT_NEW_FILES]
    say(f"    bronze restarts (fresh JVM each) with 0 to 100k seen files, +{len(news)} new files each, "
         f"{CHECKPOINT_ROUNDS} rounds")
    loadavg = load_average()
    result: dict[str, Any] = {"new_files_per_restart": len(news), "rounds": CHECKPOINT_ROUNDS, "scenarios": {}}
    template: str | None = None
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(CHECKPOINT_ROUNDS):
        for name, seen, options in CHECKPOINT_SCENARIOS:
            figures, template = _checkpoint_restart(ctx, name, seen, options, template, news, round_)
            runs.setdefault(name, []).append(figures)
    for name, seen, options in CHECKPOINT_SCENARIOS:
        best = min(runs[name], key=lambda r: r["process_seconds"])
        result["scenarios"][name] = {
            "seen_files": seen,
            "seen_files_in_landing": options.get("in_landing", False),
            **best,
            "process_seconds_all_rounds": [r["process_seconds"] for r in runs[name]],
            "query_seconds_all_rounds": [r["query_seconds"] for r in runs[name]],
        }
    result["landing_log_load_seconds_100k"] = _time_landing_log_load(ctx.work / "parse", 100_000)
    result["loadavg"] = {"start": loadavg, "end": load_average()}
    return result


def _time_landing_log_load(folder: Path, size: int) -> float:
    """What loading a landing log of ``size`` entries costs the source at a restart (in Python)."""
    from streaming.landing.log import LandingLog

    craft = folder / "files"
    craft.mkdir(parents=True, exist_ok=True)
    with open(craft / f"{0:012d}.jsonl", "w") as handle:
        for seq in range(size):
            handle.write(json.dumps({"path": f"/landing/IM-{seq:06d}-0001.jpeg", "mtime_ms": seq, "size": 1,
                                     "status": "file", "target": None, "seq": seq}) + "\n")
    clock = time.perf_counter()
    LandingLog(folder)
    seconds = time.perf_counter() - clock
    shutil.rmtree(folder, ignore_errors=True)
    return round(seconds, 3)
