"""The progress bar of long staging steps (extraction, placing files)."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress"]


def progress(total: int | None, desc: str, unit: str = "B") -> Any:
    """A tqdm bar on stderr, shown only on a terminal so logs and CI output stay clean."""
    from tqdm import tqdm

    scale = unit == "B"
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, unit_divisor=1024 if scale else 1000,
                disable=None, file=sys.stderr, leave=False)
