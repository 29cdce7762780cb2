"""One stream per lakehouse: an OS file lock under ``<root>/_locks`` that dies with its process.

``fcntl.flock`` is released by the kernel when the holding process exits, however it exits (``kill -9``
included), so a stale lock never blocks a restart and no "is the pid still alive" guesswork is needed. The
holder's pid, user, host and start time are written inside the file only to tell a refused second stream
who holds the lakehouse; the lock itself is the flock, never the file's content or existence.

Limits: flock is per host. On a shared network filesystem (NFS) two hosts may each get the lock; run one
`xray stream` per lakehouse there by deployment (one job), as on Databricks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from streaming.core.errors import LakehouseBusyError

STREAM_LOCK = "stream.lock"


def lock_path(root: Path) -> Path:
    """Where the stream lock of a lakehouse lives."""
    return root / "_locks" / STREAM_LOCK


def _holder() -> dict:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid still says who
        user = str(os.getuid())
    return {"pid": os.getpid(), "user": user, "host": socket.gethostname(),
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def describe_holder(path: Path) -> str:
    """'pid 123, user ana, host h1, since 2024-05-01T10:00:00+00:00' from a lock file (best effort)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (its details are not readable)"
    return (f"pid {info.get('pid', '?')}, user {info.get('user', '?')}, host {info.get('host', '?')}, "
            f"since {info.get('since', '?')}")


@contextlib.contextmanager
def held_lock(path: Path, busy: Callable[[str], str], wait_seconds: float = 0.0,
              waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the flock of ``path`` while the block runs, the holder's details written inside; when another
    process holds it, wait up to ``wait_seconds`` (``waiting`` is told once, with the holder), then raise
    `LakehouseBusyError` with ``busy(holder)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Opened without truncating: a refused process must not erase the holder's details.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LakehouseBusyError(busy(describe_holder(path))) from None
                if waiting is not None:
                    waiting(describe_holder(path))
                    waiting = None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        try:
            yield
        finally:
            # Emptied before the unlock so the file never names a process that no longer holds it.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def stream_lock(root: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the lakehouse's stream lock while the block runs; LakehouseBusyError when another holds it."""
    return held_lock(lock_path(root), lambda holder: (
        f"lakehouse {root} is already being streamed by {holder}; stop that stream first (Ctrl-C or "
        f"SIGTERM), or use another --lakehouse"))
