"""The ``sink`` part: the ``deltars`` streaming sink against ``write_deltalake`` from the driver, in a child
process with its own Spark session (``sink_child``)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch.bench.context import BenchContext
from batch.bench.host import load_average
from batch.bench.processes import run_child
from batch.bench.report import say
from batch.bench.settings import MEASURED_MASTER, SINK_ROW_BYTES, SINK_ROWS


def _payload_table(rows: int, row_bytes: int) -> Any:
    import numpy as np
    import pyarrow as pa

    data = np.random.default_rng(0).bytes(rows * row_bytes)  # incompressible, like JPEG bytes
    offsets = np.arange(0, (rows + 1) * row_bytes, row_bytes, dtype=np.int32)
    payload = pa.Array.from_buffers(pa.binary(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pa.table({"id": pa.array(range(rows), pa.int64()), "payload": payload})


def _timed_query(start: Callable[[], Any]) -> float:
    from streaming.lakehouse.engine import await_termination

    clock = time.perf_counter()
    query = start()
    await_termination(query)
    return time.perf_counter() - clock


def sink_child(work: str, rows: int, row_bytes: int, master: str) -> dict[str, Any]:
    from deltalake import DeltaTable, write_deltalake

    from streaming.core.config import load_config
    from streaming.lakehouse.engine import Lakehouse
    from streaming.lakehouse.session import get_spark

    root = Path(work)
    config = load_config(environ={}, lakehouse=str(root), spark_master=master, shuffle_partitions=2)
    spark = get_spark(config)
    try:
        lakehouse = Lakehouse(spark, config)
        data = _payload_table(rows, row_bytes)
        megabytes = rows * row_bytes / 1e6
        clock = time.perf_counter()
        write_deltalake(lakehouse.path("bench_sink_source"), data, mode="append")
        driver_seconds = time.perf_counter() - clock
        write_deltalake(lakehouse.path("bench_warm_source"), data.slice(0, 64), mode="append")

        def copy(source: str, target: str) -> float:
            frame = lakehouse.read_stream(source)
            return _timed_query(lambda: lakehouse.write_stream(frame, target, f"copy_{target}", availableNow=True))

        def source_only(source: str) -> float:
            frame = lakehouse.read_stream(source)
            checkpoint = str(root / "checkpoints" / f"noop_{source}")
            return _timed_query(lambda: frame.writeStream.format("noop").option("checkpointLocation", checkpoint)
                                .trigger(availableNow=True).start())

        # JVM, Python workers and data source planning warm; 64 rows: the fixed cost of a query.
        warm_copy, warm_source = copy("bench_warm_source", "bench_warm_target"), source_only("bench_warm_source")
        source_seconds = source_only("bench_sink_source")
        stream_seconds = copy("bench_sink_source", "bench_sink_target")
        target = DeltaTable(lakehouse.path("bench_sink_target"))
        copied = target.to_pyarrow_table(columns=["id"]).num_rows
        sink_seconds = stream_seconds - source_seconds
        return {
            "format": lakehouse.format,
            "rows": rows,
            "row_bytes": row_bytes,
            "megabytes": round(megabytes, 1),
            "copied_rows": copied,
            "target_files": len(target.file_uris()),
            "write_deltalake_seconds": round(driver_seconds, 2),
            "write_deltalake_rows_per_second": round(rows / driver_seconds, 1),
            "write_deltalake_mb_per_second": round(megabytes / driver_seconds, 1),
            "stream_seconds": round(stream_seconds, 2),
            "stream_rows_per_second": round(rows / stream_seconds, 1),
            "stream_mb_per_second": round(megabytes / stream_seconds, 1),
            "source_only_seconds": round(source_seconds, 2),
            "fixed_cost_64_rows_seconds": {"copy": round(warm_copy, 2), "source_only": round(warm_source, 2)},
            "sink_only_seconds": round(sink_seconds, 2),
            "sink_only_mb_per_second": round(megabytes / sink_seconds, 1) if sink_seconds > 0 else None,
            "ratio_stream_to_write_deltalake": round(driver_seconds / stream_seconds, 3),
            "ratio_sink_only_to_write_deltalake": round(driver_seconds / sink_seconds, 3)
            if sink_seconds > 0 else None,
        }
    finally:
        spark.stop()


def bench_sink(ctx: BenchContext) -> dict[str, Any]:
    folder = ctx.work / "sink"
    say(f"    {SINK_ROWS} rows of {SINK_ROW_BYTES // 1024} KB: write_deltalake vs deltars streaming sink")
    loadavg = load_average()
    result = run_child("sink_child", {"work": str(folder), "rows": SINK_ROWS, "row_bytes": SINK_ROW_BYTES,
                                      "master": MEASURED_MASTER}, ctx.work / "logs" / "sink.log", MEASURED_MASTER)
    result["loadavg"] = {"start": loadavg, "end": load_average()}
    shutil.rmtree(folder, ignore_errors=True)
    return result
