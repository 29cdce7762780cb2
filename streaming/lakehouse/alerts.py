"""Alerts: conditions an operator must hear about, said three ways: a WARNING line in the log, a row in
``pipeline_alerts`` and a JSON POST to ``alert_webhook_url``.

The stream's thread only logs and queues (`Alerts.fire`); a background sender (`streaming.core.webhook`)
POSTs with retries and then writes the row with the delivery's outcome, so a slow or dead webhook never
holds a micro-batch. A condition that persists alerts once per ``alert_cooldown_minutes`` per kind (and
subject: the layer of a failed query), the repeats suppressed meanwhile counted in the next one; when it
clears, one ``resolved`` notice follows (`Alerts.resolve`). Alerts are at least once: a process restarted
forgets its cooldowns. Messages and details never hold paths or identifiers (they leave the lakehouse).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import first_line
from streaming.core.pseudonym import keyed_hash
from streaming.core.webhook import Delivery, WebhookSender, redact_url
from streaming.lakehouse.catalog import PIPELINE_ALERTS
from streaming.lakehouse.direct import append_rows

__all__ = ["KINDS", "Alert", "Alerts", "alerts_for", "close_alerts", "lakehouse_id", "resolve", "without_paths"]

log = logging.getLogger(__name__)

KINDS = ("quarantine_rate", "drift", "query_failed", "stream_stopped", "stream_stalled", "backlog_age",
         "no_champion", "model_unavailable")
CLOSE_SECONDS = 15.0  # how long a stopping service waits for queued alerts to be sent
# Absolute or home paths, and names of the files the service takes in: what `without_paths` removes.
_PATH = re.compile(r"(?<![\w:/.~])~?/[^\s'\",;()\[\]]*")
_FILE = re.compile(r"[\w.-]*\w\.(?:jpe?g|png|dcm|dicom)\b", re.IGNORECASE)


def without_paths(text: str) -> str:
    """``text`` with paths and image file names replaced by ``<path>`` (an error quoting a landing file)."""
    # A path's trailing ':' or '.' is the sentence's ("cannot read /x/y.jpeg: ...").
    text = _PATH.sub(lambda m: "<path>" + m.group(0)[len(m.group(0).rstrip(":.")):], text)
    return _FILE.sub("<path>", text)


def lakehouse_id(config: XrayConfig) -> str:
    """A short stable id of the lakehouse (its root's keyed hash, as every identifier leaving it): tells
    lakehouses apart without a path, and a guessed path cannot be checked against it."""
    return keyed_hash(config.patient_salt(), "lakehouse", str(config.root))[:12]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Alert:
    """One alert (or the notice that its condition cleared: ``status`` resolved)."""

    kind: str
    severity: str  # warning or critical
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    status: str = "firing"
    time: dt.datetime = field(default_factory=_now)
    alert_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def document(self, lakehouse: str) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {"source": "xray-lakehouse", "alert_id": self.alert_id, "kind": self.kind,
                "severity": self.severity, "status": self.status, "message": self.message,
                "details": self.details, "time": self.time.isoformat().replace("+00:00", "Z"),
                "lakehouse_id": lakehouse, "host": socket.gethostname()}

    def row(self, delivery: Delivery) -> dict[str, Any]:
        """The ``pipeline_alerts`` row once its delivery is settled."""
        return {"alert_id": self.alert_id, "alert_time": self.time, "kind": self.kind, "severity": self.severity,
                "status": self.status, "message": self.message,
                "details": json.dumps(self.details, sort_keys=True, default=str), "delivery": delivery.status,
                "attempts": delivery.attempts}


class Alerts:
    """A lakehouse's alerts: cooldowns, the log line, the sender and the table."""

    def __init__(self, config: XrayConfig, sender: WebhookSender | None = None):
        self.config = config
        self.lakehouse = lakehouse_id(config)
        self.sender = sender or WebhookSender(config.alert_webhook_url or None, name="xray-alerts")
        if self.sender.ident is None:  # not started yet (a test may hand over a running or closed one)
            self.sender.start()
        self._sent: dict[tuple[str, str], float] = {}  # (kind, subject) → when it last alerted (monotonic)
        self._suppressed: dict[tuple[str, str], int] = {}
        self._firing: dict[tuple[str, str], Alert] = {}
        self._lock = threading.Lock()

    def fire(self, kind: str, severity: str, message: str, details: dict[str, Any] | None = None,
             subject: str = "") -> Alert | None:
        """Raise an alert unless the same (kind, subject) alerted within the cooldown (None then)."""
        key, now = (kind, subject), time.monotonic()
        with self._lock:
            last = self._sent.get(key)
            if last is not None and now - last < self.config.alert_cooldown_minutes * 60:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            suppressed = self._suppressed.pop(key, 0)
            self._sent[key] = now
            repeats = {"repeats_suppressed": suppressed} if suppressed else {}
            alert = Alert(kind, severity, message, {**(details or {}), **repeats})
            self._firing[key] = alert
        log.warning("ALERT %s (%s): %s", kind, severity, message)
        self._send(alert)
        return alert

    def resolve(self, kind: str, message: str, subject: str = "") -> Alert | None:
        """Say that a firing (kind, subject) cleared; None when it was not firing."""
        key = (kind, subject)
        with self._lock:
            firing = self._firing.pop(key, None)
            if firing is None:
                return None
            self._sent.pop(key, None)
            self._suppressed.pop(key, None)
        alert = Alert(kind, firing.severity, message, {"resolves": firing.alert_id}, status="resolved")
        log.info("alert %s resolved: %s", kind, message)
        self._send(alert)
        return alert

    def _send(self, alert: Alert) -> None:
        if not self.sender.submit(alert.document(self.lakehouse), lambda delivery: self._settled(alert, delivery)):
            self._settled(alert, Delivery("dropped", 0, "the alert queue is full or closed"))

    def _settled(self, alert: Alert, delivery: Delivery) -> None:
        """Log a delivery that failed, and record the alert with its delivery."""
        if delivery.status not in ("delivered", "no_webhook"):
            log.warning("alerts: %s alert %s not delivered to %s: %s (%s, %d attempt(s)); it is in this log and in "
                        "pipeline_alerts", alert.kind, alert.alert_id[:8], redact_url(self.config.alert_webhook_url),
                        delivery.error or "no answer", delivery.status, delivery.attempts)
        try:
            append_rows(self.config, PIPELINE_ALERTS.name, [alert.row(delivery)])
        except Exception as error:  # a table that cannot be written must not stop alerting
            log.warning("alerts: pipeline_alerts not written (%s); alert %s is in this log only",
                        first_line(error), alert.alert_id[:8])

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Send what is queued (up to ``timeout`` seconds), record the rest undelivered, stop the sender."""
        self.sender.close(timeout)


_alerts: dict[str, Alerts] = {}
_alerts_lock = threading.Lock()


def alerts_for(config: XrayConfig) -> Alerts:
    """The lakehouse's `Alerts` in this process (made, and its sender started, on first use)."""
    key = str(config.tables_dir)
    with _alerts_lock:
        current = _alerts.get(key)
        if current is None or current.config.alert_webhook_url != config.alert_webhook_url or \
                current.config.alert_cooldown_minutes != config.alert_cooldown_minutes:
            if current is not None:
                current.close()
            current = _alerts[key] = Alerts(config)
        return current


def resolve(config: XrayConfig, kind: str, message: str, subject: str = "") -> Alert | None:
    """`Alerts.resolve` on the lakehouse's alerts when any were raised in this process (a condition never
    raised needs no sender)."""
    with _alerts_lock:
        current = _alerts.get(str(config.tables_dir))
    return current.resolve(kind, message, subject) if current is not None else None


def close_alerts(config: XrayConfig, timeout: float = CLOSE_SECONDS) -> None:
    """Flush and stop the lakehouse's alerts, if any were raised (a stream stopping; the next alert starts
    a new sender)."""
    with _alerts_lock:
        current = _alerts.pop(str(config.tables_dir), None)
    if current is not None:
        current.close(timeout)
