"""What the live status page (``xray serve``) shows: ``xray status``'s dict made safe to publish, plus the
recent alerts, the drift figures per batch and the report's charts.

Everything is read from Delta logs and a few columns with delta-rs (no Spark), like ``xray status``. The
page is for anyone who can reach it, so the dict keeps counts, hashes, rule names and times only: raw
paths (the lakehouse, checkpoints, landing and the folders a landing problem names, which may carry a
patient's name) are dropped, and any string still holding the lakehouse path has it replaced.

The alerts, drift figures and retraining come with ``xray status``'s dict (`streaming.ops.monitoring`); the
page adds the throughput and latency of recent batches (`streaming.ops.throughput`) and, for a lakehouse
holding ``xray demo``'s generated images, the report's synthetic-data caution (`streaming.ops.provenance`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streaming.core.errors import first_line
from streaming.lakehouse.engine import Lakehouse
from streaming.ops.monitoring import recent_alerts, recent_drift
from streaming.ops.provenance import CAUTION_TITLE, caution_text, synthetic_status
from streaming.ops.status import collect_status
from streaming.ops.throughput import recent_throughput

__all__ = ["CHARTS", "StatusCache", "page_status", "public_view", "recent_alerts", "recent_drift"]

log = logging.getLogger(__name__)

# The evaluation report's charts (batch.evaluation.figures.CHART_TITLES, which sits a layer above; a test
# keeps the two equal): the only files the page serves from disk.
CHARTS = {"roc_curve.png": "ROC curve", "confusion_matrix.png": "Confusion matrices",
          "class_balance.png": "Class balance", "predictions_over_time.png": "Predictions over time"}
# Keys of collect_status that hold raw paths: useful in a terminal, not on a page.
PRIVATE_KEYS = frozenset({"lakehouse", "path", "landing_dir"})
LAKEHOUSE_PLACEHOLDER = "<lakehouse>"


def public_view(value: Any, root: str) -> Any:
    """``value`` without the keys holding raw paths, and with the lakehouse path replaced in any text."""
    if isinstance(value, dict):
        return {key: public_view(item, root) for key, item in value.items() if key not in PRIVATE_KEYS}
    if isinstance(value, list):
        return [public_view(item, root) for item in value]
    if isinstance(value, str) and root and root in value:
        return value.replace(root, LAKEHOUSE_PLACEHOLDER)
    return value


def chart_list(reports_dir: Path) -> list[dict]:
    """The report's charts that exist, in the report's order; ``version`` changes when one is redrawn."""
    found = []
    for name, title in CHARTS.items():
        path = Path(reports_dir) / name
        if path.is_file():
            found.append({"name": name, "title": title, "version": int(path.stat().st_mtime)})
    return found


def page_status(lakehouse: Lakehouse, now: dt.datetime | None = None) -> dict:
    """Everything the page shows, safe to publish (see the module docstring)."""
    status = collect_status(lakehouse, now)  # with its alerts, drift and retraining (`streaming.ops.monitoring`)
    status["charts"] = chart_list(lakehouse.config.reports_dir)
    status["throughput"] = recent_throughput(lakehouse)
    synthetic = synthetic_status(lakehouse)  # the report's caution, in the same words
    status["synthetic"] = None if synthetic is None else {
        "images_present": synthetic["images_present"], "title": CAUTION_TITLE, "text": caution_text(synthetic)}
    return public_view(status, str(lakehouse.config.root))


class StatusCache:
    """The last collected status, kept ``seconds`` long: many open pages cost one read of the Delta logs.

    Readers wait while one of them collects (a lock, not a race of collections). A failed collection is
    kept as long as a good one, as ``(503, message)``, so a broken table is not read again on every request;
    the message goes through `public_view` with the lakehouse ``root`` like the status itself.
    """

    def __init__(self, collect: Callable[[], dict], root: str = "", seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self._collect, self._root, self._seconds, self._clock = collect, root, seconds, clock
        self._lock = threading.Lock()
        self._value: tuple[int, bytes] | None = None
        self._taken = 0.0

    def get(self) -> tuple[int, bytes]:
        """(HTTP status, JSON body)."""
        with self._lock:
            if self._value is None or self._clock() - self._taken >= self._seconds:
                self._value = self._fresh()
                self._taken = self._clock()
            return self._value

    def _fresh(self) -> tuple[int, bytes]:
        try:
            return 200, json.dumps(self._collect(), default=str).encode("utf-8")
        except Exception as error:  # the page shows the error and keeps refreshing
            log.warning("status page: collecting the status failed: %s", error, exc_info=log.isEnabledFor(10))
            first = first_line(error)
            message = public_view(f"cannot read the status: {first}", self._root)
            return 503, json.dumps({"error": message}).encode("utf-8")
