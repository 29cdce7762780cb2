"""The one stop-on-signal handler of the services (stream, serve, retrain --every): real signals."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from streaming.core.signals import StopEvent, stop_on_signals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_sets_the_event_with_its_number_and_a_second_aborts(signum):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    event, said = StopEvent(), []
    restore = stop_on_signals(event, said.append)
    try:
        os.kill(os.getpid(), signum)
        assert event.wait(5) and event.signum == signum and said == [signum]
        with pytest.raises(KeyboardInterrupt):  # a second one while stopping: abort now
            os.kill(os.getpid(), signum)
            event.wait(5)  # the handler runs here, between bytecodes
            threading.Event().wait(1)
    finally:
        restore()
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_outside_the_main_thread_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    restores = []
    worker = threading.Thread(target=lambda: restores.append(stop_on_signals(threading.Event())))
    worker.start()
    worker.join()
    assert signal.getsignal(signal.SIGTERM) == before
    restores[0]()  # a no-op
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_signal_while_the_event_is_being_waited_on_never_deadlocks(tmp_path):
    """A signal that interrupts the main thread while it holds the event's lock (inside `Event.wait`): the
    stop must still be set, and a watchdog thread waiting on the event must wake. Setting the event from the
    signal handler itself deadlocked here (the stream said "stopping" and hung, its watchdog silent). Run in
    a child process: a deadlock there is a timeout, not a hung suite."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, signal, threading
        from streaming.core.signals import StopEvent, stop_on_signals
        event = StopEvent()
        restore = stop_on_signals(event)
        woke = threading.Event()
        watchdog = threading.Thread(target=lambda: event.wait() and woke.set())
        watchdog.start()
        with event._cond:                       # as inside Event.wait, at the moment the signal comes
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):               # bytecodes: the handler runs here, the lock held
                pass
        assert event.wait(10) and event.signum == signal.SIGTERM
        assert woke.wait(10)
        restore()
        print("stopped")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0 and done.stdout.strip() == "stopped", done.stderr[-2000:]
