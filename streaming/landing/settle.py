"""When a file dropped straight into landing is complete enough to be read (``landing_settle_seconds``).

`xray watch` moves only whole files into landing, but people and other systems also write into landing
directly, some slowly (a network copy, a PACS export). A file read half-way would be quarantined as
``decodes`` and the finished file never read, so a new (or changed) entry is admitted only once complete:

* where the filesystem tells (Linux inotify, through watchdog's observer started with the source): the
  writer closed it (``IN_CLOSE_WRITE``) or it was moved in (a rename: complete at once). A file seen being
  written (``IN_MODIFY``) waits for its close, however long the writer pauses;
* a new file not known complete that way is asked of the kernel: a read lease (``F_SETLEASE``) is refused
  exactly while some process has the file open for writing (`open_for_writing`; it needs the file's owner
  or ``CAP_LEASE`` and a local filesystem);
* else (no event seen and no lease: written before the source started, on a network mount, a link's
  target outside landing): once its modification time is ``landing_settle_seconds`` old, or its size and
  modification time have not changed for that long here, or its bytes already end like a whole
  JPEG/PNG/DICOM (`streaming.core.imagefile.is_complete_image`).

So a complete file waits no longer than before: a rename or a close is seen at once, a file found without
events is admitted at once when no process has it open for writing (or, where the kernel cannot be asked,
when it is old or whole). Before those rules decide, the events of a file written a moment before the scan
may still be on their way through the observer's threads: the trigger first waits (a few milliseconds, at
most a second) for the close event of a marker file it creates and deletes (hidden), since inotify keeps
events in order. Never-opened entries (FIFOs, links leading out of landing ...) are admitted at once.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from streaming.core.imagefile import is_complete_image
from streaming.core.names import is_image_name, may_be_dicom_name
from streaming.landing.scan import Found

__all__ = ["LandingEvents", "Settling", "open_for_writing"]

log = logging.getLogger(__name__)

_MARKER = ".xray-settle"  # hidden: the landing scan never lists it
_LIMIT = 100_000  # paths followed at once (a burst beyond it falls back to the rules without events)


class Settling:
    """The completeness of landing files: file events (when the platform gives them) and the rules without
    them. `ready` splits a scan's new entries; `start` and `stop` run the observer."""

    def __init__(self, landing: Path | str, settle_seconds: float):
        self.landing = os.path.realpath(landing)
        self.settle_seconds = max(0.0, float(settle_seconds))
        self.marker = os.path.join(self.landing, f"{_MARKER}-{os.getpid()}")
        self._states: dict[str, str] = {}  # path -> "created", "writing" or "closed" (the last event's)
        # Files waiting: path -> ((size, mtime_ns), monotonic time first seen so, found not whole at it).
        self._waiting: dict[str, tuple[tuple[int | None, int | None], float, bool]] = {}
        self._lock = threading.Lock()
        self._marked = threading.Event()
        self._observer = None

    # -- events -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start receiving file events for landing (inotify); without them the rules apply alone."""
        if self._observer is not None:
            return
        try:
            from watchdog.observers.inotify import InotifyObserver
        except ImportError:  # not Linux: no close events to wait for
            return
        try:
            # Full events: a file moved in from outside is a move (complete), not a creation (being written).
            observer = InotifyObserver(generate_full_events=True)
            observer.schedule(LandingEvents(self), self.landing, recursive=True)
            observer.start()
        except OSError as error:  # the inotify watch limit, a filesystem without events
            log.warning("landing: file events unavailable (%s); a new file is read once %.0f s old or whole",
                        error.strerror or type(error).__name__, self.settle_seconds)
            return
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None

    def note(self, path: str, state: str | None) -> None:
        """Record the last event of an input file (None: it left landing). Observer thread."""
        if path == self.marker:
            if state == "closed":
                self._marked.set()
            return
        name = os.path.basename(path)
        if name.startswith((".", "_")) or not (is_image_name(name) or may_be_dicom_name(name)):
            return
        with self._lock:
            if state is None:
                self._states.pop(path, None)
                return
            if len(self._states) >= _LIMIT and path not in self._states:
                self._states.clear()
            self._states[path] = state

    def lost(self) -> None:
        """The kernel's event queue overflowed: what was recorded may be stale; the rules decide alone."""
        with self._lock:
            self._states.clear()

    # -- the decision -------------------------------------------------------------------------------
    def ready(self, entries: list[Found]) -> tuple[list[Found], list[Found]]:
        """(entries complete now, entries still being written)."""
        now, clock = time.time(), time.monotonic()
        complete, undecided, waiting = [], [], []
        for entry in entries:
            (complete if self._known_complete(entry) else undecided).append(entry)
        unknown = []
        for entry in undecided:
            writing = open_for_writing(_source(entry))
            (unknown if writing is None else waiting if writing else complete).append(entry)
        if unknown:
            self._flush()  # the events of a file written a moment ago, before they are looked at
            for entry in unknown:
                (complete if self._verdict(entry, now, clock) else waiting).append(entry)
        with self._lock:
            for entry in complete:
                self._states.pop(_source(entry), None)
        alive = {_source(entry) for entry in waiting}
        self._waiting = {path: value for path, value in self._waiting.items() if path in alive}
        return complete, waiting

    def _state(self, entry: Found) -> str | None:
        with self._lock:
            return self._states.get(_source(entry))

    def _known_complete(self, entry: Found) -> bool:
        """Complete without looking further: never opened (nothing to wait for), or closed or moved in."""
        return entry.status not in ("file", "link") or self._state(entry) == "closed"

    def _verdict(self, entry: Found, now: float, clock: float) -> bool:
        state = self._state(entry)
        if state == "closed":
            return True
        if state == "writing":
            return False  # its writer has it open: its close event says when it is done
        path = _source(entry)
        signature = (entry.size, entry.mtime_ns)
        previous = self._waiting.get(path)
        if previous is None or previous[0] != signature:
            previous = (signature, clock, False)
        if now - _mtime(entry) >= self.settle_seconds or clock - previous[1] >= self.settle_seconds:
            return True
        if not previous[2] and is_complete_image(path):
            return True
        self._waiting[path] = (signature, previous[1], True)  # not whole at this signature: not read again
        return False

    def _flush(self) -> bool:
        """Wait until the observer has delivered every event sent before now: create a marker file and wait
        for its close event (inotify keeps events in order). False when that cannot be done."""
        if self._observer is None:
            return False
        self._marked.clear()
        try:
            with open(self.marker, "w"):
                pass
            return self._marked.wait(1.0)
        except OSError:
            return False
        finally:
            try:
                os.unlink(self.marker)
            except OSError:
                pass


