"""Progress: a tqdm bar on a terminal, a bounded number of INFO lines elsewhere."""

from __future__ import annotations

import io
import logging
import os
import pty

from streaming.core.progress import attached_to_terminal, progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_lines_are_periodic_and_bounded(caplog):
    clock = FakeClock()
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="streaming.core.progress"):
        with progress(1000, "stage", stream=stream, interval=5.0, clock=clock) as bar:
            assert not bar.terminal
            for _ in range(1000):  # 1,000 updates over 30 s of (fake) time
                clock.now += 0.03
                bar.update(1)
    lines = [r.getMessage() for r in caplog.records]
    # One line per 5 s at most (30 s -> 6), plus the closing line; nothing drawn on the stream.
    assert 5 <= len(lines) <= 7, lines
    assert lines[0].startswith("stage: ") and "of 1,000 files" in lines[0] and "%" in lines[0]
    assert lines[-1] == "stage: 1,000 of 1,000 files (100%), 30 s (done)"
    assert stream.getvalue() == ""


def test_short_work_without_a_terminal_writes_no_line(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="streaming.core.progress"):
        with progress(50, "stage", terminal=False, clock=clock) as bar:
            for _ in range(50):
                clock.now += 0.01
                bar.update(1)
    assert caplog.records == []


def test_steps_and_bytes_are_described():
    clock = FakeClock()
    bar = progress(4, "retrain", unit="step", terminal=False, clock=clock)
    clock.now = 12
    bar.update(1, step="fit")
    assert bar.describe() == "retrain: 1 of 4 steps (25%) [fit], 12 s"
    download = progress(None, "download x.zip", unit="B", terminal=False, clock=clock)
    download.update(3 * 1024 * 1024)
    assert download.describe().startswith("download x.zip: 3.0 MiB, ")


def test_a_terminal_gets_a_tqdm_bar(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="streaming.core.progress"):
        with progress(10, "stage", terminal=True, stream=stream) as bar:
            for _ in range(10):
                bar.update(1)
    drawn = stream.getvalue()
    assert drawn.startswith("\rstage:") and "/10 [" in drawn and "file/s" in drawn  # a tqdm bar, redrawn in place
    assert caplog.records == []  # no log lines on a terminal


def test_the_decision_follows_the_stream():
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert attached_to_terminal(terminal)
            with progress(3, "stage", stream=terminal) as bar:
                assert bar.terminal
                bar.update(3)
    finally:
        os.close(leader)
        os.close(follower)
    assert not attached_to_terminal(io.StringIO())
    assert not attached_to_terminal(object())  # type: ignore[arg-type]


def _wait_for(condition, seconds: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_long_step_without_a_terminal_still_gets_its_periodic_line(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="streaming.core.progress"):
        with progress(4, "retrain", unit="step", terminal=False, clock=clock, tick=0.01) as bar:
            bar.update(0, step="fit")
            clock.now = 6.0  # six seconds into one step: no update came
            assert _wait_for(lambda: len(caplog.records) >= 1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "retrain: 0 of 4 steps (0%) [fit], 6 s" and lines[-1].endswith("(done)")


def test_a_long_step_on_a_terminal_redraws_the_bar_with_its_clock_running():
    stream = io.StringIO()
    with progress(None, "retrain", unit="step", terminal=True, stream=stream, tick=0.05) as bar:
        bar.update(0, step="starting Spark")
        # No update for a second and more: the ticker redraws the bar, whose elapsed time moves on.
        assert _wait_for(lambda: "00:01" in stream.getvalue()), stream.getvalue()
    assert "starting Spark" in stream.getvalue()
