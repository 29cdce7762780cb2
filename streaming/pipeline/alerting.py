"""What the stream alerts on (`streaming.lakehouse.alerts` says it: log, ``pipeline_alerts``, webhook).

- After each micro-batch (`after_batch`, called by `fused` once the batch's events are committed): a silver
  batch quarantining more than ``alert_quarantine_rate`` of at least ``alert_quarantine_min_files`` files,
  and gold's drift window (`streaming.gold.drift`) above ``drift_psi_threshold``; a batch whose images were
  left pending because the champion could not be loaded (``model_unavailable``, resolved by the catch-up).
- A query that failed and is restarted (`query_failed`), and a stream that stops on an error (`watching`).
- Every minute beside the queries (`AlertMonitor`, continuous mode only): landing files waiting while no
  bronze batch ran for ``alert_stall_minutes``; the oldest waiting file older than ``alert_backlog_minutes``;
  silver images waiting for a champion for ``alert_champion_minutes``.

A check that fails is one WARNING line: alerting never stops the stream.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator, Sequence

from pyspark.sql import SparkSession

from streaming.bronze.backlog import newest_ingested_time, waiting_after
from streaming.core.config import XrayConfig
from streaming.core.errors import first_line
from streaming.lakehouse.alerts import alerts_for, close_alerts, resolve, without_paths
from streaming.lakehouse.catalog import SILVER_FEATURES
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent
from streaming.pipeline.stopping import waiting_for

__all__ = ["AlertMonitor", "after_batch", "model_available", "query_failed", "watching"]

log = logging.getLogger(__name__)

CHECK_SECONDS = 60.0
# Per lakehouse, in this process: when bronze last committed a batch with files (monotonic), and the newest
# modification time it ingested (the backlog is what landing holds after it).
_last_bronze_batch: dict[str, float] = {}
_newest_ingested: dict[str, dt.datetime] = {}


def _first_line(error: BaseException) -> str:
    return without_paths(first_line(error))[:300] or type(error).__name__


def after_batch(config: XrayConfig, events: Sequence[BatchEvent], newest_ingested: dt.datetime | None = None) -> None:
    """The alerts a committed micro-batch calls for (and the resolved notices of those it clears)."""
    key = str(config.tables_dir)
    for event in events:
        if event.query == "bronze" and event.input_rows:
            _last_bronze_batch[key] = time.monotonic()
            if newest_ingested is not None:
                _newest_ingested[key] = max(newest_ingested, _newest_ingested.get(key, newest_ingested))
    try:
        for event in events:
            if event.model_unavailable:
                _model_unavailable(config, event)
            if event.query == "silver":
                _check_quarantine(config, event)
            if event.drift is not None:
                _check_drift(config, event)
    except Exception as error:  # alerting must never fail a batch
        log.warning("alerts: checking the batch failed (%s); the stream goes on", _first_line(error))


def _model_unavailable(config: XrayConfig, event: BatchEvent) -> None:
    alerts_for(config).fire("model_unavailable", "critical",
                            f"gold batch {event.batch_id}: {event.model_unavailable}; {event.input_rows} image(s) "
                            "are pending and scored by the stream once the model loads again (restore the MLflow "
                            "store from a backup)",
                            {"batch_id": event.batch_id, "pending_images": event.input_rows})


def model_available(config: XrayConfig, scored: int, model: str) -> None:
    """The champion loads again and the pending images were scored: the resolved notice (and one line)."""
    log.info("gold: the champion loads again; scored %d pending image(s) with model %s", scored, model)
    resolve(config, "model_unavailable", f"the champion loads again: {scored} pending image(s) scored")


def _check_quarantine(config: XrayConfig, event: BatchEvent) -> None:
    if event.input_rows < max(1, config.alert_quarantine_min_files):
        return
    rate = event.quarantined_rows / event.input_rows
    if rate <= config.alert_quarantine_rate:
        resolve(config, "quarantine_rate", f"silver batch {event.batch_id} quarantined {rate:.0%} of "
                                           f"{event.input_rows} files")
        return
    rules = sorted(((e["failed"], e["rule"]) for e in event.expectations
                    if e.get("action") == "quarantine" and e.get("failed")), reverse=True)
    message = (f"silver batch {event.batch_id} quarantined {event.quarantined_rows} of {event.input_rows} files "
               f"({rate:.0%} > {config.alert_quarantine_rate:.0%}); rules: "
               + (", ".join(f"{rule} {failed}" for failed, rule in rules[:3]) or "none counted"))
    details = {"batch_id": event.batch_id, "files": event.input_rows, "quarantined": event.quarantined_rows,
               "rate": round(rate, 4), "threshold": config.alert_quarantine_rate,
               "rules": {rule: failed for failed, rule in rules}}
    alerts_for(config).fire("quarantine_rate", "warning", message, details)


def _check_drift(config: XrayConfig, event: BatchEvent) -> None:
    drift = event.drift or {}
    threshold = config.drift_psi_threshold
    measured = {**drift.get("psi", {})}
    if drift.get("prevalence_psi") is not None:
        measured["predicted_prevalence"] = drift["prevalence_psi"]
    if not measured:
        return  # no reference, or too few images yet
    over = {name: value for name, value in measured.items() if value > threshold}
    window = f"the last {drift.get('window_images')} images scored by model v{drift.get('model_version')}"
    if not over:
        resolve(config, "drift", f"{window} match its training images again (largest PSI "
                                 f"{max(measured.values()):.2f} <= {threshold})")
        return
    reference = drift.get("reference_predicted_prevalence")
    prevalence = (f"; predicted PNEUMONIA {drift.get('predicted_prevalence', 0):.0%} vs {reference:.0%} on the "
                  "training images" if reference is not None else "")
    over_text = ", ".join(f"{name} PSI {value:.2f}" for name, value in sorted(over.items(), key=lambda i: -i[1]))
    details = {**drift, "batch_id": event.batch_id, "threshold": threshold,
               "drift_psi": None if event.drift_psi is None else round(event.drift_psi, 4)}
    alerts_for(config).fire("drift", "warning", f"{window} differ from its training images: {over_text} "
                                                f"(threshold {threshold}){prevalence}", details)


def query_failed(config: XrayConfig, layer: str, error: BaseException) -> None:
    """A query failed and is restarted from its checkpoint (`StreamService._handle_stopped`)."""
    alerts_for(config).fire("query_failed", "warning",
                            f"{layer}: the query failed ({type(error).__name__}: {_first_line(error)}); restarting "
                            "from its checkpoint", {"layer": layer, "error": type(error).__name__}, subject=layer)


class AlertMonitor(threading.Thread):
    """The time-based alerts, checked every ``CHECK_SECONDS`` beside the queries (a daemon thread; no
    Spark job: a landing walk, a registry lookup, small Delta reads)."""

    def __init__(self, lakehouse: Lakehouse, layers: Sequence[str], interval: float = CHECK_SECONDS):
        super().__init__(name="xray-alert-monitor", daemon=True)
        self.lakehouse, self.layers, self.interval = lakehouse, tuple(layers), interval
        self.stopped = threading.Event()
        self.started_at = time.monotonic()  # no batch yet: the stall is counted from here
        self.champion_missing_since: float | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.check()
            except Exception as error:  # never stop the stream
                log.warning("alerts: the periodic check failed (%s); it runs again in %.0f s", _first_line(error),
                            self.interval)

    def check(self) -> None:
        config = self.lakehouse.config
        if "bronze" in self.layers and (config.alert_stall_minutes > 0 or config.alert_backlog_minutes > 0):
            self._check_landing(config)
        if "gold" in self.layers and config.alert_champion_minutes > 0:
            self._check_champion(config)

    def _newest_ingested(self) -> dt.datetime | None:
        key = str(self.lakehouse.config.tables_dir)
        if key not in _newest_ingested:  # before this process's first bronze batch: what bronze holds
            newest = newest_ingested_time(self.lakehouse)
            if newest is not None:
                _newest_ingested[key] = newest
        return _newest_ingested.get(key)

    def _check_landing(self, config: XrayConfig) -> None:
        backlog = waiting_after(config.landing_dir, self._newest_ingested())
        waiting = {"waiting_files": backlog.files, "waiting_bytes": backlog.bytes}
        idle = time.monotonic() - max(self.started_at, _last_bronze_batch.get(str(config.tables_dir), 0.0))
        if config.alert_stall_minutes > 0:
            if backlog.files and idle > config.alert_stall_minutes * 60:
                message = (f"no bronze batch for {idle / 60:.0f} min while {backlog.files} landing file(s) wait "
                           f"(limit {config.alert_stall_minutes:g} min)")
                alerts_for(config).fire("stream_stalled", "critical", message,
                                        {"idle_minutes": round(idle / 60, 1), **waiting})
            else:
                resolve(config, "stream_stalled", "bronze is reading landing again" if backlog.files
                        else "no landing file waits")
        if config.alert_backlog_minutes > 0:
            age = (dt.datetime.now(dt.timezone.utc) - backlog.oldest).total_seconds() if backlog.oldest else 0.0
            if age > config.alert_backlog_minutes * 60:
                message = (f"the oldest of {backlog.files} waiting landing file(s) was modified {age / 60:.0f} min "
                           f"ago (limit {config.alert_backlog_minutes:g} min)")
                alerts_for(config).fire("backlog_age", "warning", message,
                                        {"oldest_age_minutes": round(age / 60, 1), **waiting})
            else:
                resolve(config, "backlog_age", "no landing file waits longer than the limit")

    def _check_champion(self, config: XrayConfig) -> None:
        from streaming.gold.scoring import champion_available

        if champion_available(config):
            self.champion_missing_since = None
            resolve(config, "no_champion", "a model is champion: gold scores again")
            return
        now = time.monotonic()
        self.champion_missing_since = self.champion_missing_since or now
        waited = now - self.champion_missing_since
        images = self.lakehouse.row_count(SILVER_FEATURES.name) if self.lakehouse.exists(SILVER_FEATURES.name) else 0
        if waited > config.alert_champion_minutes * 60 and images:
            message = (f"no model has the 'champion' alias for {waited / 60:.0f} min: new silver images are not "
                       f"scored (silver holds {images}); run xray retrain")
            alerts_for(config).fire("no_champion", "critical", message,
                                    {"waited_minutes": round(waited / 60, 1), "silver_images": images})


@contextlib.contextmanager
def watching(spark: SparkSession, config: XrayConfig, layers: Sequence[str], once: bool) -> Iterator[None]:
    """Around a stream: the monitor beside continuous queries, an alert when the stream stops on an error,
    and the queued alerts sent (or recorded undelivered) before it returns."""
    monitor = None
    if not once:
        monitor = AlertMonitor(Lakehouse(spark, config), layers)
        monitor.start()
    try:
        yield
    except Exception as error:
        try:
            alerts_for(config).fire("stream_stopped", "critical",
                                    f"xray stream stopped: {type(error).__name__}: {_first_line(error)}",
                                    {"error": type(error).__name__})
        except Exception as failure:  # the stream's own error is what the caller must see
            log.warning("alerts: the stream_stopped alert was not raised (%s)", _first_line(failure))
        raise
    finally:
        if monitor is not None:
            waiting_for("the alert monitor's check")
            monitor.stopped.set()
            monitor.join(timeout=5)  # a daemon thread: a check still running is left behind, not waited for
        waiting_for("the queued alerts' delivery")
        close_alerts(config)
