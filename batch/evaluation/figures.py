"""What every chart of the report shares: headless figures, colours, the order of splits and labels.

Charts are drawn with matplotlib's object API on Agg canvases (no pyplot, no display, no global backend
switch), so the report renders on headless clusters and never disturbs a caller's own matplotlib setup.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SPLIT_ORDER = ("train", "val", "test", "unknown")
LABEL_ORDER = ("NORMAL", "PNEUMONIA", "unknown")
LABEL_COLORS = {"NORMAL": "#2b83ba", "PNEUMONIA": "#d7191c", "unknown": "#9e9e9e"}
SPLIT_COLORS = {"train": "#1b9e77", "val": "#7570b3", "test": "#d95f02", "unknown": "#666666"}
# The images radiologists confirmed (`xray feedback`), labelled by them: see batch.evaluation.agreement.
FEEDBACK_SPLIT = "feedback"
# Splits no model is ever trained on (`xray retrain` never uses `test`): their figures are honest.
HELD_OUT_SPLITS = ("test",)
ROC_PNG = "roc_curve.png"
CONFUSION_PNG = "confusion_matrix.png"
BALANCE_PNG = "class_balance.png"
TIMELINE_PNG = "predictions_over_time.png"
# The charts in the order the page shows them (the dataset summary follows the class balance).
CHART_TITLES = {ROC_PNG: "ROC curve", CONFUSION_PNG: "Confusion matrices", BALANCE_PNG: "Class balance",
                TIMELINE_PNG: "Predictions over time"}
# Roughly how many characters of a 13-point title fit in one inch of figure width.
TITLE_CHARS_PER_INCH = 9.5


def split_sort_key(split: str) -> tuple[int, str]:
    """Known splits in pipeline order, anything else after them alphabetically."""
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def split_role(split: str) -> str:
    """``held out`` for a split no model trains on, else ``in-sample`` (the model has seen these images)."""
    return "held out" if split in HELD_OUT_SPLITS else "in-sample"


def fitted_title(text: str, width_inches: float) -> str:
    """``text`` wrapped so each line fits a figure ``width_inches`` wide (titles are never cut off)."""
    return "\n".join(textwrap.wrap(text, max(20, int(width_inches * TITLE_CHARS_PER_INCH))))


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png", dpi=100)
    return path


def message_figure(title: str, message: str) -> Figure:
    figure = new_figure(7, 3)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="#555555", wrap=True)
    return figure
