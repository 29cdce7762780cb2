"""JSON POSTs to a webhook from a background thread: a bounded queue, retries with backoff, a timeout.

The caller never waits: `WebhookSender.submit` only puts the document in the queue (False when it is full)
and the sender thread reports each outcome to the caller's callback, as a `Delivery`. A URL may carry a
secret (a token in its path or query, a password): only `redact_url` ever reaches a log line.
Standard library only (``urllib``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Delivery", "WebhookSender", "redact_url"]

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
ATTEMPTS = 4  # the first POST and three retries, 1, 2 and 4 s apart
BACKOFF_SECONDS = 1.0
QUEUE_SIZE = 100
# Answers worth another try; any other 4xx (a wrong URL or token) fails at once.
_RETRIED_STATUSES = {408, 425, 429}


@dataclass(frozen=True)
class Delivery:
    """How one document fared: ``delivered``, ``failed`` (every attempt, or a refusal), ``undelivered``
    (the sender stopped first) or ``no_webhook`` (no URL configured)."""

    status: str
    attempts: int = 0
    error: str | None = None


def redact_url(url: str) -> str:
    """``scheme://host[:port]/...``: what a log line may say of a webhook URL (paths and queries of
    webhooks often are the secret)."""
    if not url:
        return "(no webhook)"
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}" + ("/..." if parts.path.strip("/") or parts.query else "")


class WebhookSender(threading.Thread):
    """One daemon thread POSTing queued JSON documents to ``url`` (None: reports ``no_webhook`` for each,
    so the callbacks still run off the caller's thread)."""

    def __init__(self, url: str | None, timeout: float = TIMEOUT_SECONDS, attempts: int = ATTEMPTS,
                 backoff: float = BACKOFF_SECONDS, capacity: int = QUEUE_SIZE, name: str = "xray-webhook"):
        super().__init__(name=name, daemon=True)
        self.url, self.timeout, self.attempts, self.backoff = url or None, timeout, max(1, attempts), backoff
        self._queue: queue.Queue[tuple[dict, Callable[[Delivery], None]]] = queue.Queue(maxsize=capacity)
        self._closing = threading.Event()
        self._abandon = threading.Event()  # closing took too long: report what is left without sending

    def submit(self, document: dict[str, Any], done: Callable[[Delivery], None]) -> bool:
        """Queue a document; ``done(delivery)`` is called on the sender thread. False (nothing queued)
        when the queue is full or the sender is closing."""
        if self._closing.is_set():
            return False
        try:
            self._queue.put_nowait((document, done))
        except queue.Full:
            return False
        return True

    def run(self) -> None:
        while True:
            try:
                document, done = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            if self._abandon.is_set():
                delivery = Delivery("undelivered", 0, "the service stopped before it was sent")
            else:
                delivery = self.deliver(document) if self.url else Delivery("no_webhook")
            try:
                done(delivery)
            except Exception:  # a callback's failure must not end the sender
                log.exception("alerts: recording a webhook delivery failed")

    def deliver(self, document: dict[str, Any]) -> Delivery:
        """POST with retries (on a network error, a timeout, 5xx, 408, 425, 429) and exponential backoff."""
        body = json.dumps(document, default=str).encode()
        error = ""
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(self.url or "", data=body, method="POST", headers={
                "Content-Type": "application/json", "User-Agent": "xray-lakehouse"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # http(s) only (config)
                    response.read()
                return Delivery("delivered", attempt)
            except urllib.error.HTTPError as refused:
                error = f"HTTP {refused.code}"
                if refused.code < 500 and refused.code not in _RETRIED_STATUSES:
                    return Delivery("failed", attempt, error)
            except Exception as failure:  # network errors, timeouts, malformed answers: retried
                reason = getattr(failure, "reason", failure)
                error = "timed out" if isinstance(reason, TimeoutError) else type(reason).__name__ + (
                    f": {reason.strerror}" if getattr(reason, "strerror", None) else "")
            if attempt < self.attempts and self._abandon.wait(self.backoff * 2 ** (attempt - 1)):
                return Delivery("undelivered", attempt, f"{error}; the service stopped before a retry")
        return Delivery("failed", self.attempts, error)

    def close(self, timeout: float) -> None:
        """Stop taking documents, send what is queued for up to ``timeout`` seconds, then report the rest
        ``undelivered`` (a POST in flight ends within its own timeout)."""
        self._closing.set()
        if not self.is_alive():
            return
        self.join(timeout)
        if self.is_alive():
            self._abandon.set()
            self.join(self.timeout + 10.0)
