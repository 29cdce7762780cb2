"""Plain-text output shared by the ops commands (``xray status``, ``xray sql``); imports nothing heavy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

__all__ = ["NOT_DEFINED", "age", "format_table", "iso_utc", "metric_text", "short_time", "undefined_metrics"]


def iso_utc(value: dt.datetime | None) -> str | None:
    """ISO text in UTC; a naive time is UTC already (Arrow's timestamps and Delta's are)."""
    if value is None:
        return None
    return (value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value).astimezone(
        dt.timezone.utc).isoformat()


NOT_DEFINED = "n/a"
# A rate whose denominator is empty has no value (evaluation stores 0.0 for it); which cells of the confusion
# matrix [[tn, fp], [fn, tp]] make each denominator, and what their absence means.
_DENOMINATORS = {
    "recall": (((1, 0), (1, 1)), "no PNEUMONIA image"),
    "specificity": (((0, 0), (0, 1)), "no NORMAL image"),
    "precision": (((0, 1), (1, 1)), "nothing predicted PNEUMONIA"),
    "f1": (((0, 1), (1, 0), (1, 1)), "no PNEUMONIA image and none predicted"),
}


def undefined_metrics(confusion: Sequence[Sequence[int]] | None) -> dict[str, str]:
    """The rates a confusion matrix ``[[tn, fp], [fn, tp]]`` leaves undefined, each with the reason (for
    the feedback split of a reader who saw only normal chests, sensitivity is not 0: it is undefined)."""
    if not confusion:
        return {}
    return {key: reason for key, (cells, reason) in _DENOMINATORS.items()
            if sum(int(confusion[r][c]) for r, c in cells) == 0}


def metric_text(metrics: dict, key: str, width: int = 0) -> str:
    """A metric with three decimals, ``n/a`` where the confusion matrix leaves it undefined, ``-`` if absent."""
    value = metrics.get(key)
    if key in undefined_metrics(metrics.get("confusion_matrix")):
        text = NOT_DEFINED
    else:
        text = "-" if value is None else f"{value:.3f}"
    return text.rjust(width)


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
