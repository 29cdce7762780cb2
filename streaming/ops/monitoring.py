"""What ``xray status`` (and the page of ``xray serve``) says of the lakehouse's monitoring: the newest
alerts (``pipeline_alerts``), drift per micro-batch (the ``drift_psi`` and ``predicted_prevalence``
columns of ``pipeline_events``) and the last retrain cycle (``retrain_runs``), with their status lines.

delta-rs reads of a few columns, no Spark. Tables and columns are read by name only when they exist: a
lakehouse made before they were declared shows "none yet". Nothing here holds a path or an identifier:
alerts are written without them (`streaming.lakehouse.alerts`), retrain messages with paths hashed.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from streaming.lakehouse.catalog import PIPELINE_ALERTS, PIPELINE_EVENTS, RETRAIN_RUNS
from streaming.lakehouse.engine import Lakehouse
from streaming.ops.text import iso_utc, short_time

__all__ = ["ALERT_COLUMNS", "DRIFT_COLUMNS", "monitoring_lines", "monitoring_status", "recent_alerts",
           "recent_drift", "retraining_status"]

ALERTS_TABLE = PIPELINE_ALERTS.name
ALERT_COLUMNS = ("alert_time", "kind", "severity", "status", "message", "details")
DRIFT_COLUMNS = ("drift_psi", "predicted_prevalence")
RETRAIN_COLUMNS = ("trigger", "runner", "finished_time", "outcome", "model_version", "promoted", "rescored_rows")
RECENT_ROWS = 20
SCREEN_ALERTS = 3  # newest alerts on the status screen


def _json_ready(value: Any) -> Any:
    """Datetimes as ISO text in UTC, recursively (Arrow gives naive UTC timestamps)."""
    if isinstance(value, dt.datetime):
        return iso_utc(value)
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


def retraining_status(lakehouse: Lakehouse) -> dict:
    """The last retrain cycle of ``retrain_runs`` and how periodic retraining is configured."""
    config = lakehouse.config
    result: dict[str, Any] = {"interval_hours": config.retrain_interval_hours,
                              "min_new_labels": config.retrain_min_new_labels, "cycles": 0, "last": None}
    if not lakehouse.exists(RETRAIN_RUNS.name):
        return result
    present = [c for c in RETRAIN_COLUMNS if c in _columns(lakehouse, RETRAIN_RUNS.name)]
    rows = lakehouse.delta_table(RETRAIN_RUNS.name).to_pyarrow_table(columns=present)
    newest = _newest(rows, "finished_time", 1) if "finished_time" in present else []
    result.update(cycles=rows.num_rows, last=_json_ready(newest[0]) if newest else None)
    return result


def monitoring_status(lakehouse: Lakehouse) -> dict:
    """The ``alerts``, ``drift`` and ``retraining`` entries of ``xray status``'s dict."""
    drift = {**recent_drift(lakehouse), "threshold": lakehouse.config.drift_psi_threshold}
    return {"alerts": recent_alerts(lakehouse), "drift": drift, "retraining": retraining_status(lakehouse)}


def _alert_lines(alerts: dict) -> list[str]:
    if not alerts["total"]:
        return ["ALERTS  none raised"]
    lines = [f"ALERTS  {alerts['total']} in pipeline_alerts; newest first:"]
    for row in alerts["rows"][:SCREEN_ALERTS]:
        state = f" {row['status']}" if row.get("status") and row["status"] != "firing" else ""
        lines.append(f"  {short_time(row.get('alert_time'))}  {row.get('severity')} {row.get('kind')}{state}: "
                     f"{row.get('message')}")
    return lines


def _drift_line(drift: dict) -> str:
    rows = drift["rows"]
    if not rows:
        return "DRIFT  no figure yet (gold measures it once its window holds enough scored images)"
    last = rows[-1]
    psi, prevalence = last.get("drift_psi"), last.get("predicted_prevalence")
    parts = [f"largest PSI {psi:.3f} (alert above {drift['threshold']:g})" if psi is not None
             else "no PSI (the champion has no training reference)"]
    if prevalence is not None:
        parts.append(f"predicted PNEUMONIA {prevalence:.0%}")
    return f"DRIFT  {short_time(last.get('event_time'))}: {', '.join(parts)}"


def _retraining_line(retraining: dict) -> str:
    triggers = [f"every {retraining['interval_hours']:g} h" if retraining["interval_hours"] else "",
                f"after {retraining['min_new_labels']} new labels" if retraining["min_new_labels"] else ""]
    schedule = " or ".join(t for t in triggers if t) or "off (retrain_interval_hours, retrain_min_new_labels)"
    last = retraining["last"]
    if last is None:
        return f"RETRAINING  periodic: {schedule}; no cycle recorded yet"
    version = f", version {last['model_version']}{' promoted' if last.get('promoted') else ''}" \
        if last.get("model_version") else ""
    return (f"RETRAINING  periodic: {schedule}; last of {retraining['cycles']}: "
            f"{short_time(last.get('finished_time'))} ({last.get('trigger')}) {last.get('outcome')}{version}")


def monitoring_lines(status: dict) -> list[str]:
    """The ALERTS, DRIFT and RETRAINING lines of the status screen."""
    return [*_alert_lines(status["alerts"]), _drift_line(status["drift"]),
            _retraining_line(status["retraining"])]
