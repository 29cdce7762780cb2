"""Throughput and latency of the recent bronze micro-batches, for the live page of ``xray serve``.

Per batch: files in, its wall time and images per second (``pipeline_events``), and how long its files
waited from their modification time (when they were dropped or written) to the batch's commit (bronze's
``modification_time`` of the batch's rows). In the default one-pass plan bronze's ``pipeline_events`` row is
committed last, after silver and gold, so that wait is the drop-to-gold latency of the batch's files.
delta-rs reads of a few columns, no Spark; nothing holds a path.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Any

from streaming.lakehouse.catalog import BRONZE_IMAGES, PIPELINE_EVENTS
from streaming.lakehouse.engine import Lakehouse
from streaming.ops.text import iso_utc

__all__ = ["recent_throughput"]

RECENT_BATCHES = 20
BRONZE_QUERY = "bronze"


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def recent_throughput(lakehouse: Lakehouse, limit: int = RECENT_BATCHES) -> dict[str, Any]:
    """The newest ``limit`` bronze batches that read files, oldest first (a chart's order)."""
    if not lakehouse.exists(PIPELINE_EVENTS.name):
        return {"available": False, "rows": []}
    import pyarrow.compute as pc

    events = lakehouse.delta_table(PIPELINE_EVENTS.name).to_pyarrow_table(
        columns=["event_time", "query", "batch_id", "input_rows", "duration_ms"])
    # Filtered after reading: a string column without statistics loses rows in a filtered read.
    query = pc.cast(events.column("query"), "string")
    events = events.filter(pc.and_(pc.equal(query, BRONZE_QUERY), pc.greater(events.column("input_rows"), 0)))
    if events.num_rows == 0:
        return {"available": True, "rows": []}
    newest = events.sort_by([("event_time", "descending")]).slice(0, limit).to_pylist()[::-1]
    waits = _waits(lakehouse, {row["batch_id"]: _utc(row["event_time"]) for row in newest})
    rows = []
    for row in newest:
        seconds = (row["duration_ms"] or 0) / 1000
        batch_waits = waits.get(row["batch_id"], [])
        rows.append({
            "event_time": iso_utc(row["event_time"]), "batch_id": row["batch_id"], "files": row["input_rows"],
            "seconds": round(seconds, 3),
            "images_per_second": round(row["input_rows"] / seconds, 2) if seconds > 0 else None,
            "latency_median_seconds": round(statistics.median(batch_waits), 1) if batch_waits else None,
            "latency_max_seconds": round(max(batch_waits), 1) if batch_waits else None,
        })
    return {"available": True, "rows": rows}


def _waits(lakehouse: Lakehouse, committed: dict[int, dt.datetime]) -> dict[int, list[float]]:
    """Per batch: seconds from each of its files' modification time to the batch's commit."""
    if not committed or not lakehouse.exists(BRONZE_IMAGES.name):
        return {}
    rows = lakehouse.delta_table(BRONZE_IMAGES.name).to_pyarrow_table(
        columns=["batch_id", "modification_time"], filters=[("batch_id", "in", sorted(committed))])
    waits: dict[int, list[float]] = {}
    for batch_id, modified in zip(rows.column("batch_id").to_pylist(), rows.column("modification_time").to_pylist(),
                                  strict=True):
        if batch_id in committed and modified is not None:
            waits.setdefault(batch_id, []).append(max(0.0, (committed[batch_id] - _utc(modified)).total_seconds()))
    return waits
