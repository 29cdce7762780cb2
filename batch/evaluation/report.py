"""The model report: PNG charts and one self-contained ``index.html`` under ``<lakehouse>/reports/``.

The HTML (`batch.evaluation.page`) references the PNGs by relative path and loads nothing from the network:
the folder can be copied, zipped or opened from a file share as is. Shared figure helpers are in
`batch.evaluation.figures`, the time chart in `batch.evaluation.timeline`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from batch.evaluation.figures import (
    BALANCE_PNG,
    CONFUSION_PNG,
    LABEL_COLORS,
    LABEL_ORDER,
    ROC_PNG,
    SPLIT_COLORS,
    TIMELINE_PNG,
    fitted_title,
    message_figure,
    new_figure,
    save,
    split_role,
    split_sort_key,
)
from batch.evaluation.page import render_html
from batch.evaluation.timeline import plot_predictions_over_time, predictions_over_time
from streaming.core.registry import ModelRef
from streaming.lakehouse.engine import Lakehouse

if TYPE_CHECKING:
    from batch.evaluation.metrics import HoldOut, SplitEvaluation

__all__ = ["plot_class_balance", "plot_confusion_matrices", "plot_roc", "split_sort_key", "write_report"]

# -- charts ---------------------------------------------------------------------------------------------
def plot_roc(evaluations: Sequence[SplitEvaluation], path: Path) -> Path:
    """One ROC curve per split of the champion, AUC in the legend; one-class splits listed as not drawable."""
    from sklearn.metrics import roc_curve

    figure = new_figure(6.5, 6)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="#bbbbbb", label="chance (AUC 0.50)")
    skipped = []
    for evaluation in sorted(evaluations, key=lambda e: split_sort_key(e.split)):
        if len(np.unique(evaluation.y)) < 2:
            skipped.append(evaluation.split)
            continue
        false_positive, true_positive, _ = roc_curve(evaluation.y, evaluation.scores)
        auc = evaluation.metrics.get("roc_auc")
        name = f"{evaluation.split}, {split_role(evaluation.split)}"
        axes.plot(false_positive, true_positive, linewidth=2, color=SPLIT_COLORS.get(evaluation.split),
                  linestyle="-" if split_role(evaluation.split) == "held out" else ":",
                  label=f"{name} (AUC {auc:.3f}, n={len(evaluation.y)})" if auc is not None
                  else f"{name} (n={len(evaluation.y)})")
    if skipped:
        axes.plot([], [], " ", label=f"one class only, no curve: {', '.join(skipped)}")
    first = evaluations[0] if evaluations else None
    axes.set_title(fitted_title(f"ROC curve: {first.model_name} v{first.model_version}", 6.5) if first
                   else "ROC curve")
    axes.set_xlabel("False positive rate (1 - specificity)")
    axes.set_ylabel("True positive rate (recall for PNEUMONIA)")
    # A little room past 0 and 1 so a perfect curve is not hidden under the axes frame.
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.02)
    axes.set_aspect("equal")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=9)
    return save(figure, path)


def plot_confusion_matrices(evaluations: Sequence[SplitEvaluation], path: Path) -> Path:
    """A heatmap per split: counts and the share of each true class, at the model's threshold."""
    ordered = sorted(evaluations, key=lambda e: split_sort_key(e.split))
    if not ordered:
        return save(message_figure("Confusion matrix", "no labelled images to evaluate"), path)
    width = max(6.5, 3.6 * len(ordered) + 0.8)
    figure = new_figure(width, 5.0)
    names = ("NORMAL", "PNEUMONIA")
    for index, evaluation in enumerate(ordered):
        matrix = np.asarray(evaluation.metrics["confusion_matrix"], dtype=float)
        row_totals = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, row_totals, out=np.zeros_like(matrix), where=row_totals > 0)
        axes = figure.add_subplot(1, len(ordered), index + 1)
        # Colour by row share so a small class's errors show as clearly as a large class's.
        axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for row in range(2):
            for column in range(2):
                axes.text(column, row, f"{int(matrix[row, column])}\n{shares[row, column]:.0%}",
                          ha="center", va="center", fontsize=12,
                          color="white" if shares[row, column] > 0.6 else "black")
        axes.set_xticks([0, 1], labels=names)
        axes.set_yticks([0, 1], labels=names if index == 0 else ["", ""])
        axes.set_xlabel("predicted")
        if index == 0:
            axes.set_ylabel("true")
        axes.set_title(f"{evaluation.split}, {split_role(evaluation.split)} (n={int(matrix.sum())})",
                       fontsize=11)
    first = ordered[0]
    figure.suptitle(fitted_title(f"Confusion matrix: {first.model_name} v{first.model_version}, "
                                 f"threshold {first.threshold:.3f}", width), fontsize=13)
    return save(figure, path)