class LandingEvents(FileSystemEventHandler):
    """watchdog's events (observer thread) → `Settling.note`: the last thing that happened to each file."""

    def __init__(self, settling: Settling):
        self.settling = settling

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind == "events_lost":
            self.settling.lost()
            return
        if event.is_directory:
            return
        source = os.fsdecode(event.src_path)
        if kind == "moved":
            if source:
                self.settling.note(source, None)
            if event.dest_path:
                self.settling.note(os.fsdecode(event.dest_path), "closed")  # renamed in: whole at once
        elif kind == "deleted":
            self.settling.note(source, None)
        elif kind in _STATES:
            self.settling.note(source, _STATES[kind])


# IN_CREATE alone (a hard link, an empty file) proves nothing: the rules without events decide; IN_MODIFY
# means a writer is at work, IN_CLOSE_WRITE that it is done. Attribute changes (touch, chmod) say nothing.
_STATES = {"created": "created", "modified": "writing", "closed": "closed"}


def open_for_writing(path: str) -> bool | None:
    """Whether some process has the regular file at ``path`` open for writing, from the kernel: a read
    lease (``F_SETLEASE``) is refused exactly then. None when it cannot tell: not Linux, not the file's
    owner (and no ``CAP_LEASE``), a filesystem without leases (NFS), not a regular file. The lease is let go
    at once (a writer opening the file meanwhile waits that long)."""
    lease = getattr(fcntl, "F_SETLEASE", None)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if lease is None or not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        try:
            fcntl.fcntl(descriptor, lease, fcntl.F_RDLCK)
        except OSError as error:
            return True if error.errno == errno.EAGAIN else None
        fcntl.fcntl(descriptor, lease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(descriptor)


def _mtime(entry: Found) -> float:
    return entry.mtime_ns / 1e9 if entry.mtime_ns is not None else entry.mtime_ms / 1000


def _source(entry: Found) -> str:
    """What is read for an entry (a link's target), whose events tell when it is complete."""
    return entry.target if entry.status == "link" and entry.target else entry.path
