"""How a long-running command asks itself to stop: SIGINT and SIGTERM set an event, the command ends at its
next safe point (a micro-batch boundary, between retrain cycles, the page server's loop), and a second
signal while the stop is under way aborts (``KeyboardInterrupt``, as Python's own Ctrl-C).

One place for `xray stream` (``streaming.pipeline.stopping``), `xray serve` and `xray retrain --every`: each
installs `stop_on_signals` and reads `StopEvent.signum` to pick its exit code (SIGTERM 0, Ctrl-C 130,
``streaming.cli.exits``).
"""

from __future__ import annotations

import os
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
    `StopEvent`) after ``announce(signum)``; one arriving when a stop was already asked aborts at once.
    Returns the function restoring the previous handlers. Outside the main thread (a caller embedding the
    command) nothing is installed: Python delivers signals to the main thread only.

    The handler itself takes no lock: it records the signal and writes its number into a pipe, and a relay
    thread announces it and sets the event. `Event.set` takes the event's lock, which the main thread holds
    for a moment inside `Event.wait`; a signal arriving then, with the event set from the handler, deadlocked
    the main thread and every thread waiting on the event (the stop watchdog included): a stream that said
    "stopping" and then hung without a further line."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    read_end, write_end = os.pipe()
    asked: list[int] = []

    def relay() -> None:
        while (data := os.read(read_end, 1)) and data != _CLOSE:
            signum = data[0]
            if announce is not None:
                announce(signum)
            event.set()
        os.close(read_end)

    def handle(signum: int, frame: object) -> None:
        if asked or event.is_set():
            signal.default_int_handler(signum, frame)
        asked.append(signum)
        if isinstance(event, StopEvent):
            event.signum = signum  # a plain attribute: no lock
        os.write(write_end, bytes([signum]))

    threading.Thread(target=relay, name="xray-signal-relay", daemon=True).start()
    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.write(write_end, _CLOSE)
        os.close(write_end)

    return restore


_CLOSE = b"\0"  # no signal has number 0: the relay's end
