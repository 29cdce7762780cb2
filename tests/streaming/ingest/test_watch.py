"""The inbox watcher: files move into landing only when whole, with real watchdog observers."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from fake_kaggle import tiny_jpeg, tiny_png
from PIL import Image

from streaming.core.errors import IngestError
from streaming.ingest.watch import InboxWatcher, is_complete_image, watch_inbox

STABLE = 0.3


@pytest.fixture
def fast_config(config):
    return config.with_overrides(watch_stable_seconds=STABLE)


@contextlib.contextmanager
def watching(config, inbox: Path, **options):
    """Run `watch_inbox` in a thread, as the streaming service does; stop it on exit."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            watch_inbox(config, inbox, stop_event=stop, **options)
        except BaseException as error:  # surfaced in the test thread
            errors.append(error)

    thread = threading.Thread(target=run, name="inbox-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "watch_inbox stops when its stop_event is set"
    assert not errors, errors


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def larger_jpeg() -> bytes:
    image = Image.effect_noise((256, 256), 60)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_is_complete_image(tmp_path):
    cases = {
        "whole.jpeg": tiny_jpeg(1),
        "padded.jpeg": tiny_jpeg(1) + b"\x00" * 70_000,
        "whole.png": tiny_png(1),
    }
    incomplete = {
        "truncated.jpeg": tiny_jpeg(1)[:-50],
        "truncated.png": tiny_png(1)[:-20],
        "empty.jpeg": b"",
        "noise.jpeg": b"hello world\xff\xd9",
        "zeros.jpeg": b"\xff\xd8\xff" + b"\x00" * 10,
    }
    for name, data in {**cases, **incomplete}.items():
        (tmp_path / name).write_bytes(data)
    assert all(is_complete_image(tmp_path / name) for name in cases)
    assert not any(is_complete_image(tmp_path / name) for name in incomplete)
    assert not is_complete_image(tmp_path / "missing.jpeg")


@pytest.mark.parametrize("poll", [False, True], ids=["native", "polling"])
def test_slow_copy_moves_only_when_finished(fast_config, tmp_path, poll):
    inbox = tmp_path / "inbox"
    (inbox / "train" / "NORMAL").mkdir(parents=True)
    data = larger_jpeg()
    source = inbox / "train" / "NORMAL" / "IM-0042-0001.jpeg"
    target = fast_config.landing_dir / "train" / "NORMAL" / "IM-0042-0001.jpeg"
    seen_mid_copy: list[int] = []

    def slow_copy() -> None:
        chunks = [data[i:i + len(data) // 4 + 1] for i in range(0, len(data), len(data) // 4 + 1)]
        with open(source, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                handle.flush()
                # Pauses longer than the stable time: only the end-of-image check holds the file back.
                time.sleep(STABLE * 1.6)
                if target.exists():
                    seen_mid_copy.append(handle.tell())

    with watching(fast_config, inbox, poll=poll):
        writer = threading.Thread(target=slow_copy)
        writer.start()
        writer.join()
        assert wait_for(target.exists), "the finished copy reaches landing"
    assert seen_mid_copy == [] or seen_mid_copy == [len(data)], "never in landing while being written"
    assert target.read_bytes() == data
    assert not source.exists()
    assert not [p for p in fast_config.landing_dir.rglob(".*")]


def test_temporary_and_hidden_names_are_ignored(fast_config, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / ".hidden").mkdir(parents=True)
    names = [".IM-0001-0001.jpeg", "IM-0002-0001.jpeg.tmp", "IM-0003-0001.jpeg._COPYING_",
             "_IM-0004-0001.jpeg", "IM-0005-0001.jpeg.part", ".hidden/IM-0006-0001.jpeg"]
    ignored = [inbox / name for name in names]
    with watching(fast_config, inbox):
        for index, path in enumerate(ignored):
            path.write_bytes(tiny_jpeg(index))
        time.sleep(STABLE * 5)
        assert not fast_config.landing_dir.exists() or not any(fast_config.landing_dir.rglob("*"))
        assert all(path.exists() for path in ignored)
        # The copying tool renames its temporary file when done: now it is a real arrival.
        ignored[1].rename(inbox / "IM-0002-0001.jpeg")
        assert wait_for((fast_config.landing_dir / "IM-0002-0001.jpeg").exists)
    assert sorted(p.name for p in fast_config.landing_dir.rglob("*")) == ["IM-0002-0001.jpeg"]


def test_truncated_jpeg_is_reported_once_and_not_moved(fast_config, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="streaming.ingest.watch")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    broken = inbox / "person9_virus_21.jpeg"
    broken.write_bytes(tiny_jpeg(3)[:-100])

    def reports() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "not a complete JPEG/PNG" in r.getMessage()]

    with watching(fast_config, inbox, incomplete_factor=3):
        assert wait_for(lambda: len(reports()) >= 2, timeout=6), "an image that never completes is reported"
        time.sleep(STABLE * 4)
    # Reported once; the file name (a patient identifier) only at DEBUG.
    assert sorted(r.levelno for r in reports()) == [logging.DEBUG, logging.WARNING]
    assert [r.levelno for r in reports() if "person9" in r.getMessage()] == [logging.DEBUG]
    assert broken.exists()
    assert not (fast_config.landing_dir / "person9_virus_21.jpeg").exists()


def test_files_present_at_start_are_moved(fast_config, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "test" / "PNEUMONIA").mkdir(parents=True)
    jpeg, png = tiny_jpeg(5), tiny_png(6)
    (inbox / "test" / "PNEUMONIA" / "person3_bacteria_10.jpeg").write_bytes(jpeg)
    (inbox / "scan.png").write_bytes(png)
    (inbox / "notes.txt").write_text("left alone")
    os.utime(inbox / "scan.png", (1_500_000_000, 1_500_000_000))  # copied with its 2017 mtime kept
    started = time.monotonic()
    watch_inbox(fast_config, inbox, timeout=STABLE * 4, poll=True)
    assert time.monotonic() - started < STABLE * 4 + 3, "a timeout stops the watcher"
    assert (fast_config.landing_dir / "test" / "PNEUMONIA" / "person3_bacteria_10.jpeg").read_bytes() == jpeg
    assert (fast_config.landing_dir / "scan.png").read_bytes() == png
    assert (fast_config.landing_dir / "scan.png").stat().st_mtime > started - 5, "landing files look new"
    assert sorted(p.name for p in inbox.rglob("*") if p.is_file()) == ["notes.txt"]


def test_inbox_must_not_overlap_landing(fast_config):
    with pytest.raises(IngestError, match="overlap"):
        InboxWatcher(fast_config, fast_config.landing_dir / "inbox")
    with pytest.raises(IngestError, match="overlap"):
        InboxWatcher(fast_config, fast_config.root)
