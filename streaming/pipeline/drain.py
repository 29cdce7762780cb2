"""Progress of a backlog drain (``xray stream --once``): rows taken out of the backlog, per micro-batch.

Read from the query's own progress reports, so nothing is listed twice: each finished micro-batch adds its
input rows (for bronze: landing files). Bronze's landing source reports the end of its log as the latest
offset, so the total of the drain (files in landing not yet ingested when it started) is known from the first
batch on; the Delta sources of ``--layer silver``/``gold`` give a count without a total.
"""

from __future__ import annotations

import json
from typing import Any

from streaming.core.progress import Progress, progress

__all__ = ["DrainProgress"]

UNITS = {"bronze": "file"}


def _field(report: Any, name: str) -> Any:
    """A field of a progress report (PySpark gives objects with attributes, or dicts)."""
    if isinstance(report, dict):
        return report.get(name)
    return getattr(report, name, None)


def _seq(offset: Any) -> int | None:
    """The position of a landing offset (``{"seq": N}``, possibly as JSON text); None for other sources."""
    if isinstance(offset, str):
        try:
            offset = json.loads(offset)
        except ValueError:
            return None
    if isinstance(offset, dict) and isinstance(offset.get("seq"), int):
        return offset["seq"]
    return None


class DrainProgress:
    """Follows one query of a drain; `poll` after each wait, `close` at the end."""

    def __init__(self, query_name: str, **options: Any):
        self.query_name = query_name
        self.options = options
        self.seen: set[int] = set()
        self.start: int | None = None  # landing position the drain started from
        self.bar: Progress | None = None  # made at the first batch with rows (a drain of nothing stays silent)
        self.rows = 0  # taken out of the backlog so far

    def poll(self, query: Any) -> None:
        for report in list(query.recentProgress or []):
            batch_id = _field(report, "batchId")
            if batch_id is None or batch_id in self.seen:
                continue
            self.seen.add(batch_id)
            self._add(report)

    def _add(self, report: Any) -> None:
        rows = int(_field(report, "numInputRows") or 0)
        self.rows += rows
        sources = _field(report, "sources") or []
        source = sources[0] if sources else None
        end = _seq(_field(source, "endOffset")) if source is not None else None
        latest = _seq(_field(source, "latestOffset")) if source is not None else None
        if self.start is None and end is not None:
            self.start = end - rows
        if rows == 0 and self.bar is None:
            return
        if self.bar is None:
            unit = UNITS.get(self.query_name, "row")
            self.bar = progress(None, f"{self.query_name} backlog", unit=unit, **self.options)
        if latest is not None and self.start is not None:
            self.bar.set_total(latest - self.start)
        self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
