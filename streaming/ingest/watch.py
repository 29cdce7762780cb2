"""A drop zone: files copied into an inbox folder move into landing once they are complete.

People and other systems copy X-rays into the inbox with whatever tool they have (``cp``, ``scp``, a
network share, a PACS export). The landing folder must only ever see whole files, so a file moves only
when (1) it has been closed after writing (``FileClosedEvent``, Linux inotify) or its size and mtime have
not changed for ``watch_stable_seconds``, and (2) its bytes end like a whole image: the JPEG end-of-image
marker ``FF D9`` (trailing zero padding allowed), the PNG ``IEND`` chunk, or, for DICOM (which has no end
marker), pixel data whose every declared length is present in the file. DICOM is taken by extension
(``.dcm``, ``.dicom``) or, for the extensionless and UID names of PACS exports, by its 132-byte preamble.
The move itself is atomic (`streaming.ingest.place.place_file`). A file that stays incomplete is reported
once and left in the inbox.

Runs on its own (``xray watch INBOX``, Ctrl-C stops) or in a thread next to ``xray stream`` with a
``stop_event``. Uses native file events where the platform has them, else watchdog's polling observer.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from streaming.core.config import XrayConfig
from streaming.core.dicomfile import DICOM_PREAMBLE_LENGTH, is_dicom_file
from streaming.core.errors import IngestError
from streaming.core.imagefile import is_complete_image
from streaming.core.names import is_ignored_name, is_image_name, may_be_dicom_name
from streaming.ingest.place import place_file

log = logging.getLogger(__name__)
# File names encode patient identifiers: INFO and WARNING lines give counts, DEBUG names the files.
NAMED_AT_DEBUG = "--log-level DEBUG names the file"

__all__ = ["InboxWatcher", "is_complete_image", "watch_inbox"]

class _StopRaceFilter(logging.Filter):
    """watchdog 7 logs an ERROR when its inotify thread reads once more while being stopped; that race is
    harmless (the observer is going away) and would alarm whoever reads the service log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


_inotify_log = logging.getLogger("watchdog.observers.inotify")
if not any(isinstance(f, _StopRaceFilter) for f in _inotify_log.filters):
    _inotify_log.addFilter(_StopRaceFilter())


def _is_input_name(path: Path) -> bool | None:
    """Whether an inbox file is an X-ray by its name, or by its content for an extensionless or UID name
    (DICOM's preamble); None while such a file is still too short to tell (being copied)."""
    name = path.name
    if is_image_name(name):
        return True
    if not may_be_dicom_name(name):
        return False
    if is_dicom_file(path):
        return True
    try:
        return False if path.stat().st_size >= DICOM_PREAMBLE_LENGTH else None
    except OSError:
        return None


def _ignored(relative: Path) -> bool:
    """Names the landing file source would skip (hidden, ``_x``, temporary) anywhere in the path."""
    return any(part.startswith((".", "_")) for part in relative.parts[:-1]) or is_ignored_name(relative.name)


@dataclass
class _Tracked:
    signature: tuple[int, int]  # (size, mtime_ns) when last seen changing
    since: float  # monotonic time the signature was first seen
    closed: tuple[int, int] | None = None  # signature when the writer closed the file
    checked: tuple[int, int] | None = None  # signature last found incomplete (no need to read it again)
    reported: bool = False
    failed: bool = False


class _Events(FileSystemEventHandler):
    """Forwards watchdog events (observer thread) to the watcher's queue (watching thread)."""

    def __init__(self, events: queue.SimpleQueue):
        self.events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, (DirCreatedEvent, DirMovedEvent)):
            # A folder moved in whole brings files that never get events of their own.
            target = event.dest_path if isinstance(event, DirMovedEvent) else event.src_path
            self.events.put(("scan", os.fsdecode(target)))
        elif not event.is_directory:
            path = os.fsdecode(event.dest_path or event.src_path)
            self.events.put(("closed" if isinstance(event, FileClosedEvent) else "changed", path))


