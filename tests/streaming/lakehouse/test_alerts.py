"""Alerts (streaming/lakehouse/alerts.py): the log line, the webhook's JSON on a real loopback server, the
``pipeline_alerts`` row, cooldowns, resolved notices and a webhook that is down. No Spark."""

from __future__ import annotations

import json
import logging
import socket

from loopback import Webhook
from support import table_rows

from streaming.core.webhook import WebhookSender
from streaming.lakehouse.alerts import Alerts, lakehouse_id, without_paths


def test_an_alert_is_logged_posted_and_recorded_once_per_cooldown_then_resolved(config, caplog):
    caplog.set_level(logging.INFO)
    with Webhook() as hook:
        config = config.with_overrides(alert_webhook_url=hook.url)
        alerts = Alerts(config)
        fired = alerts.fire("drift", "warning", "the last 180 images differ", {"psi": {"mean_intensity": 0.43}})
        assert alerts.fire("drift", "warning", "still different") is None  # within the cooldown
        assert alerts.resolve("quarantine_rate", "never fired") is None
        resolved = alerts.resolve("drift", "the images match again")
        alerts._sent.clear()  # as if the cooldown had passed: the condition alerts again
        again = alerts.fire("drift", "warning", "different again")
        alerts.close()
    assert fired is not None and resolved is not None and again is not None
    assert hook.bodies[0] == {
        "source": "xray-lakehouse", "alert_id": fired.alert_id, "kind": "drift", "severity": "warning",
        "status": "firing", "message": "the last 180 images differ", "details": {"psi": {"mean_intensity": 0.43}},
        "time": fired.time.isoformat().replace("+00:00", "Z"), "lakehouse_id": lakehouse_id(config),
        "host": socket.gethostname()}
    assert [(b["status"], b["details"].get("resolves")) for b in hook.bodies[1:]] == [
        ("resolved", fired.alert_id), ("firing", None)]
    rows = sorted(table_rows(config, "pipeline_alerts"), key=lambda r: r["alert_time"])
    assert [(r["kind"], r["status"], r["delivery"], r["attempts"]) for r in rows] == [
        ("drift", "firing", "delivered", 1), ("drift", "resolved", "delivered", 1), ("drift", "firing", "delivered", 1)]
    assert json.loads(rows[0]["details"]) == {"psi": {"mean_intensity": 0.43}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["ALERT drift (warning): the last 180 images differ", "ALERT drift (warning): different again"]


def test_a_webhook_that_is_down_costs_a_warning_and_the_row_says_failed(config, caplog):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hooks/secret-token-123?key=abc"
    config = config.with_overrides(alert_webhook_url=url)
    alerts = Alerts(config, WebhookSender(url, attempts=2, backoff=0.01))
    alert = alerts.fire("query_failed", "warning", "bronze: the query failed", subject="bronze")
    alerts.close()
    row = table_rows(config, "pipeline_alerts")[0]
    assert (row["alert_id"], row["delivery"], row["attempts"]) == (alert.alert_id, "failed", 2)
    text = caplog.text
    assert f"not delivered to http://127.0.0.1:{port}/..." in text and "ConnectionRefusedError" in text
    assert "secret-token" not in text and "key=abc" not in text


def test_an_alert_the_queue_cannot_take_is_recorded_dropped(config, caplog):
    sender = WebhookSender("http://127.0.0.1:9/hook")
    sender.start()
    sender.close(1)  # a closed sender takes nothing, as a full one
    Alerts(config, sender).fire("stream_stalled", "critical", "no bronze batch for 16 min")
    [row] = table_rows(config, "pipeline_alerts")
    assert (row["kind"], row["delivery"], row["attempts"]) == ("stream_stalled", "dropped", 0)
    assert "queue is full" in caplog.text


def test_error_messages_lose_their_paths_before_they_leave():
    message = "cannot read /data/landing/train/PNEUMONIA/person12_virus_3.jpeg: [Errno 5] I/O error (person9_a.png)"
    assert without_paths(message) == "cannot read <path>: [Errno 5] I/O error (<path>)"
