"""How ``xray stream`` stops: a signal asks for a stop at the next micro-batch boundary; one budget bounds
everything the stop waits for; a watchdog ends the process if the stop still has not ended after it.

The stop waits for, in order: the running micro-batch, each query's own stop, the background threads (the
periodic maintenance pass, the retrain cycle, the inbox watcher, the alert monitor and its queued alerts).
All of them share `STOP_BUDGET_SECONDS` from the stop request (`StopBudget`), so the stop as a whole is
bounded however many of them are slow. A wait that no timeout reaches (a JVM call that never returns) is
what `StopWatchdog` is for: `STOP_REPORT_SECONDS` after the request it says what the stop waits for; past
`STOP_DEADLINE_SECONDS` it prints every thread's stack, ends the JVM and exits (128 + the signal). Nothing
is lost that way: the next start replays the unfinished micro-batch from its checkpoint, exactly once.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from streaming.core.signals import StopEvent, stop_on_signals

__all__ = [
    "STOP_BUDGET_SECONDS", "STOP_DEADLINE_SECONDS", "STOP_REPORT_SECONDS", "StopBudget", "StopEvent",
    "StopWatchdog", "install_stop_signals", "waiting_for",
]

log = logging.getLogger(__name__)

# Under a service manager's usual stop timeout (systemd: 90 s, then SIGKILL) with room for the JVM's exit.
STOP_BUDGET_SECONDS = 75.0
STOP_REPORT_SECONDS = 30.0
STOP_DEADLINE_SECONDS = STOP_BUDGET_SECONDS + 15.0

_phase = "the stream's start"  # what the stop waits for now: one process, one stream


def waiting_for(what: str) -> None:
    """Name what the stop waits for now (said by `StopWatchdog` if the stop is slow)."""
    global _phase
    _phase = what


def current_wait() -> str:
    return _phase


class StopBudget:
    """The time left of one stop, shared by everything it waits for."""

    def __init__(self, seconds: float = STOP_BUDGET_SECONDS):
        self.ends = time.monotonic() + seconds

    def remaining(self, cap: float | None = None) -> float:
        left = max(0.0, self.ends - time.monotonic())
        return left if cap is None else min(cap, left)

    @property
    def spent(self) -> bool:
        return time.monotonic() >= self.ends


def install_stop_signals(stop_event: threading.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM ask the service to stop at the next batch boundary (a second Ctrl-C aborts)."""
    return stop_on_signals(stop_event, lambda signum: log.info(
        "stopping at the next micro-batch boundary (signal %d)", signum))


class StopWatchdog(threading.Thread):
    """Started with the stream (not from a signal handler: starting a thread there can deadlock on the
    interpreter's thread lock); counts from the stop request until `finish`."""

    def __init__(self, stop_event: StopEvent, report_after: float = STOP_REPORT_SECONDS,
                 deadline: float = STOP_DEADLINE_SECONDS, exit_process: Callable[[int], None] = os._exit,
                 end_jvm: Callable[[], None] | None = None):
        super().__init__(name="xray-stop-watchdog", daemon=True)
        self.stop_event, self.report_after, self.deadline = stop_event, report_after, deadline
        self.finished = threading.Event()
        self.exit_process = exit_process
        self.end_jvm = end_jvm or end_spark_jvm

    def finish(self) -> None:
        self.finished.set()

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            if self.finished.is_set():
                return
        if self.finished.wait(self.report_after):
            return
        log.warning("still stopping after %.0f s: waiting for %s (the stop ends within %.0f s of the request)",
                    self.report_after, current_wait(), self.deadline)
        if self.finished.wait(max(0.0, self.deadline - self.report_after)):
            return
        self.give_up()

    def give_up(self) -> None:
        signum = self.stop_event.signum
        code = 128 + signum if signum else 1
        log.error("the stop did not end within %.0f s (waiting for %s); exiting now with code %d. Nothing is "
                  "lost: the next start replays the unfinished micro-batch from its checkpoint. The threads' "
                  "stacks follow, for a bug report.", self.deadline, current_wait(), code)
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        self.end_jvm()
        self.exit_process(code)


def end_spark_jvm() -> None:
    """The JVM pyspark started exits when this process's end closes its stdin; a JVM stuck in its shutdown
    would still hold our output: end it first (SIGKILL: it ignores SIGTERM)."""
    gateway = getattr(sys.modules.get("pyspark"), "SparkContext", None)
    process = getattr(getattr(gateway, "_gateway", None), "proc", None)
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(Exception):
        process.kill()  # it ignores SIGTERM (`streaming.lakehouse.session._launch_jvm_apart`)
        process.wait(5)
