"""The landing backlog: what the bronze stream has still to read (a measure by modification time)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from streaming.core.dicomfile import is_input_file

__all__ = ["Backlog", "backlog_scan", "landing_backlog"]


@dataclass(frozen=True)
class Backlog:
    """Files waiting in landing, their bytes, and the oldest one's modification time (UTC; None: none)."""

    files: int = 0
    bytes: int = 0
    oldest: dt.datetime | None = None


def backlog_scan(landing: Path, newer_than: dt.datetime | None) -> Backlog:
    """Input files in landing modified after ``newer_than``: what the bronze stream has still to read.

    The file source admits files oldest first, so files newer than the newest one ingested are the backlog
    (files sharing that exact modification time are counted as ingested).
    """
    # The listing records modification times in whole milliseconds.
    threshold_ms = round(newer_than.timestamp() * 1000) if newer_than else -1
    files = total = 0
    oldest_ns: int | None = None
    for folder, subfolders, names in os.walk(landing):
        subfolders[:] = [d for d in subfolders if not d.startswith((".", "_"))]
        for name in names:
            path = os.path.join(folder, name)
            if not is_input_file(path, name):  # extensionless DICOM counts, by its first 132 bytes
                continue
            try:
                stat = os.stat(path)
            except OSError:
                continue  # gone, or a link that loops or dangles: the scan lists it, never waits for it
            if stat.st_mtime_ns // 1_000_000 > threshold_ms:
                files += 1
                total += stat.st_size
                oldest_ns = stat.st_mtime_ns if oldest_ns is None else min(oldest_ns, stat.st_mtime_ns)
    oldest = None if oldest_ns is None else dt.datetime.fromtimestamp(oldest_ns / 1e9, dt.timezone.utc)
    return Backlog(files, total, oldest)


def landing_backlog(landing: Path, newer_than: dt.datetime | None) -> tuple[int, int]:
    """(files, bytes) of `backlog_scan`."""
    backlog = backlog_scan(landing, newer_than)
    return backlog.files, backlog.bytes
