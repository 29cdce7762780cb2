"""``pipeline_events``: one row per layer per micro-batch, written idempotently with the batch."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field

from streaming.lakehouse.catalog import PIPELINE_EVENTS
from streaming.lakehouse.engine import Lakehouse

log = logging.getLogger(__name__)


@dataclass
class BatchEvent:
    """What one micro-batch of one layer did."""

    query: str
    batch_id: int
    started: float = field(default_factory=time.monotonic)
    input_rows: int = 0
    output_rows: int = 0
    quarantined_rows: int = 0
    duplicate_rows: int = 0
    expectations: list[dict] = field(default_factory=list)
    backlog_files: int | None = None
    backlog_bytes: int | None = None
    message: str | None = None
    # Gold rows: the drift window against the champion's training reference (`streaming.gold.drift`).
    drift_psi: float | None = None
    predicted_prevalence: float | None = None
    drift: dict | None = None
    # Gold rows left pending because the champion could not be loaded (why; not a column: the message says
    # it, `streaming.pipeline.alerting` raises the model_unavailable alert from it).
    model_unavailable: str | None = None

    duration_ms: int | None = None

    def finish(self) -> BatchEvent:
        """Fix the duration now (the row may be written later, with other layers' events)."""
        self.duration_ms = int((time.monotonic() - self.started) * 1000)
        return self

    def as_row(self) -> dict:
        return {
            "event_time": dt.datetime.now(dt.timezone.utc),
            "query": self.query,
            "batch_id": self.batch_id,
            "input_rows": self.input_rows,
            "output_rows": self.output_rows,
            "quarantined_rows": self.quarantined_rows,
            "duplicate_rows": self.duplicate_rows,
            "expectations": self.expectations,
            "duration_ms": self.duration_ms if self.duration_ms is not None
            else int((time.monotonic() - self.started) * 1000),
            "backlog_files": self.backlog_files,
            "backlog_bytes": self.backlog_bytes,
            "message": self.message,
            "drift_psi": self.drift_psi,
            "predicted_prevalence": self.predicted_prevalence,
            "drift": json.dumps(self.drift, sort_keys=True) if self.drift is not None else None,
        }


def record_event(lakehouse: Lakehouse, event: BatchEvent, writer: str | None = None,
                 idempotent: bool = True) -> None:
    """Write the event row in its own idempotent transaction (a replayed batch logs once).

    ``writer`` names the streaming query whose batch this is when a layer runs inside another layer's
    batch; without ``idempotent`` the row is simply appended.
    """
    app = f"{event.query}:events" if writer in (None, event.query) else f"{writer}/{event.query}:events"
    record_events(lakehouse, [event], (app, event.batch_id) if idempotent else None)


def record_events(lakehouse: Lakehouse, events: list[BatchEvent], txn: tuple[str, int] | None) -> None:
    """Write the events of one micro-batch (one per layer it ran) in one transaction."""
    rows = [event.as_row() for event in events]
    lakehouse.append_rows(PIPELINE_EVENTS.name, rows, txn=txn)
    for event, row in zip(events, rows, strict=True):
        # Work outside any micro-batch (gold scoring images that waited for a champion) uses batch id -1.
        drift = f" drift PSI {event.drift_psi:.3f}" if event.drift_psi is not None else ""
        log.info(
            "%s %s: in=%d out=%d quarantined=%d duplicates=%d %dms%s%s",
            event.query, f"batch {event.batch_id}" if event.batch_id >= 0 else "catch-up", event.input_rows, event.output_rows, event.quarantined_rows,
            event.duplicate_rows, row["duration_ms"], drift, f" ({event.message})" if event.message else "",
        )


