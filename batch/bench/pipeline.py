"""The ``pipeline`` and ``scaling`` parts: landing to gold on all the files, cold (``xray stream --once``
with the backlog waiting) and warm (a running, warmed-up stream receiving the whole backlog at once)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from typing import Any

from batch.bench.champion import ensure_champion
from batch.bench.context import BenchContext, stage
from batch.bench.host import load_average
from batch.bench.processes import run_xray
from batch.bench.report import rounded, say
from batch.bench.settings import MARGINAL_SMALL_FILES, MEASURED_MASTER
from batch.bench.streams import RunningStream, warmup_images
from batch.bench.tables import batch_durations, events_summary, table_rows, wait_for_events


def _tag(master: str) -> str:
    return master.replace("[", "").replace("]", "").replace("*", "all")


def cold_run(ctx: BenchContext, master: str) -> dict[str, Any]:
    """Landing → gold for all files with a champion registered: one ``xray stream --once`` subprocess, as
    after a (re)start: cold JVM, cold Python workers, the whole backlog waiting."""
    key = f"cold {master}"
    if key in ctx.pipeline_runs:
        return ctx.pipeline_runs[key]
    tracking_uri = ensure_champion(ctx)
    name = f"cold-{_tag(master)}"
    lakehouse = ctx.work / name
    stage(ctx.files, lakehouse / "landing")
    say(f"    xray stream --once, {len(ctx.files)} files, master {master} (cold start)")
    loadavg = load_average()
    run = run_xray(["stream", "--once"], lakehouse, master, ctx.work / "logs" / f"{name}.log", tracking_uri,
                   timeout=max(900.0, len(ctx.files) * 10.0))
    run.check(f"xray stream --once ({master})")
    images = len(ctx.files)
    result: dict[str, Any] = {
        "master": master,
        "images": images,
        "wall_seconds": round(run.seconds, 2),
        "images_per_second": round(images / run.seconds, 2),
        **events_summary(lakehouse, run.started, run.started + run.seconds, images),
        "gold_rows": len(table_rows(lakehouse, "gold_pneumonia_predictions", ["image_id"])),
        "silver_rows": len(table_rows(lakehouse, "silver_xray_metadata", ["image_id"])),
        "quarantined": len(table_rows(lakehouse, "silver_quarantine", ["rule"])),
        "memory": run.memory,
        "loadavg": {"start": loadavg, "end": load_average()},
    }
    shutil.rmtree(lakehouse, ignore_errors=True)
    ctx.pipeline_runs[key] = result
    return result


def warm_run(ctx: BenchContext, master: str, count: int | None = None) -> dict[str, Any]:
    """Steady-state landing → gold: ``xray stream`` already running and warm (default trigger), then the
    whole backlog (or its first ``count`` files) appears at once (one rename of a hidden folder); seconds
    until every image is in gold."""
    files = ctx.files[:count] if count else ctx.files
    key = f"warm {master}" + (f" {len(files)}" if count else "")
    if key in ctx.pipeline_runs:
        return ctx.pipeline_runs[key]
    name = f"warm-{_tag(master)}" + (f"-{len(files)}" if count else "")
    lakehouse = ctx.work / name
    say(f"    xray stream (running, warm), {len(files)} files at once, master {master}")
    stream = RunningStream(ctx, lakehouse, master, ctx.work / "logs" / f"{name}.log")
    result: dict[str, Any] = {"master": master, "images": len(files)}
    try:
        result["ready_seconds"] = round(stream.warm_up(warmup_images(ctx)), 1)
        time.sleep(2)
        hidden = stream.landing / f".backlog-{uuid.uuid4().hex}"
        stage(files, hidden)
        loadavg = load_average()
        exposed = time.time()
        os.rename(hidden, stream.landing / "backlog")
        wanted = {f.sha256 for f in files}
        result["complete"] = stream.watcher.wait_for(wanted, max(900.0, len(files) * 10.0), stream.alive)
        seen = [stream.watcher.visible[i] for i in wanted if i in stream.watcher.visible]
        seconds = max(seen) - exposed if seen else None
        wait_for_events(lakehouse, "gold", exposed)
        result.update({
            "seconds": rounded(seconds),
            "images_per_second": rounded(len(files) / seconds if seconds else None),
            "first_in_gold_seconds": rounded(min(seen) - exposed if seen else None),
            "layers": batch_durations(lakehouse, since=exposed),
            "loadavg": {"start": loadavg, "end": load_average()},
        })
    finally:
        stream.stop()
        result["memory"] = stream.memory
        if stream.exited_early is not None:
            result["exited_early"] = stream.exited_early
    shutil.rmtree(lakehouse, ignore_errors=True)
    ctx.pipeline_runs[key] = result
    return result


def bench_pipeline(ctx: BenchContext) -> dict[str, Any]:
    result: dict[str, Any] = {"cold": cold_run(ctx, MEASURED_MASTER), "warm": warm_run(ctx, MEASURED_MASTER)}
    result["marginal"] = _marginal(ctx, result["warm"])
    baseline = ctx.results.get("baseline", {}).get("images_per_second")
    rate = result["marginal"].get("images_per_second")
    result["marginal_ratio_to_baseline"] = round(rate / baseline, 4) if rate and baseline else None
    if baseline:
        for kind in ("cold", "warm"):
            rate = result[kind].get("images_per_second")
            result[f"{kind}_ratio_to_baseline"] = round(rate / baseline, 4) if rate else None
        steady = result["cold"].get("steady_images_per_second")
        result["cold_steady_ratio_to_baseline"] = round(steady / baseline, 4) if steady else None
    return result


def _marginal(ctx: BenchContext, warm: dict[str, Any]) -> dict[str, Any]:
    """The issue's marginal rate: a second warm run on the first `MARGINAL_SMALL_FILES` files, and the
    rate of the extra files, (N - small) / (t_N - t_small): the per-run fixed costs (trigger wait, first
    batch, the watcher's poll) cancel out."""
    small = MARGINAL_SMALL_FILES
    if len(ctx.files) < 2 * small or not warm.get("seconds"):
        return {"note": f"needs at least {2 * small} files"}
    few = warm_run(ctx, MEASURED_MASTER, small)
    extra_seconds = warm["seconds"] - (few.get("seconds") or 0.0)
    return {"small_files": small, "small_seconds": few.get("seconds"), "files": len(ctx.files),
            "seconds": warm["seconds"], "loadavg": few.get("loadavg"),
            "images_per_second": rounded((len(ctx.files) - small) / extra_seconds if extra_seconds > 0 else None)}


def bench_scaling(ctx: BenchContext) -> dict[str, Any]:
    one = warm_run(ctx, "local[1]")
    two = warm_run(ctx, "local[2]")
    rate_one, rate_two = one.get("images_per_second"), two.get("images_per_second")
    return {
        "local[1]": {k: one.get(k) for k in ("seconds", "images_per_second", "layers", "loadavg")},
        "local[2]": {k: two.get(k) for k in ("seconds", "images_per_second", "layers", "loadavg")},
        "ratio": round(rate_two / rate_one, 2) if rate_one and rate_two else None,
    }
