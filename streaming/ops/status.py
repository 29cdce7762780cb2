"""``xray status``: tables, streams, landing backlog, champion model, feedback and quarantine on one screen.

Everything is read from Delta logs, a few small columns through delta-rs, checkpoint folder listings and
the MLflow registry: no Spark job runs, so the command answers in about a second even while the stream is
busy, and ``spark`` may be None. Nothing is created: a fresh lakehouse shows its tables as not created yet.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from typing import Any

from streaming.bronze.backlog import newest_ingested_time, waiting_after
from streaming.core.checkpoints import newest_batch
from streaming.core.config import XrayConfig
from streaming.core.errors import first_line
from streaming.core.names import LAYERS
from streaming.core.registry import local_store_exists
from streaming.lakehouse.catalog import (
    ALL_TABLES,
    GOLD_MODEL_PERFORMANCE,
    PIPELINE_EVENTS,
    SILVER_METADATA,
    SILVER_QUARANTINE,
)
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.maintenance import MAINTENANCE_QUERY
from streaming.ops.feedback import feedback_lines, feedback_status
from streaming.ops.monitoring import monitoring_lines, monitoring_status
from streaming.ops.text import (
    NOT_DEFINED,
    age,
    format_table,
    iso_utc,
    metric_text,
    short_time,
    undefined_metrics,
)
from streaming.silver.refeature import features_status, stale_features_message

log = logging.getLogger(__name__)

GOLD_WAITING = "gold is waiting: no model has the 'champion' alias; run 'xray retrain'"
METRIC_KEYS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
SCREEN_WIDTH = 100


# -- collection -----------------------------------------------------------------------------------------
def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value
    return dt.datetime.fromtimestamp(float(value) / 1000, dt.timezone.utc)  # Delta log times are epoch ms


def table_status(lakehouse: Lakehouse) -> list[dict]:
    """Rows, version and last commit time of every declared table, from the Delta logs alone."""
    result = []
    for spec in ALL_TABLES:
        entry: dict[str, Any] = {"name": spec.name, "layer": spec.layer, "exists": lakehouse.exists(spec.name),
                                 "rows": None, "version": None, "last_modified": None}
        if entry["exists"]:
            table = lakehouse.delta_table(spec.name)
            history = table.history(1)
            entry.update(rows=lakehouse.row_count(spec.name), version=table.version(),
                         last_modified=iso_utc(_utc(history[0].get("timestamp"))) if history else None)
        result.append(entry)
    return result


def checkpoint_status(config: XrayConfig, query: str) -> dict:
    """The newest planned (offsets/) and committed (commits/) micro-batch of a query's checkpoint.

    Spark writes ``offsets/N`` before running batch N and ``commits/N`` after it; an offset without its
    commit is a batch running now, or one interrupted that the next start replays.
    """
    folder = config.checkpoint_path(query)
    planned, committed = newest_batch(folder / "offsets"), newest_batch(folder / "commits")
    return {
        "path": str(folder),
        "exists": folder.is_dir(),
        "planned_batch_id": planned,
        "committed_batch_id": committed,
        "uncommitted": planned is not None and (committed is None or planned > committed),
    }


def latest_events(lakehouse: Lakehouse) -> dict[str, dict]:
    """The newest ``pipeline_events`` row of each query (a few columns read with delta-rs)."""
    if not lakehouse.exists(PIPELINE_EVENTS.name):
        return {}
    import pyarrow.compute as pc

    columns = ["event_time", "query", "batch_id", "input_rows", "output_rows", "duration_ms", "backlog_files",
               "backlog_bytes", "message"]
    events = lakehouse.delta_table(PIPELINE_EVENTS.name).to_pyarrow_table(columns=columns)
    newest: dict[str, dict] = {}
    for query in pc.unique(events.column("query")).to_pylist():
        if query is None:
            continue
        rows = events.filter(pc.equal(events.column("query"), query))
        position = pc.index(rows.column("event_time"), pc.max(rows.column("event_time"))).as_py()
        if position >= 0:
            newest[query] = rows.slice(position, 1).to_pylist()[0]
    return newest


def stream_status(config: XrayConfig, events: dict[str, dict], now: dt.datetime) -> list[dict]:
    """Per query: its last logged micro-batch, how long ago it finished, and its checkpoint state."""
    result = []
    for query in [*LAYERS, *sorted(set(events) - set(LAYERS) - {MAINTENANCE_QUERY})]:
        event = events.get(query)
        event_time = _utc(event["event_time"]) if event else None
        result.append({
            "query": query,
            "last_batch_id": event["batch_id"] if event else None,
            "last_event_time": iso_utc(event_time),
            "age_seconds": round((now - event_time).total_seconds(), 1) if event_time else None,
            "input_rows": event["input_rows"] if event else None,
            "output_rows": event["output_rows"] if event else None,
            "duration_ms": event["duration_ms"] if event else None,
            "message": event["message"] if event else None,
            "checkpoint": checkpoint_status(config, query),
        })
    return result


def backlog_status(lakehouse: Lakehouse, bronze_event: dict | None) -> dict:
    """Landing files the bronze stream has still to read.

    The file source admits files oldest first, so the backlog is what landing holds modified after the
    newest file in bronze (`streaming.bronze.backlog`; bronze logs the same measure with each batch).
    Counting landing minus bronze rows would be wrong once clean_source archives or deletes ingested files
    and when a file is copied twice.
    """
    newest = newest_ingested_time(lakehouse)
    waiting = waiting_after(lakehouse.config.landing_dir, newest)
    return {
        "files": waiting.files,
        "bytes": waiting.bytes,
        "newest_ingested_time": iso_utc(newest),
        "landing_dir": str(lakehouse.config.landing_dir),
        "last_logged_files": bronze_event.get("backlog_files") if bronze_event else None,
    }


def landing_problems(config) -> list[dict]:  # XrayConfig
    """What the landing scan skipped at its last pass (unreadable folders, links to folders inside landing,
    names that are not UTF-8), with the folder relative to landing: the operator has to fix it there."""
    from streaming.bronze.source import landing_log_dir
    from streaming.landing.log import read_problems

    return read_problems(landing_log_dir(config))


def unlabelled_status(lakehouse: Lakehouse) -> dict:
    """Silver images without a label (from a landing folder that is not ``<split>/<LABEL>/``): gold scores
    them, training does not use them. The ``label`` column only, read with delta-rs."""
    if not lakehouse.exists(SILVER_METADATA.name):
        return {"images": 0}
    labels = lakehouse.delta_table(SILVER_METADATA.name).to_pyarrow_table(columns=["label"]).column("label")
    return {"images": labels.null_count}


def latest_performance(lakehouse: Lakehouse, name: str, version: str) -> list[dict]:
    """The newest ``gold_model_performance`` row per split of one model version."""
    if not lakehouse.exists(GOLD_MODEL_PERFORMANCE.name):
        return []
    rows = lakehouse.delta_table(GOLD_MODEL_PERFORMANCE.name).to_pyarrow_table(
        filters=[("model_name", "=", name), ("model_version", "=", version)]).to_pylist()
    newest: dict[str, dict] = {}
    for row in rows:
        split = row["split"] or "unknown"
        if split not in newest or (row["evaluated_time"] or 0) > (newest[split]["evaluated_time"] or 0):
            newest[split] = row
    order = ("train", "val", "test", "unknown")
    result = []
    for split in sorted(newest, key=lambda s: (order.index(s) if s in order else len(order), s)):
        row = newest[split]
        result.append({
            "split": split,
            **{key: row[key] for key in METRIC_KEYS},
            "confusion_matrix": json.loads(row["confusion_matrix"]) if row["confusion_matrix"] else None,
            "threshold": row["threshold"],
            "sample_count": row["sample_count"],
            "evaluated_time": iso_utc(_utc(row["evaluated_time"])),
        })
    return result


def champion_status(lakehouse: Lakehouse) -> dict:
    """The champion version, its tags and its latest metrics per split; ``version`` None when there is none."""
    config = lakehouse.config
    entry: dict[str, Any] = {"name": config.model_name, "version": None, "feature_version": None,
                             "threshold": None, "metrics": [], "hold_out": {}, "error": None}
    if not local_store_exists(config):
        return entry
    from streaming.core.registry import champion, version_tags

    try:
        ref = champion(config)
        tags = version_tags(config, ref) if ref else {}
    except Exception as error:  # an unreachable registry must not hide the rest of the screen
        entry["error"] = f"model registry unavailable: {first_line(error)}"
        return entry
    if ref is None:
        return entry
    threshold = tags.get("threshold")
    entry.update(version=ref.version, feature_version=tags.get("feature_version"),
                 threshold=float(threshold) if threshold else None,
                 metrics=latest_performance(lakehouse, ref.name, ref.version),
                 # `xray retrain`'s figures on the patients it held out before refitting (validation_* tags)
                 hold_out={key.removeprefix("validation_"): float(value) for key, value in sorted(tags.items())
                           if key.startswith("validation_")})
    return entry


def quarantine_status(lakehouse: Lakehouse) -> dict:
    """Quarantined files per rule (the ``rule`` column only, read with delta-rs)."""
    if not lakehouse.exists(SILVER_QUARANTINE.name):
        return {"total": 0, "by_rule": {}}
    rules = lakehouse.delta_table(SILVER_QUARANTINE.name).to_pyarrow_table(columns=["rule"]).column("rule")
    counts = {(item["values"].as_py() or "unknown"): item["counts"].as_py() for item in rules.value_counts()}
    ranked = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return {"total": sum(ranked.values()), "by_rule": ranked}


def collect_status(lakehouse: Lakehouse, now: dt.datetime | None = None) -> dict:
    """Everything ``xray status`` shows, as a JSON-ready dict."""
    config = lakehouse.config
    now = now or dt.datetime.now(dt.timezone.utc)
    events = latest_events(lakehouse)
    model = champion_status(lakehouse)
    return {
        "lakehouse": str(config.root),
        "generated_time": iso_utc(now),
        "tables": table_status(lakehouse),
        "streams": stream_status(config, events, now),
        "landing_backlog": backlog_status(lakehouse, events.get("bronze")),
        "landing_problems": landing_problems(config),
        "unlabelled": unlabelled_status(lakehouse),
        "champion": model,
        "gold_waiting": GOLD_WAITING if model["version"] is None else None,
        "features": features_status(lakehouse),
        "quarantine": quarantine_status(lakehouse),
        "feedback": feedback_status(config, model),
        **monitoring_status(lakehouse),  # alerts, drift, retraining
    }


# -- rendering ------------------------------------------------------------------------------------------
def _bytes(size: int | None) -> str:
    if not size:
        return "0 B"
    power = min(int(math.log(size, 1024)), 4)
    return f"{size / 1024 ** power:.1f} {('B', 'KB', 'MB', 'GB', 'TB')[power]}" if power else f"{size} B"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render_status(status: dict) -> str:
    """The one-screen text of ``xray status`` (fits a 100-column terminal)."""
    lines = [f"xray status of {status['lakehouse']} at {short_time(status['generated_time'])} UTC", "", "TABLES"]
    lines += format_table(
        ("table", "layer", "rows", "version", "last commit (UTC)"),
        [(t["name"], t["layer"], t["rows"], t["version"], short_time(t["last_modified"])) if t["exists"]
         else (t["name"], t["layer"], "-", "-", "not created yet") for t in status["tables"]],
        (False, False, True, True, False),
    )
    for section in (_streams_section, _landing_section, _model_section, feedback_lines, _quarantine_section,
                    monitoring_lines):
        lines += ["", *section(status)]
    return "\n".join(_shorten(line, SCREEN_WIDTH) if len(line) > SCREEN_WIDTH else line for line in lines)


def _checkpoint_state(stream: dict, bronze_checkpoint: bool) -> tuple[str, str | None]:
    """(what the checkpoint column says, a note below the table or None)."""
    checkpoint = stream["checkpoint"]
    if not checkpoint["exists"] and bronze_checkpoint and stream["query"] in ("silver", "gold"):
        return "in bronze's batches", None  # the default one-pass plan: no query (checkpoint) of its own
    if not checkpoint["exists"]:
        return "no checkpoint", None
    if checkpoint["committed_batch_id"] is None and checkpoint["planned_batch_id"] is None:
        return "empty", None
    state = f"committed {_num(checkpoint['committed_batch_id'])}"
    if not checkpoint["uncommitted"]:
        return state, None
    return (f"{state}, {checkpoint['planned_batch_id']} planned",
            f"  {stream['query']}: batch {checkpoint['planned_batch_id']} is planned but not committed "
            "(running now, or replayed on the next start)")


def _streams_section(status: dict) -> list[str]:
    rows, notes = [], []
    bronze_checkpoint = any(s["query"] == "bronze" and s["checkpoint"]["exists"] for s in status["streams"])
    for s in status["streams"]:
        state, note = _checkpoint_state(s, bronze_checkpoint)
        notes += [note] if note else []
        last_batch = "catch-up" if s["last_batch_id"] == -1 else _num(s["last_batch_id"])
        rows.append((s["query"], last_batch, short_time(s["last_event_time"]),
                     age(s["age_seconds"]), _num(s["input_rows"]), _num(s["output_rows"]), state))
    lines = ["STREAMS", *format_table(("query", "last batch", "finished (UTC)", "age", "in", "out", "checkpoint"),
                                      rows, (False, True, False, True, True, True, False)), *notes]
    return lines + ([f"  {status['gold_waiting']}"] if status["gold_waiting"] else [])


def _landing_section(status: dict) -> list[str]:
    backlog = status["landing_backlog"]
    lines = [f"LANDING BACKLOG  {backlog['files']} file(s), {_bytes(backlog['bytes'])} not ingested yet"]
    if backlog["newest_ingested_time"]:
        lines.append(f"  (files in landing modified after the newest file in bronze, "
                     f"{short_time(backlog['newest_ingested_time'])} UTC)")
    elif backlog["files"]:
        lines.append("  (nothing ingested yet: every image in landing is waiting)")
    unlabelled = status.get("unlabelled", {}).get("images")
    if unlabelled:
        lines.append(f"  {unlabelled} image(s) in silver without a label (not from a landing/<split>/<LABEL>/ "
                     "folder): scored, not used for training")
    for problem in status["landing_problems"]:
        lines.append(f"  skipped {problem['kind'].replace('_', ' ')} {problem['path']!r}: {problem['detail']} "
                     f"(since {short_time(problem['first_seen'])} UTC)")
    return lines


def _model_section(status: dict) -> list[str]:
    stale = stale_features_message(status["features"]) if status.get("features") else None
    # The line is longer than the screen: cut at its "run", the action on a line of its own.
    lines = [f"FEATURES  {part.strip()}" if i == 0 else f"  {part.strip()}"
             for i, part in enumerate(stale.replace(": run", ":\nrun", 1).splitlines())] if stale else []
    return ([*lines, ""] if lines else []) + _champion_lines(status)


def _champion_lines(status: dict) -> list[str]:
    model = status["champion"]
    if model.get("error"):
        return [f"MODEL  {model['name']}: {model['error']}"]
    if model["version"] is None:
        return [f"MODEL  {model['name']}: no version has the 'champion' alias yet; run 'xray retrain'"]
    threshold = f", threshold {model['threshold']:.3f}" if model["threshold"] is not None else ""
    lines = [f"MODEL  {model['name']} version {model['version']} (champion){threshold}",
             f"  feature version {model['feature_version']}"]
    if not model["metrics"]:
        return [*lines, "  not evaluated yet: run 'xray metrics'"]
    return lines + format_table(
        ("split", "images", "accuracy", "precision", "recall", "specif.", "F1", "ROC AUC", "evaluated"),
        [(m["split"], m["sample_count"], *[metric_text(m, k) for k in METRIC_KEYS], short_time(m["evaluated_time"]))
         for m in model["metrics"]],
        (False, True, True, True, True, True, True, True, False),
    ) + _undefined_notes(model["metrics"])


def _undefined_notes(metrics: list[dict]) -> list[str]:
    """Why a cell says n/a: per split, the rates its images leave undefined."""
    notes = []
    for m in metrics:
        reasons = undefined_metrics(m["confusion_matrix"])
        if reasons:
            notes.append(f"  {NOT_DEFINED} in {m['split']}: " + "; ".join(
                f"{key} ({reason})" for key, reason in reasons.items()))
    return notes


def _quarantine_section(status: dict) -> list[str]:
    quarantine = status["quarantine"]
    lines = [f"QUARANTINE  {quarantine['total']} file(s)"]
    if quarantine["by_rule"]:
        lines += format_table(("rule", "files"), [(_shorten(r, 60), n) for r, n in quarantine["by_rule"].items()],
                              (False, True))
    return lines


def print_status(spark: Any, config: XrayConfig, as_json: bool = False) -> dict:
    """Print the status screen (or JSON with ``as_json``) and return it as a dict.

    ``spark`` is only handed to `Lakehouse`; no Spark job runs, so None works where the Delta engine is
    auto or delta-rs.
    """
    status = collect_status(Lakehouse(spark, config))
    print(json.dumps(status, indent=2, default=str) if as_json else render_status(status))
    return status
