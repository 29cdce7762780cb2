"""The webhook sender (streaming/core/webhook.py) against a real HTTP server on loopback: retries, timeouts
that never hold the caller, the body, a full queue, closing, and URLs kept out of logs."""

from __future__ import annotations

import queue

from loopback import Webhook

from streaming.core.webhook import Delivery, WebhookSender, redact_url


def collect() -> tuple[queue.Queue, object]:
    outcomes: queue.Queue[Delivery] = queue.Queue()
    return outcomes, outcomes.put


def test_a_500_is_retried_and_the_json_arrives_as_sent():
    document = {"kind": "drift", "details": {"psi": {"mean_intensity": 7.2}}, "time": "2024-05-01T08:00:00Z"}
    with Webhook(statuses=[500, 200]) as hook:
        sender = WebhookSender(hook.url, backoff=0.01)
        sender.start()
        outcomes, done = collect()
        assert sender.submit(document, done)
        delivery = outcomes.get(timeout=30)
        sender.close(5)
    assert delivery == Delivery("delivered", 2)
    assert hook.bodies == [document, document]
    assert hook.headers[0]["Content-Type"] == "application/json"


def test_a_refusal_is_not_retried():
    with Webhook(statuses=[404]) as hook:
        sender = WebhookSender(hook.url, backoff=0.01)
        sender.start()
        outcomes, done = collect()
        sender.submit({"kind": "drift"}, done)
        delivery = outcomes.get(timeout=30)
        sender.close(5)
    assert delivery == Delivery("failed", 1, "HTTP 404") and hook.requests == 1


def test_a_webhook_that_never_answers_times_out_on_the_sender_not_the_caller():
    """The server holds every request until the test ends: the caller's submits return at once (no outcome
    yet), and the sender gives up by its own timeout after its attempts."""
    with Webhook(hold=True) as hook:
        sender = WebhookSender(hook.url, timeout=0.5, attempts=2, backoff=0.01)
        sender.start()
        outcomes, done = collect()
        assert sender.submit({"n": 1}, done)
        assert sender.submit({"n": 2}, done)  # while the first is in flight
        assert outcomes.empty()  # the caller did not wait for any answer
        first, second = outcomes.get(timeout=30), outcomes.get(timeout=30)
        assert not hook.release.is_set()  # no answer was ever given: the sender timed out
        sender.close(5)
    assert first == second == Delivery("failed", 2, "timed out")
    assert hook.requests == 4


def test_a_full_queue_refuses_and_closing_reports_what_was_not_sent():
    with Webhook(hold=True) as hook:
        sender = WebhookSender(hook.url, timeout=1.0, attempts=3, backoff=0.01, capacity=1)
        sender.start()
        outcomes, done = collect()
        assert sender.submit({"n": 1}, done)
        assert hook.wait_for(1)  # the sender took the first: the queue is empty again
        assert sender.submit({"n": 2}, done)
        assert not sender.submit({"n": 3}, done)  # full
        sender.close(0.2)  # the held POST times out; nothing more is tried
        assert not sender.is_alive()
        assert not sender.submit({"n": 4}, done)  # closed
    statuses = [outcomes.get_nowait() for _ in range(2)]
    assert [d.status for d in statuses] == ["undelivered", "undelivered"]
    assert statuses[0].attempts == 1 and statuses[1].attempts == 0
    assert hook.requests == 1


def test_without_a_url_each_document_is_reported_no_webhook():
    sender = WebhookSender(None)
    sender.start()
    outcomes, done = collect()
    sender.submit({"kind": "drift"}, done)
    assert outcomes.get(timeout=30) == Delivery("no_webhook")
    sender.close(5)


def test_only_scheme_host_and_port_of_a_url_are_shown():
    assert redact_url("https://user:pw@hooks.example.com:8443/services/T1/B2/secret?token=x") \
        == "https://hooks.example.com:8443/..."
    assert redact_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"
