"""Plain-text output shared by the ops commands (``xray status``, ``xray sql``); imports nothing heavy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_table"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool],
                 indent: int = 2) -> list[str]:
    """Plain-text columns: widths from the content, numbers right-aligned, the last column never padded."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [(c.rjust(w) if r else c.ljust(w)) for c, w, r in zip(row, widths, right, strict=True)]
        lines.append((" " * indent + "  ".join(parts)).rstrip())
    return lines
