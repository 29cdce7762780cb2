"""The ``maintenance`` part: a lakehouse fed by many tiny micro-batches (one small image each, the worst
case for small files and log growth), then one `xray maintain` pass at retention 0: data files, bytes and
Delta log entries before and after, per table and in total, and the time the pass took."""

from __future__ import annotations

import time
from typing import Any

from batch.bench.context import BenchContext
from batch.bench.processes import run_xray
from batch.bench.report import say
from batch.bench.settings import MAINTENANCE_BATCHES, MEASURED_MASTER


def bench_maintenance(ctx: BenchContext) -> dict[str, Any]:
    from streaming.core.config import load_config
    from streaming.imaging.synthetic import write_synthetic_dataset
    from streaming.lakehouse.maintenance import maintain_tables
    from streaming.ops.maintain import checkpoint_sizes, render_report

    lakehouse = ctx.work / "maintenance"
    # 256x256 synthetic JPEGs: the figures are about file counts, not image work.
    write_synthetic_dataset(lakehouse / "landing", per_class=MAINTENANCE_BATCHES // 2, splits=("train",))
    say(f"    streaming {MAINTENANCE_BATCHES} images, one per micro-batch")
    run = run_xray(["stream", "--once", "--max-files-per-trigger", "1"], lakehouse, MEASURED_MASTER,
                   ctx.work / "logs" / "maintenance-stream.log")
    run.check("xray stream --once (maintenance part)")
    config = load_config(environ={}, lakehouse=str(lakehouse))
    clock = time.perf_counter()
    report = maintain_tables(config, retention_hours=0)
    seconds = time.perf_counter() - clock
    checkpoints = checkpoint_sizes(config)
    say("\n".join(f"    {line}" for line in render_report(report, checkpoints).splitlines()))
    second = maintain_tables(config, retention_hours=0)  # nothing left to do: the cost of a routine pass
    tables = {t.table: {"data_files_before": t.files_before, "data_files_after": t.files_after,
                        "data_mb_before": round(t.bytes_before / 1e6, 2), "data_mb_after": round(t.bytes_after / 1e6, 2),
                        "log_files_before": t.log_files_before, "log_files_after": t.log_files_after,
                        "compacted": t.compacted, "vacuumed": t.vacuumed, "seconds": round(t.seconds, 2)}
              for t in report.tables}
    return {
        "micro_batches": MAINTENANCE_BATCHES,
        "stream_seconds": round(run.seconds, 1),
        "tables": tables,
        "data_files_before": report.files_before,
        "data_files_after": report.files_after,
        "data_mb_before": round(sum(t.bytes_before for t in report.tables) / 1e6, 2),
        "data_mb_after": round(sum(t.bytes_after for t in report.tables) / 1e6, 2),
        "log_files_before": sum(t.log_files_before for t in report.tables),
        "log_files_after": sum(t.log_files_after for t in report.tables),
        "mb_freed": round(report.bytes_freed / 1e6, 2),
        "maintain_seconds": round(seconds, 2),
        "second_pass_seconds": round(second.seconds, 2),
        "checkpoints": {query: {"files": files, "bytes": size} for query, files, size in checkpoints},
        "errors": [f"{t.table}: {t.error}" for t in report.errors],
    }
