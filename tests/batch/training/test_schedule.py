"""When the periodic retrain is due, without Spark (batch/training/schedule.py): durations, the rule, and the
lakehouse's memory of the last cycle on real Delta tables."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from batch.training import schedule
from batch.training.schedule import LabelCounts, LastRun, RetrainPolicy, decide, parse_duration
from streaming.core.errors import ConfigError
from streaming.lakehouse.direct import append_rows

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
HOUR = 3600.0


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400),
                                               ("1h30m", 5400), ("1.5h", 5400), (" 2S ", 2)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "6", "6x", "h", "0s", "-1h", "1h 30", "1h-30m"])
def test_a_bad_duration_is_a_config_error(text):
    with pytest.raises(ConfigError, match="invalid duration .*90s, 30m, 6h, 1d"):
        parse_duration(text)


def run(hours_ago: float, outcome: str = "ok", labelled: int = 100, feedback: int = 0) -> LastRun:
    return LastRun(NOW - dt.timedelta(hours=hours_ago), outcome, "interval", labelled, feedback)


def test_the_interval_counts_from_the_last_cycle_and_a_restart_honours_it():
    every_6h = RetrainPolicy(interval_seconds=6 * HOUR, check_seconds=300)
    counts = LabelCounts(100, 0)
    waiting = decide(every_6h, run(2), counts, NOW)
    assert not waiting.due and waiting.wait_seconds == 4 * HOUR
    assert "next cycle in 4h 0m (at 2024-05-01T16:00:00+00:00" in waiting.reason
    assert decide(every_6h, run(6), counts, NOW).trigger == "interval"
    assert decide(every_6h, None, counts, NOW).trigger == "interval"  # nothing recorded: at once
    assert decide(every_6h, run(7, outcome="error"), counts, NOW).due  # a failure waits one interval, no more
    assert not decide(every_6h, run(1, outcome="error"), counts, NOW).due
    # With the label trigger on too, the wait is one check: labels may make it due sooner.
    both = RetrainPolicy(interval_seconds=6 * HOUR, min_new_labels=50, check_seconds=300)
    assert decide(both, run(2), counts, NOW).wait_seconds == 300


def test_enough_new_labels_or_feedback_make_it_due():
    labels = RetrainPolicy(min_new_labels=50, check_seconds=60)
    assert not decide(labels, run(0.1, labelled=100), LabelCounts(149, 0), NOW).due
    assert decide(labels, run(0.1, labelled=100), LabelCounts(130, 20), NOW).trigger == "new_labels"
    assert decide(labels, None, LabelCounts(50, 0), NOW).due  # no cycle yet: every label is new
    # Rows erased meanwhile do not cancel new feedback out.
    assert decide(labels, run(0.1, labelled=100), LabelCounts(40, 50), NOW).due
    waiting = decide(labels, run(0.1, labelled=100), LabelCounts(120, 0), NOW)
    assert (waiting.wait_seconds, waiting.reason) == (60, "waiting for 50 new labels or feedback rows (20 so far)")


def test_nothing_to_learn_from_and_too_few_labels_wait_for_new_labels():
    every_hour = RetrainPolicy(interval_seconds=HOUR, check_seconds=0)
    empty = decide(every_hour, None, LabelCounts(0, 0), NOW)
    assert not empty.due and empty.wait_seconds == schedule.MIN_WAIT_SECONDS  # a 0 check never spins
    assert decide(every_hour, None, LabelCounts(0, 3), NOW).due  # feedback alone labels silver images
    too_few = run(5, outcome="insufficient_data", labelled=12)
    assert not decide(every_hour, too_few, LabelCounts(12, 0), NOW).due  # the same data would fail again
    assert decide(every_hour, too_few, LabelCounts(13, 0), NOW).trigger == "new_labels"
    assert not decide(RetrainPolicy(), None, LabelCounts(100, 0), NOW).due  # both triggers off


def test_the_state_lives_in_the_lakehouse(config):
    policy = RetrainPolicy(interval_seconds=6 * HOUR)
    assert schedule.last_run(config) is None and schedule.label_counts(config) == LabelCounts(0, 0)
    append_rows(config, "silver_xray_metadata", [{"image_id": str(i), "label": i % 2 if i < 5 else None}
                                                 for i in range(7)])
    assert schedule.label_counts(config) == LabelCounts(5, 0)  # no feedback table yet: 0
    write_deltalake(str(config.table_path(schedule.FEEDBACK_TABLE)), pa.table({"image_id": ["1", "2", "3"]}))
    assert schedule.label_counts(config) == LabelCounts(5, 3)
    assert schedule.due(config, NOW, policy).trigger == "interval"

    for hours_ago, outcome in ((8, "ok"), (2, "error"), (5, "ok")):  # rows in any order: the latest counts
        finished = NOW - dt.timedelta(hours=hours_ago)
        schedule.record_run(config, {"trigger": "interval", "started_time": finished, "finished_time": finished,
                                     "outcome": outcome, "labelled_rows": 5, "feedback_rows": 3})
    assert schedule.last_run(config) == LastRun(NOW - dt.timedelta(hours=2), "error", "interval", 5, 3)
    decision = schedule.due(config, NOW, policy)
    assert not decision.due and decision.wait_seconds == 4 * HOUR
