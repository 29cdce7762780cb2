"""How a long-running command asks itself to stop: SIGINT and SIGTERM set an event, the command ends at its
next safe point (a micro-batch boundary, between retrain cycles, the page server's loop), and a second
signal while the stop is under way aborts (``KeyboardInterrupt``, as Python's own Ctrl-C).

One place for `xray stream` (``streaming.pipeline.stopping``), `xray serve` and `xray retrain --every`: each
installs `stop_on_signals` and reads `StopEvent.signum` to pick its exit code (SIGTERM 0, Ctrl-C 130,
``streaming.cli.exits``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

__all__ = ["STOP_SIGNALS", "StopEvent", "stop_on_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopEvent(threading.Event):
    """A stop request that remembers the signal asking for it (None: a timeout, the end of --once, code),
    so the command can exit with the code that signal calls for."""

    signum: int | None = None


def stop_on_signals(event: threading.Event, announce: Callable[[int], None] | None = None) -> Callable[[], None]:
    """Until the returned function is called, SIGINT and SIGTERM set ``event`` (its ``signum`` too, for a
    `StopEvent`) after ``announce(signum)``; one arriving when ``event`` is already set aborts at once.
    Returns the function restoring the previous handlers. Outside the main thread (a caller embedding the
    command) nothing is installed: Python delivers signals to the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handle(signum: int, frame: object) -> None:
        if event.is_set():
            signal.default_int_handler(signum, frame)
        if announce is not None:
            announce(signum)
        if isinstance(event, StopEvent):
            event.signum = signum
        event.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
