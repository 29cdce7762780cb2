"""The ``engines`` part: the two Delta engines (delta-rs behind ``deltars``, Delta Lake's own ``delta``) on
the same files in the same run: cold start-up and throughput (``xray stream --once``), the marginal rate of
a warm running stream, drop-to-gold latency p50/p95, and the driver's commit time per table.

Each engine runs in its own subprocesses (``XRAY_DELTA_ENGINE``), one engine after the other. The commit
times are micro-measures in a child process of their own (`commit_child`): a few rows appended with an
application transaction, as a micro-batch's results are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

from batch.bench.champion import ensure_champion
from batch.bench.context import BenchContext
from batch.bench.latency import _measure_drops, _plan
from batch.bench.pipeline import cold_run, warm_run
from batch.bench.processes import run_child
from batch.bench.report import rounded, say
from batch.bench.settings import LATENCY_TRIGGER_SECONDS, MEASURED_MASTER
from batch.bench.streams import RunningStream, warmup_images

ENGINES = ("delta-rs", "delta-spark")
ENGINE_LATENCY_DROPS = 10
COMMIT_REPEATS = 5
COMMIT_TABLES = ("bronze_kaggle_dataset_info", "silver_xray_metadata", "silver_image_features",
                 "silver_quarantine", "gold_pneumonia_predictions", "pipeline_events")


@contextlib.contextmanager
def _engine(engine: str) -> Iterator[None]:
    """Children started inside use ``engine`` (`processes.child_env` keeps XRAY_DELTA_ENGINE)."""
    previous = os.environ.get("XRAY_DELTA_ENGINE")
    os.environ["XRAY_DELTA_ENGINE"] = engine
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("XRAY_DELTA_ENGINE", None)
        else:
            os.environ["XRAY_DELTA_ENGINE"] = previous


def _latency(ctx: BenchContext, name: str) -> dict[str, Any]:
    measured = _plan(ctx)[0][:ENGINE_LATENCY_DROPS]
    stream = RunningStream(ctx, ctx.work / name, MEASURED_MASTER, ctx.work / "logs" / f"{name}.log",
                           ["--trigger-seconds", str(LATENCY_TRIGGER_SECONDS)])
    try:
        ready = stream.warm_up(warmup_images(ctx))
        time.sleep(2)
        drops = _measure_drops(stream, measured)
    finally:
        stream.stop()
    return {"ready_seconds": round(ready, 1), **{k: drops.get(k) for k in ("visible", "p50_seconds", "p95_seconds")}}


def _one_engine(ctx: BenchContext, engine: str) -> dict[str, Any]:
    own = dataclasses.replace(ctx, pipeline_runs={}, work=ctx.work / engine)
    say(f"    engine {engine}")
    cold = cold_run(own, MEASURED_MASTER)
    small = max(1, len(ctx.files) // 3)
    few, every = warm_run(own, MEASURED_MASTER, small), warm_run(own, MEASURED_MASTER)
    extra = (every.get("seconds") or 0.0) - (few.get("seconds") or 0.0)
    commits = run_child("commit_child", {"engine": engine, "root": str(own.work / "commits")},
                        own.work / "logs" / "commits.log", MEASURED_MASTER)
    return {
        "cold_wall_seconds": cold.get("wall_seconds"),
        "cold_startup_seconds": cold.get("startup_seconds"),
        "cold_images_per_second": cold.get("images_per_second"),
        "gold_rows": cold.get("gold_rows"),
        "warm_images_per_second": every.get("images_per_second"),
        "marginal_images_per_second": rounded((len(ctx.files) - small) / extra if extra > 0 else None),
        "latency": _latency(own, "latency"),
        "commit_ms": commits,
    }


def bench_engines(ctx: BenchContext) -> dict[str, Any]:
    result: dict[str, Any] = {"images": len(ctx.files)}
    ensure_champion(ctx)  # one model for both engines' runs (trained with the default engine, not timed)
    for engine in ENGINES:
        with _engine(engine):
            result[engine] = _one_engine(ctx, engine)
    return result


def commit_child(engine: str, root: str) -> dict[str, Any]:
    """Median milliseconds of one idempotent append of 8 rows per table (the driver's commit of a
    micro-batch's results), after one unmeasured append that warms the path."""
    from streaming.core.config import load_config
    from streaming.lakehouse.catalog import TABLES_BY_NAME
    from streaming.lakehouse.engine import Lakehouse
    from streaming.lakehouse.session import get_spark

    config = load_config(lakehouse=root, delta_engine=engine)
    house = Lakehouse(get_spark(config), config)
    house.ensure_tables(tuple(TABLES_BY_NAME[name] for name in COMMIT_TABLES))
    timings: dict[str, Any] = {"format": house.format}
    for table in COMMIT_TABLES:
        seconds = []
        for version in range(COMMIT_REPEATS + 1):
            clock = time.perf_counter()
            house.append_rows(table, [{} for _ in range(8)], txn=("bench", version))
            seconds.append(time.perf_counter() - clock)
        timings[table] = round(statistics.median(seconds[1:]) * 1000, 1)
    return timings
