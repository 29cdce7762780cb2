"""`xray forget` without the stream (streaming/ops/forget.py): the patient as given, the wait for a running
stream's planned batches, and the report that names only keyed hashes. The end-to-end erasure with a stream,
a model and a byte search over the lakehouse is tests/e2e/test_forget.py."""

from __future__ import annotations

import threading
import time

import pytest

from streaming.core.errors import ErasureError
from streaming.core.locks import stream_lock
from streaming.core.pseudonym import patient_ref
from streaming.ops.forget import forget_patient, patient_key_ref, wait_for_planned_batches


def test_the_patient_is_a_raw_identifier_or_its_keyed_hash(config):
    ref = patient_ref("person7", config.patient_salt())
    assert patient_key_ref(config, "person7") == ref
    assert patient_key_ref(config, f" {ref.upper()} ") == ref
    with pytest.raises(ErasureError, match="empty"):
        patient_key_ref(config, "  ")


def test_without_yes_nothing_is_written(config):
    report = forget_patient(config, "person7")
    assert not report.erased and report.images == 0
    assert "run again with --yes" in report.lines()[0] and "person7" not in " ".join(report.lines())
    assert not config.table_path("forget_list").exists()


def batch(config, query: str, folder: str, number: int) -> None:
    path = config.checkpoint_path(query) / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / str(number)).write_text("v1\n{}\n")


def test_a_running_stream_s_planned_batch_is_waited_for(config):
    wait_for_planned_batches(config, timeout=0.1)  # no stream, no checkpoint: nothing to wait for
    batch(config, "bronze", "offsets", 3)
    batch(config, "bronze", "commits", 2)
    wait_for_planned_batches(config, timeout=0.1)  # batch 3 was planned by a stream that is gone: replayed later

    held, release = threading.Event(), threading.Event()

    def stream() -> None:
        with stream_lock(config.root):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(ErasureError, match="planned batch of bronze.*run the same 'xray forget' again"):
            wait_for_planned_batches(config, timeout=0.3)
        threading.Timer(0.3, batch, (config, "bronze", "commits", 3)).start()
        started = time.monotonic()
        wait_for_planned_batches(config, timeout=20)  # returns once batch 3 is committed
        assert (config.checkpoint_path("bronze") / "commits" / "3").exists() and time.monotonic() - started < 20
    finally:
        release.set()
        thread.join()
    with stream_lock(config.root):  # the probe never kept the lock: a stream starts as before
        pass
