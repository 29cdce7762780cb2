"""Reading a Spark streaming checkpoint's logs (``offsets/``, ``commits/``): files named by batch id.

Spark writes ``offsets/N`` before running batch N and ``commits/N`` after it. Status, recovery, erasure and
maintenance all ask which batches a folder holds; this is the one place that reads the names.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["batch_ids", "newest_batch"]


def batch_ids(folder: Path) -> list[int]:
    """Batch ids of a checkpoint log folder (checksums and temporary files ignored; none when missing)."""
    try:
        return [int(name) for name in os.listdir(folder) if name.isdigit()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def newest_batch(folder: Path) -> int | None:
    """The highest batch id of a checkpoint log folder (None: none)."""
    return max(batch_ids(folder), default=None)
