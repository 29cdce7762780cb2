"""What the live status page (``xray serve``) shows: ``xray status``'s dict made safe to publish, plus the
recent alerts, the drift figures per batch and the report's charts.

Everything is read from Delta logs and a few columns with delta-rs (no Spark), like ``xray status``. The
page is for anyone who can reach it, so the dict keeps counts, hashes, rule names and times only: raw
paths (the lakehouse, checkpoints, landing and the folders a landing problem names, which may carry a
patient's name) are dropped, and any string still holding the lakehouse path has it replaced.

``pipeline_alerts`` and the ``drift_psi`` / ``predicted_prevalence`` columns of ``pipeline_events`` are read
by name when they exist (they are written by the drift monitor); before that the page says so.
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

from streaming.lakehouse.catalog import PIPELINE_EVENTS
from streaming.lakehouse.engine import Lakehouse
from streaming.ops.status import collect_status

__all__ = ["CHARTS", "StatusCache", "page_status", "public_view", "recent_alerts", "recent_drift"]

log = logging.getLogger(__name__)

ALERTS_TABLE = "pipeline_alerts"
ALERT_COLUMNS = ("alert_time", "kind", "severity", "message", "details")
DRIFT_COLUMNS = ("drift_psi", "predicted_prevalence")
RECENT_ROWS = 20
# The evaluation report's charts (batch.evaluation.figures.CHART_TITLES, which sits a layer above; a test
# keeps the two equal): the only files the page serves from disk.
CHARTS = {"roc_curve.png": "ROC curve", "confusion_matrix.png": "Confusion matrices",
          "class_balance.png": "Class balance", "predictions_over_time.png": "Predictions over time"}
# Keys of collect_status that hold raw paths: useful in a terminal, not on a page.
PRIVATE_KEYS = frozenset({"lakehouse", "path", "landing_dir"})
LAKEHOUSE_PLACEHOLDER = "<lakehouse>"


def _json_ready(value: Any) -> Any:
    """Datetimes as ISO text in UTC, recursively (Arrow gives naive UTC timestamps)."""
    if isinstance(value, dt.datetime):
        aware = value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value
        return aware.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    return value


def _columns(lakehouse: Lakehouse, table: str) -> list[str]:
    return [field.name for field in lakehouse.delta_table(table).schema().fields]


def _newest(rows: Any, time_column: str, limit: int) -> list[dict]:
    """The ``limit`` newest rows of an Arrow table by ``time_column``, newest first."""
    if rows.num_rows == 0:
        return []
    return rows.sort_by([(time_column, "descending")]).slice(0, limit).to_pylist()


def recent_alerts(lakehouse: Lakehouse, limit: int = RECENT_ROWS) -> dict:
    """The newest alerts of ``pipeline_alerts`` (newest first) and how many there are in all."""
    if not lakehouse.exists(ALERTS_TABLE):
        return {"available": False, "total": 0, "rows": []}
    present = [c for c in ALERT_COLUMNS if c in _columns(lakehouse, ALERTS_TABLE)]
    rows = lakehouse.delta_table(ALERTS_TABLE).to_pyarrow_table(columns=present)
    newest = _newest(rows, "alert_time", limit) if "alert_time" in present else rows.slice(0, limit).to_pylist()
    for row in newest:
        row["details"] = _details(row.get("details"))
    return {"available": True, "total": rows.num_rows, "rows": _json_ready(newest)}


def _details(text: Any) -> Any:
    """An alert's details: its JSON object when it is one, else the text as written."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def recent_drift(lakehouse: Lakehouse, limit: int = RECENT_ROWS) -> dict:
    """The newest micro-batches of ``pipeline_events`` that carry a drift figure, oldest first (a chart's
    order); ``available`` False while the events have no drift column yet."""
    if not lakehouse.exists(PIPELINE_EVENTS.name):
        return {"available": False, "rows": []}
    present = [c for c in DRIFT_COLUMNS if c in _columns(lakehouse, PIPELINE_EVENTS.name)]
    if not present:
        return {"available": False, "rows": []}
    import pyarrow.compute as pc

    events = lakehouse.delta_table(PIPELINE_EVENTS.name).to_pyarrow_table(
        columns=["event_time", "query", "batch_id", *present])
    measured = pc.is_valid(events.column(present[0]))
    for column in present[1:]:
        measured = pc.or_(measured, pc.is_valid(events.column(column)))
    rows = _newest(events.filter(measured), "event_time", limit)[::-1]
    return {"available": True, "rows": _json_ready([{**dict.fromkeys(DRIFT_COLUMNS), **row} for row in rows])}


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
    status = collect_status(lakehouse, now)
    status["alerts"] = recent_alerts(lakehouse)
    status["drift"] = recent_drift(lakehouse)
    status["charts"] = chart_list(lakehouse.config.reports_dir)
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
        except Exception as error:  # noqa: BLE001 - the page shows the error and keeps refreshing
            log.warning("status page: collecting the status failed: %s", error, exc_info=log.isEnabledFor(10))
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            message = public_view(f"cannot read the status: {first}", self._root)
            return 503, json.dumps({"error": message}).encode("utf-8")
