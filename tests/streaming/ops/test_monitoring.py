"""`streaming.ops.monitoring`: the alerts, drift and last retrain cycle that `xray status` (and the page)
show, read from small Delta tables written as the service writes them; no Spark."""

from __future__ import annotations

import datetime as dt

from streaming.lakehouse.catalog import PIPELINE_ALERTS, PIPELINE_EVENTS, RETRAIN_RUNS
from streaming.lakehouse.direct import append_rows
from streaming.lakehouse.engine import Lakehouse
from streaming.ops.monitoring import monitoring_lines, monitoring_status
from streaming.ops.status import collect_status, render_status

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)


def _lakehouse(config) -> Lakehouse:
    return Lakehouse(None, config.with_overrides(delta_engine="delta-rs"))


def _row(spec, **values) -> dict:
    return {**dict.fromkeys(spec.column_names), **values}


def test_a_fresh_lakehouse_says_none_yet(config):
    status = monitoring_status(_lakehouse(config))
    assert status["alerts"] == {"available": False, "total": 0, "rows": []}
    assert status["retraining"]["last"] is None and status["retraining"]["cycles"] == 0
    lines = monitoring_lines(status)
    assert lines[0] == "ALERTS  none raised"
    assert lines[1].startswith("DRIFT  no figure yet")
    assert lines[2] == ("RETRAINING  periodic: off (retrain_interval_hours, retrain_min_new_labels); "
                        "no cycle recorded yet")


def test_alerts_drift_and_the_last_retrain_on_the_status_screen(config):
    config = config.with_overrides(retrain_interval_hours=6.0, drift_psi_threshold=0.3)
    append_rows(config, PIPELINE_ALERTS.name, [
        _row(PIPELINE_ALERTS, alert_time=T0 + dt.timedelta(minutes=m), kind=kind, severity="warning",
             status="firing", message=f"{kind} happened", details="{}") for m, kind in
        ((1, "quarantine_rate"), (5, "drift"), (3, "backlog_age"), (7, "stream_stalled"))])
    append_rows(config, PIPELINE_EVENTS.name, [
        _row(PIPELINE_EVENTS, event_time=T0 + dt.timedelta(minutes=b), query="gold", batch_id=b, drift_psi=psi,
             predicted_prevalence=prevalence) for b, psi, prevalence in ((1, 0.05, 0.5), (2, 0.62, 0.28))])
    append_rows(config, PIPELINE_EVENTS.name, [_row(PIPELINE_EVENTS, event_time=T0, query="bronze", batch_id=3)])
    append_rows(config, RETRAIN_RUNS.name, [
        _row(RETRAIN_RUNS, trigger=trigger, runner="xray stream", started_time=T0 + dt.timedelta(hours=h),
             finished_time=T0 + dt.timedelta(hours=h, minutes=2), outcome="ok", model_version=version,
             promoted=promoted) for h, trigger, version, promoted in
        ((0, "interval", "3", True), (6, "interval", "4", False))])

    status = collect_status(_lakehouse(config))
    assert [a["kind"] for a in status["alerts"]["rows"]] == ["stream_stalled", "drift", "backlog_age",
                                                             "quarantine_rate"]
    assert [row["drift_psi"] for row in status["drift"]["rows"]] == [0.05, 0.62]  # events without drift skipped
    assert status["retraining"]["cycles"] == 2 and status["retraining"]["last"]["model_version"] == "4"

    screen = render_status(status)
    assert "ALERTS  4 in pipeline_alerts; newest first:" in screen
    assert "  2026-12-01 09:07:00  warning stream_stalled: stream_stalled happened" in screen
    assert "quarantine_rate happened" not in screen  # the three newest only
    assert "DRIFT  2026-12-01 09:02:00: largest PSI 0.620 (alert above 0.3), predicted PNEUMONIA 28%" \
        in screen
    assert ("RETRAINING  periodic: every 6 h; last of 2: 2026-12-01 15:02:00 (interval) ok, version 4"
            in screen.splitlines())