class InboxWatcher:
    """The state of one inbox: which files are pending and when they last changed.

    `watch_inbox` drives it; tests and the service may call `check` themselves. Not thread-safe apart from
    the event queue the observer feeds.
    """

    def __init__(self, config: XrayConfig, inbox: str | Path, stable_seconds: float | None = None,
                 incomplete_factor: float = 5.0, poll: bool = False):
        self.inbox = Path(inbox).expanduser().resolve()
        self.landing = config.landing_dir
        self.stable_seconds = config.watch_stable_seconds if stable_seconds is None else stable_seconds
        self.incomplete_factor = incomplete_factor
        self.poll = poll
        self.moved = 0
        self._tracked: dict[Path, _Tracked] = {}
        self._warned_other: set[Path] = set()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._observer = None
        if self.inbox == self.landing or self.inbox.is_relative_to(self.landing) \
                or self.landing.is_relative_to(self.inbox):
            raise IngestError(
                f"inbox {self.inbox} and landing {self.landing} overlap; watch a separate folder"
            )
        if self.inbox.exists() and not self.inbox.is_dir():
            raise IngestError(f"inbox {self.inbox} is a file; pass a folder to watch")

    # -- observer ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start receiving file events (native when available, else polling), then scan what is there."""
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        self.inbox.mkdir(parents=True, exist_ok=True)
        handler = _Events(self._events)
        kind = "polling"
        if not self.poll:
            observer = Observer()
            try:
                observer.schedule(handler, str(self.inbox), recursive=True)
                observer.start()
                self._observer, kind = observer, "native events"
            except OSError as error:  # e.g. the inotify watch limit, or a filesystem without events
                log.warning("file events unavailable for %s (%s); polling instead", self.inbox, error)
        if self._observer is None:
            observer = PollingObserver(timeout=max(0.1, min(1.0, self.stable_seconds / 2)))
            observer.schedule(handler, str(self.inbox), recursive=True)
            observer.start()
            self._observer = observer
        # Scanning after the observer started leaves no gap for a file to arrive unseen.
        self.scan()
        log.info("watching %s for X-rays to move into %s (%s; complete after %.1fs unchanged)",
                 self.inbox, self.landing, kind, self.stable_seconds)

    def stop(self) -> None:
        """Stop the observer thread."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None

    # -- bookkeeping ------------------------------------------------------------------------------------
    def scan(self, folder: Path | None = None) -> None:
        """Track every file under ``folder`` (default: the inbox); catches files that got no events."""
        for directory, subdirs, names in os.walk(folder or self.inbox):
            subdirs[:] = [d for d in subdirs if not d.startswith((".", "_"))]
            for name in names:
                self._note(Path(directory) / name)

    def _note(self, path: Path, closed: bool = False) -> None:
        try:
            relative = path.relative_to(self.inbox)
        except ValueError:
            return
        if _ignored(relative):
            return
        accepted = False if path.is_symlink() else _is_input_name(path)
        if accepted is None:
            return  # too short to tell yet: the next event or scan looks again
        if not accepted:
            if path not in self._warned_other and (path.is_file() or path.is_symlink()):
                self._warned_other.add(path)
                what = "a symbolic link" if path.is_symlink() else "not a .jpeg/.jpg/.png/.dcm or DICOM X-ray"
                log.warning("an inbox file is %s; left in the inbox (%s)", what, NAMED_AT_DEBUG)
                log.debug("inbox file %s is %s", relative, what)
            return
        try:
            info = path.stat()
        except OSError:
            self._tracked.pop(path, None)
            return
        signature = (info.st_size, info.st_mtime_ns)
        tracked = self._tracked.get(path)
        if tracked is None:
            tracked = self._tracked[path] = _Tracked(signature, time.monotonic())
        if closed:
            tracked.closed = signature

    def _drain(self) -> None:
        while True:
            try:
                kind, raw = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "scan":
                folder = Path(raw)
                if folder.is_relative_to(self.inbox):  # a folder moved out of the inbox is none of ours
                    self.scan(folder)
            else:
                self._note(Path(raw), closed=kind == "closed")

    # -- the decision -----------------------------------------------------------------------------------
    def check(self) -> int:
        """Process pending events, move every file that is now complete; returns how many moved."""
        self._drain()
        now = time.monotonic()
        moved = 0
        for path, tracked in list(self._tracked.items()):
            try:
                info = path.stat()
            except OSError:
                del self._tracked[path]
                continue
            signature = (info.st_size, info.st_mtime_ns)
            if signature != tracked.signature:
                tracked.signature, tracked.since = signature, now
                tracked.checked, tracked.reported, tracked.failed = None, False, False
                continue
            stable_for = now - tracked.since
            if tracked.closed != signature and stable_for < self.stable_seconds:
                continue
            if tracked.checked == signature or not is_complete_image(path):
                tracked.checked = signature
                if stable_for >= self.incomplete_factor * self.stable_seconds and not tracked.reported:
                    tracked.reported = True
                    log.warning(
                        "an inbox file has not changed for %.0fs but is not a complete JPEG/PNG/DICOM (no end "
                        "marker, or DICOM pixel data cut short); not moved - copy it again (%s)", stable_for,
                        NAMED_AT_DEBUG,
                    )
                    log.debug("inbox file %s is not a complete JPEG/PNG/DICOM", path.relative_to(self.inbox))
                continue
            if self._move(path, tracked):
                del self._tracked[path]
                moved += 1
        self.moved += moved
        return moved

    def _move(self, path: Path, tracked: _Tracked) -> bool:
        relative = path.relative_to(self.inbox)
        try:
            final, status = place_file(path, self.landing / relative.parent, relative.name, move=True)
        except (OSError, IngestError) as error:
            if not tracked.failed:
                tracked.failed = True
                # The error text names the file (an OSError's filename): only at DEBUG.
                log.warning("cannot move an inbox file into landing (%s); retrying (%s)", type(error).__name__,
                            NAMED_AT_DEBUG)
                log.debug("cannot move inbox file %s into landing: %s", relative, error)
            tracked.since = time.monotonic()  # try again after another stable period
            return False
        if status == "duplicate":
            log.debug("inbox file %s is already in landing as %s; removed from the inbox", relative, final)
        else:
            log.debug("moved inbox file %s to %s", relative, final)
        return True


def watch_inbox(
    config: XrayConfig,
    inbox: str | Path,
    timeout: float | None = None,
    stop_event: threading.Event | None = None,
    *,
    poll: bool = False,
    incomplete_factor: float = 5.0,
) -> None:
    """Move X-rays copied into ``inbox`` into landing (same sub-path) once complete, until stopped.

    Stops when ``stop_event`` is set, after ``timeout`` seconds, or on Ctrl-C. Files already in the inbox
    are handled too. ``poll`` forces watchdog's polling observer (native events are used otherwise, with
    polling as the fallback). A file unchanged for ``incomplete_factor`` x ``watch_stable_seconds`` that
    still is not a whole image is reported once (warning) and left where it is.
    """
    watcher = InboxWatcher(config, inbox, incomplete_factor=incomplete_factor, poll=poll)
    stop_event = stop_event or threading.Event()
    deadline = None if timeout is None else time.monotonic() + timeout
    tick = max(0.02, min(0.25, watcher.stable_seconds / 4))
    rescan_every = max(5.0, 10 * watcher.stable_seconds)
    last_scan = time.monotonic()
    try:
        watcher.start()
        while not stop_event.is_set():
            moved = watcher.check()
            if moved:
                log.info("moved %d file(s) into landing", moved)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now - last_scan >= rescan_every:
                # Native event queues can overflow under bursts; a periodic scan picks up what was missed.
                watcher.scan()
                last_scan = now
            stop_event.wait(tick if deadline is None else max(0.0, min(tick, deadline - now)))
    except KeyboardInterrupt:
        log.info("watch stopped by Ctrl-C")
    finally:
        watcher.stop()
        log.info("stopped watching %s; %d files moved into landing", watcher.inbox, watcher.moved)