def plot_class_balance(summary: Sequence[dict], path: Path) -> Path:
    """Grouped bars: images per label in each split, counts on the bars."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in summary:
        if row["split"] != "all":
            counts[row["split"]][row["label_name"]] = int(row["images"] or 0)
    if not counts:
        return save(message_figure("Class balance", "no valid images in silver yet"), path)
    splits = sorted(counts, key=split_sort_key)
    labels = [label for label in LABEL_ORDER if any(label in counts[s] for s in splits)]
    labels += sorted({label for s in splits for label in counts[s]} - set(labels))
    figure = new_figure(max(6.0, 1.8 * len(splits) + 2), 4.2)
    axes = figure.add_subplot()
    width = 0.8 / len(labels)
    positions = np.arange(len(splits))
    for offset, label in enumerate(labels):
        values = [counts[s].get(label, 0) for s in splits]
        bars = axes.bar(positions + (offset - (len(labels) - 1) / 2) * width, values, width,
                        label=label, color=LABEL_COLORS.get(label, "#444444"))
        axes.bar_label(bars, labels=[str(v) if v else "" for v in values], fontsize=9, padding=2)
    axes.set_xticks(positions, labels=[f"{s}\n({sum(counts[s].values())} images)" for s in splits])
    axes.set_ylabel("distinct valid images")
    axes.set_title("Class balance per split")
    axes.margins(y=0.15)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, never over them
    axes.grid(axis="y", alpha=0.3)
    return save(figure, path)


def _draw_timeline(lakehouse: Lakehouse, path: Path) -> Path:
    binned, seconds, name = predictions_over_time(lakehouse)
    return plot_predictions_over_time(binned, path, seconds, name)


def write_report(
    lakehouse: Lakehouse,
    champion: ModelRef,
    evaluations: Sequence[SplitEvaluation],
    summary: Sequence[dict],
    quarantine_by_rule: dict[str, int],
    generated_time: dt.datetime,
    champion_tags: dict[str, str] | None = None,
    reports_dir: Path | None = None,
    holdouts: Sequence[HoldOut] = (),
    synthetic: dict | None = None,
) -> Path:
    """Draw the charts and write ``index.html`` (default folder ``config.reports_dir``); returns its path.

    ``evaluations`` are this run's (split, scores) of each evaluated version; the charts show the champion's.
    ``holdouts``: each version's validation figures from its training (the headline with the held-out
    splits); ``synthetic``: what `streaming.ops.provenance.synthetic_status` found (a caution is shown).
    Files are replaced in place; the page is written last and atomically, so a reader never sees a page
    pointing at charts that are not there yet.
    """
    folder = Path(reports_dir or lakehouse.config.reports_dir)
    folder.mkdir(parents=True, exist_ok=True)
    champion_evaluations = [e for e in evaluations if e.model_version == champion.version]
    charts = {
        ROC_PNG: lambda p: plot_roc(champion_evaluations, p),
        CONFUSION_PNG: lambda p: plot_confusion_matrices(champion_evaluations, p),
        BALANCE_PNG: lambda p: plot_class_balance(summary, p),
        TIMELINE_PNG: lambda p: _draw_timeline(lakehouse, p),
    }
    images = {}
    for name, draw in charts.items():
        draw(folder / name)
        images[name] = name
    page = render_html(champion, champion_tags or {}, evaluations, summary, quarantine_by_rule, images,
                       generated_time, holdouts=holdouts, synthetic=synthetic)
    index = folder / "index.html"
    partial = folder / ".index.html.tmp"
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, index)
    return index
