"""The one stop-on-signal handler of the services (stream, serve, retrain --every): real signals."""

from __future__ import annotations

import os
import signal
import threading

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
