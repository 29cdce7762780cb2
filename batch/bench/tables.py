"""The lakehouse's tables read with delta-rs (no Spark in the bench process): rows, and where time goes from
``pipeline_events``."""

from __future__ import annotations

import datetime as dt
import math
import statistics
import time
from pathlib import Path
from typing import Any


def table_rows(lakehouse: Path, table: str, columns: list[str] | None = None) -> list[dict]:
    from deltalake import DeltaTable

    path = lakehouse / "tables" / table
    if not DeltaTable.is_deltatable(str(path)):
        return []
    return DeltaTable(str(path)).to_pyarrow_table(columns=columns).to_pylist()


def epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    return float(value)


def events_summary(lakehouse: Path, started: float, finished: float, images: int) -> dict[str, Any]:
    """Start-up overhead, steady-state throughput and per-layer seconds from ``pipeline_events``."""
    events = table_rows(lakehouse, "pipeline_events",
                         ["query", "batch_id", "event_time", "duration_ms", "input_rows", "output_rows"])
    layers: dict[str, dict[str, Any]] = {}
    for event in events:
        layer = layers.setdefault(event["query"], {"batches": 0, "seconds": 0.0, "input_rows": 0,
                                                   "first_start": math.inf, "last_end": 0.0})
        end = epoch(event["event_time"])
        begin = end - (event["duration_ms"] or 0) / 1000
        layer["batches"] += 1
        layer["seconds"] += (event["duration_ms"] or 0) / 1000
        layer["input_rows"] += event["input_rows"] or 0
        layer["first_start"] = min(layer["first_start"], begin)
        layer["last_end"] = max(layer["last_end"], end)
    summary: dict[str, Any] = {"layers": {}}
    for name, layer in layers.items():
        summary["layers"][name] = {
            "batches": layer["batches"],
            "rows": layer["input_rows"],
            "batch_seconds": round(layer["seconds"], 2),
            "images_per_second": round(layer["input_rows"] / layer["seconds"], 1) if layer["seconds"] else None,
        }
    if "bronze" in layers:
        first = layers["bronze"]["first_start"]
        last = max(layer["last_end"] for layer in layers.values())
        summary["startup_seconds"] = round(first - started, 2)
        summary["processing_seconds"] = round(last - first, 2)
        summary["shutdown_seconds"] = round(finished - last, 2)
        summary["steady_images_per_second"] = round(images / (last - first), 2) if last > first else None
        # Between batches: query starts, listing, planning, Delta log reads (wall minus batch bodies).
        summary["between_batches_seconds"] = round(
            (last - first) - sum(layer["seconds"] for layer in layers.values()), 2)
    return summary


def wait_for_events(lakehouse: Path, layer: str, since: float, timeout: float = 10.0) -> None:
    """The event row of a batch is committed just after its data: wait for the layer's latest event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = table_rows(lakehouse, "pipeline_events", ["query", "event_time", "input_rows"])
        if any(e["query"] == layer and e["input_rows"] and epoch(e["event_time"]) >= since for e in events):
            return
        time.sleep(0.2)


def batch_durations(lakehouse: Path, since: float | None = None) -> dict[str, dict[str, float]]:
    """Micro-batches per layer with rows, since a wall-clock time (from pipeline_events): where time goes."""
    by_layer: dict[str, list[tuple[float, int]]] = {}
    for event in table_rows(lakehouse, "pipeline_events", ["query", "event_time", "duration_ms", "input_rows"]):
        began = epoch(event["event_time"]) - (event["duration_ms"] or 0) / 1000
        if event["input_rows"] and (since is None or began >= since - 1.0):
            by_layer.setdefault(event["query"], []).append(((event["duration_ms"] or 0) / 1000, event["input_rows"]))
    return {
        layer: {
            "batches": len(values),
            "rows": sum(rows for _, rows in values),
            "total_seconds": round(sum(seconds for seconds, _ in values), 2),
            "mean_seconds": round(statistics.mean(seconds for seconds, _ in values), 2),
            "max_seconds": round(max(seconds for seconds, _ in values), 2),
        }
        for layer, values in sorted(by_layer.items())
    }
