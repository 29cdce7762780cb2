"""Plain-text output shared by the ops commands (``xray status``, ``xray sql``); imports nothing heavy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

__all__ = ["age", "format_table", "iso_utc", "short_time"]


def iso_utc(value: dt.datetime | None) -> str | None:
    """ISO text in UTC; a naive time is UTC already (Arrow's timestamps and Delta's are)."""
    if value is None:
        return None
    return (value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value).astimezone(
        dt.timezone.utc).isoformat()


def short_time(iso: str | None) -> str:
    """``2026-12-01 09:07:00`` of an ISO time; ``-`` for none."""
    return iso[:19].replace("T", " ") if iso else "-"


def age(seconds: float | None) -> str:
    """``4h 0m``, ``2m 5s``, ``3s``, ``1d 2h``: a duration as a person reads it; ``-`` for none."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            return f"{seconds // size}{unit} {seconds % size // smaller_size}{smaller}"
    return f"{seconds}s"


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
