"""The stream's stop: one budget for what it waits for, a bounded query stop, and the watchdog that ends a
stop stuck past its deadline (with what it waited for and every thread's stack)."""

from __future__ import annotations

import logging
import signal
import threading

import pytest

from streaming.pipeline import background
from streaming.pipeline import service as service_module
from streaming.pipeline.stopping import StopBudget, StopEvent, StopWatchdog, waiting_for


def test_a_budget_gives_what_is_left_capped():
    budget = StopBudget(100.0)
    assert 99.0 < budget.remaining() <= 100.0
    assert budget.remaining(5.0) == 5.0
    assert not budget.spent
    spent = StopBudget(0.0)
    assert spent.remaining() == 0.0 and spent.remaining(10.0) == 0.0
    assert spent.spent


def _watchdog(event: StopEvent, **timing) -> tuple[StopWatchdog, list[int], list[str]]:
    exits: list[int] = []
    ended: list[str] = []
    dog = StopWatchdog(event, exit_process=exits.append, end_jvm=lambda: ended.append("jvm"), **timing)
    return dog, exits, ended


def test_a_stop_stuck_past_its_deadline_is_reported_with_stacks_and_ends_the_process(caplog, capfd):
    event = StopEvent()
    dog, exits, ended = _watchdog(event, report_after=0.2, deadline=0.5)
    with caplog.at_level(logging.INFO, logger="streaming.pipeline.stopping"):
        dog.start()
        waiting_for("the bronze query to stop")
        event.signum = signal.SIGTERM
        event.set()
        dog.join(timeout=30)
    assert not dog.is_alive()
    assert exits == [143] and ended == ["jvm"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("still stopping after 0 s: waiting for the bronze query to stop" in m for m in messages), messages
    error = next(r for r in caplog.records if r.levelno == logging.ERROR).getMessage()
    assert "waiting for the bronze query to stop" in error and "exiting now with code 143" in error
    assert "replays the unfinished micro-batch" in error
    # faulthandler's dump of every thread: the watchdog's own frame and the test's, which waited for it.
    stacks = capfd.readouterr().err
    assert "Current thread 0x" in stacks and "in give_up" in stacks, stacks
    assert "test_stopping.py" in stacks, stacks


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (None, 1)], ids=["Ctrl-C", "no signal"])
def test_the_forced_exit_code_follows_what_asked_for_the_stop(signum, code):
    event = StopEvent()
    dog, exits, _ = _watchdog(event, report_after=0.0, deadline=0.1)
    event.signum = signum
    event.set()
    dog.start()
    dog.join(timeout=30)
    assert exits == [code]


def test_a_stop_that_ends_in_time_is_neither_reported_nor_forced(caplog):
    event = StopEvent()
    dog, exits, ended = _watchdog(event, report_after=5.0, deadline=10.0)
    with caplog.at_level(logging.INFO, logger="streaming.pipeline.stopping"):
        dog.start()
        event.set()
        dog.finish()
        dog.join(timeout=30)
    assert not dog.is_alive() and exits == [] and ended == []
    assert not caplog.records


def test_a_watchdog_without_a_stop_ends_with_the_stream():
    dog, exits, _ = _watchdog(StopEvent(), report_after=0.0, deadline=0.0)
    dog.start()
    dog.finish()
    dog.join(timeout=30)
    assert not dog.is_alive() and exits == []


def test_background_threads_are_joined_within_the_budget_not_until_they_end():
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="xray-test-stuck", daemon=True)
    stuck.start()
    try:
        background.join_within(StopBudget(0.2), stuck, [], None, None)
        assert stuck.is_alive()  # the join gave up when the budget was spent
    finally:
        release.set()
        stuck.join()


def test_a_query_whose_batch_does_not_end_is_stopped_within_the_budget(spark, config, caplog, monkeypatch):
    """A real streaming query whose micro-batch blocks: the stop waits for it while the budget allows, then
    Spark's stop gives up after spark.sql.streaming.stopTimeout and the stop goes on with one warning."""
    from streaming.lakehouse.engine import Lakehouse

    monkeypatch.setattr(service_module, "QUERY_STOP_SECONDS", 1.0)
    entered, release = threading.Event(), threading.Event()

    def blocking_batch(batch, batch_id):
        entered.set()
        release.wait(120)

    query = (spark.readStream.format("rate").option("rowsPerSecond", 1).load().writeStream
             .foreachBatch(blocking_batch).option("checkpointLocation", str(config.root / "ckpt"))
             .trigger(processingTime="0.2 seconds").start())
    service = service_module.StreamService(Lakehouse(spark, config), ["bronze"])
    service.queries["bronze"] = query
    service.budget = StopBudget(2.5)
    try:
        service_module.bound_query_stops(spark)
        assert entered.wait(120), "the rate source's first batch never started"
        with caplog.at_level(logging.INFO, logger="streaming.pipeline.service"):
            service.stop()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("bronze: the query did not stop within 1 s" in w and "next start" in w for w in warnings), \
            warnings
    finally:
        release.set()
        query.stop()
        query.awaitTermination(60)
        spark.conf.unset("spark.sql.streaming.stopTimeout")
    assert not query.isActive
