"""The landing backlog: what the bronze stream has still to read (a measure by modification time)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from streaming.core.names import is_image_name

__all__ = ["landing_backlog"]


def landing_backlog(landing: Path, newer_than: dt.datetime | None) -> tuple[int, int]:
    """(files, bytes) in landing modified after ``newer_than``: what the bronze stream has still to read.

    The file source admits files oldest first, so files newer than the newest one ingested are the backlog
    (files sharing that exact modification time are counted as ingested).
    """
    # The listing records modification times in whole milliseconds.
    threshold_ms = round(newer_than.timestamp() * 1000) if newer_than else -1
    files = total = 0
    for folder, subfolders, names in os.walk(landing):
        subfolders[:] = [d for d in subfolders if not d.startswith((".", "_"))]
        for name in names:
            if not is_image_name(name):
                continue
            try:
                stat = os.stat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            if stat.st_mtime_ns // 1_000_000 > threshold_ms:
                files += 1
                total += stat.st_size
    return files, total
