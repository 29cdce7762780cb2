"""The model report: PNG charts and one self-contained ``index.html`` under ``<lakehouse>/reports/``.

Charts are drawn with matplotlib's object API on Agg canvases (no pyplot, no display, no global backend
switch), so the report renders on headless clusters and never disturbs a caller's own matplotlib setup.
The HTML references the PNGs by relative path and loads nothing from the network: the folder can be copied,
zipped or opened from a file share as is.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streaming.core.registry import ModelRef
from streaming.lakehouse.catalog import GOLD_PREDICTIONS
from streaming.lakehouse.engine import Lakehouse

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from batch.evaluation.metrics import SplitEvaluation

SPLIT_ORDER = ("train", "val", "test", "unknown")
LABEL_ORDER = ("NORMAL", "PNEUMONIA", "unknown")
LABEL_COLORS = {"NORMAL": "#2b83ba", "PNEUMONIA": "#d7191c", "unknown": "#9e9e9e"}
SPLIT_COLORS = {"train": "#1b9e77", "val": "#7570b3", "test": "#d95f02", "unknown": "#666666"}

ROC_PNG = "roc_curve.png"
CONFUSION_PNG = "confusion_matrix.png"
BALANCE_PNG = "class_balance.png"
TIMELINE_PNG = "predictions_over_time.png"
# Above this many hours of predictions the timeline is drawn per day: hourly bars would be too thin to read.
HOURLY_SPAN_LIMIT = dt.timedelta(hours=72)


def split_sort_key(split: str) -> tuple[int, str]:
    """Known splits in pipeline order, anything else after them alphabetically."""
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png", dpi=100)
    return path


def _message_figure(title: str, message: str) -> Figure:
    figure = _figure(7, 3)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="#555555", wrap=True)
    return figure


# -- charts ---------------------------------------------------------------------------------------------
def plot_roc(evaluations: Sequence[SplitEvaluation], path: Path) -> Path:
    """One ROC curve per split of the champion, AUC in the legend; one-class splits listed as not drawable."""
    from sklearn.metrics import roc_curve

    figure = _figure(6.5, 6)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="#bbbbbb", label="chance (AUC 0.50)")
    skipped = []
    for evaluation in sorted(evaluations, key=lambda e: split_sort_key(e.split)):
        if len(np.unique(evaluation.y)) < 2:
            skipped.append(evaluation.split)
            continue
        false_positive, true_positive, _ = roc_curve(evaluation.y, evaluation.scores)
        auc = evaluation.metrics.get("roc_auc")
        axes.plot(false_positive, true_positive, linewidth=2, color=SPLIT_COLORS.get(evaluation.split),
                  label=f"{evaluation.split} (AUC {auc:.3f}, n={len(evaluation.y)})" if auc is not None
                  else f"{evaluation.split} (n={len(evaluation.y)})")
    if skipped:
        axes.plot([], [], " ", label=f"one class only, no curve: {', '.join(skipped)}")
    first = evaluations[0] if evaluations else None
    axes.set_title(f"ROC curve: {first.model_name} v{first.model_version}" if first else "ROC curve")
    axes.set_xlabel("False positive rate (1 - specificity)")
    axes.set_ylabel("True positive rate (recall for PNEUMONIA)")
    # A little room past 0 and 1 so a perfect curve is not hidden under the axes frame.
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.02)
    axes.set_aspect("equal")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=9)
    return _save(figure, path)


def plot_confusion_matrices(evaluations: Sequence[SplitEvaluation], path: Path) -> Path:
    """A heatmap per split: counts and the share of each true class, at the model's threshold."""
    ordered = sorted(evaluations, key=lambda e: split_sort_key(e.split))
    if not ordered:
        return _save(_message_figure("Confusion matrix", "no labelled images to evaluate"), path)
    figure = _figure(3.6 * len(ordered) + 0.8, 4.6)
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
        axes.set_title(f"{evaluation.split} (n={int(matrix.sum())})")
    first = ordered[0]
    figure.suptitle(f"Confusion matrix: {first.model_name} v{first.model_version}, "
                    f"threshold {first.threshold:.3f}", fontsize=13)
    return _save(figure, path)


def plot_class_balance(summary: Sequence[dict], path: Path) -> Path:
    """Grouped bars: images per label in each split, counts on the bars."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in summary:
        if row["split"] != "all":
            counts[row["split"]][row["label_name"]] = int(row["images"] or 0)
    if not counts:
        return _save(_message_figure("Class balance", "no valid images in silver yet"), path)
    splits = sorted(counts, key=split_sort_key)
    labels = [label for label in LABEL_ORDER if any(label in counts[s] for s in splits)]
    labels += sorted({label for s in splits for label in counts[s]} - set(labels))
    figure = _figure(max(6.0, 1.8 * len(splits) + 2), 4.2)
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
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def predictions_over_time(lakehouse: Lakehouse) -> list[tuple[dt.datetime, str, int]]:
    """(UTC hour, predicted label, predictions) from gold; the grouping runs in Spark, a few rows come back."""
    from pyspark.sql import functions as F

    if not lakehouse.exists(GOLD_PREDICTIONS.name):
        return []
    hourly = (
        lakehouse.read(GOLD_PREDICTIONS.name)
        .groupBy(F.date_trunc("hour", "predicted_time").alias("hour"), "predicted_label")
        .count()
        .toArrow()  # Arrow keeps timestamps in UTC; Row objects would shift them to the local zone
    )
    result = []
    for hour, label, count in zip(hourly.column("hour").to_pylist(), hourly.column("predicted_label").to_pylist(),
                                  hourly.column("count").to_pylist(), strict=True):
        if hour is None:
            continue
        if hour.tzinfo is None:
            hour = hour.replace(tzinfo=dt.timezone.utc)
        result.append((hour.astimezone(dt.timezone.utc), label or "unknown", int(count)))
    return sorted(result)


def plot_predictions_over_time(hourly: Sequence[tuple[dt.datetime, str, int]], path: Path) -> Path:
    """Stacked bars of predictions per hour (per day over long spans), by predicted label."""
    if not hourly:
        return _save(_message_figure("Predictions over time", "no predictions in gold yet"), path)
    import matplotlib.dates as mdates
    from matplotlib.ticker import MaxNLocator

    span = max(h for h, _, _ in hourly) - min(h for h, _, _ in hourly)
    daily = span > HOURLY_SPAN_LIMIT
    buckets: dict[dt.datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for hour, label, count in hourly:
        key = hour.replace(hour=0) if daily else hour
        buckets[key][label] += count
    times = sorted(buckets)
    labels = [label for label in LABEL_ORDER if any(label in buckets[t] for t in times)]
    labels += sorted({label for t in times for label in buckets[t]} - set(labels))
    figure = _figure(9, 4.2)
    axes = figure.add_subplot()
    bottom = np.zeros(len(times))
    width = 0.8 if daily else 0.8 / 24  # bar width in days
    x = mdates.date2num([t + (dt.timedelta(hours=12) if daily else dt.timedelta(minutes=30)) for t in times])
    for label in labels:
        values = np.array([buckets[t].get(label, 0) for t in times], dtype=float)
        axes.bar(x, values, width, bottom=bottom, label=label, color=LABEL_COLORS.get(label, "#444444"))
        bottom += values
    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=dt.timezone.utc))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(f"predictions per {'day' if daily else 'hour'}")
    axes.set_xlabel("predicted time (UTC)")
    total = int(sum(c for _, _, c in hourly))
    axes.set_title(f"Predictions over time ({total} in gold), by predicted label")
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


# -- HTML -----------------------------------------------------------------------------------------------
_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #666; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.95em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th { background: #f4f6f8; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #666; font-size: 0.9em; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metric_rows(evaluations: Sequence[SplitEvaluation], with_version: bool) -> list[list[Any]]:
    rows = []
    for e in sorted(evaluations, key=lambda e: (int(e.model_version), split_sort_key(e.split))):
        m = e.metrics
        row = [e.split, len(e.y), m.get("accuracy"), m.get("precision"), m.get("recall"), m.get("specificity"),
               m.get("f1"), m.get("roc_auc"), e.threshold, json.dumps(m.get("confusion_matrix"))]
        rows.append([f"v{e.model_version}", *row] if with_version else row)
    return rows


_METRIC_HEADERS = ("split", "images", "accuracy", "precision", "recall", "specificity", "F1", "ROC AUC",
                   "threshold", "confusion [[tn, fp], [fn, tp]]")


def _images_and_patients(row: dict) -> str:
    patients = int(row["patients"])
    return f"{row['images']} ({patients} patient{'' if patients == 1 else 's'})"


def _summary_html(summary: Sequence[dict]) -> str:
    per_split: dict[str, dict[str, dict]] = defaultdict(dict)
    total = None
    for row in summary:
        if row["split"] == "all":
            total = row
        else:
            per_split[row["split"]][row["label_name"]] = row
    labels = [label for label in LABEL_ORDER if any(label in v for v in per_split.values())]
    rows = []
    for split in sorted(per_split, key=split_sort_key):
        cells = per_split[split]
        rows.append([split, *[_images_and_patients(cells[lb]) if lb in cells else 0 for lb in labels],
                     sum(int(c["images"]) for c in cells.values())])
    table = _table(["split", *labels, "images"], rows) if rows else "<p>No valid images in silver yet.</p>"
    if total is not None:
        table += (f"<p>All splits: <b>{total['images']}</b> distinct valid images from <b>{total['patients']}"
                  f"</b> patients; <b>{total['quarantined']}</b> file(s) quarantined; <b>{total['duplicates']}"
                  "</b> duplicate file(s) skipped.</p>")
    return table


def render_html(
    champion: ModelRef,
    champion_tags: dict[str, str],
    evaluations: Sequence[SplitEvaluation],
    summary: Sequence[dict],
    quarantine_by_rule: dict[str, int],
    images: dict[str, str],
    generated_time: dt.datetime,
) -> str:
    """The report page: the champion's metrics, charts, dataset summary and quarantine counts."""
    champion_evaluations = [e for e in evaluations if e.model_version == champion.version]
    other_evaluations = [e for e in evaluations if e.model_version != champion.version]
    threshold = champion_evaluations[0].threshold if champion_evaluations else champion_tags.get("threshold")
    details = [f"feature version <code>{html.escape(champion_tags.get('feature_version', '?'))}</code>"]
    if threshold is not None:
        details.append(f"threshold {float(threshold):.3f}")
    for key in ("validation_accuracy", "validation_roc_auc"):
        if key in champion_tags:
            details.append(f"{key.replace('_', ' ').replace('roc auc', 'ROC AUC')} {html.escape(champion_tags[key])}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>X-ray classifier report: {html.escape(champion.name)} v{html.escape(champion.version)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Chest X-ray classifier report</h1>",
        f'<p class="meta">Generated {generated_time.strftime("%Y-%m-%d %H:%M:%S")} UTC. Champion model '
        f"<b>{html.escape(champion.name)}</b> version <b>{html.escape(champion.version)}</b> "
        f"({'; '.join(details)}).</p>",
        "<h2>Latest metrics per split</h2>",
        _table(_METRIC_HEADERS, _metric_rows(champion_evaluations, with_version=False))
        if champion_evaluations else "<p>No labelled images of the champion's feature version to evaluate.</p>",
        '<p class="note">PNEUMONIA is the positive class: recall is sensitivity, specificity is NORMAL recall. '
        "Only the test split is kept out of training: train, val and unknown (no split) images are trained on, "
        "so their scores are optimistic.</p>",
    ]
    if other_evaluations:
        parts += ["<h2>Other registered versions</h2>",
                  _table(("version", *_METRIC_HEADERS), _metric_rows(other_evaluations, with_version=True))]
    titles = {ROC_PNG: "ROC curve", CONFUSION_PNG: "Confusion matrices", BALANCE_PNG: "Class balance",
              TIMELINE_PNG: "Predictions over time"}
    for name, title in titles.items():
        if name in images:
            parts += [f"<h2>{title}</h2>", f'<img src="{html.escape(images[name])}" alt="{title}">']
        if name == BALANCE_PNG:
            parts += ["<h2>Dataset summary</h2>", _summary_html(summary)]
    parts.append("<h2>Quarantine by rule</h2>")
    if quarantine_by_rule:
        ranked = sorted(quarantine_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
        parts.append(_table(("rule", "files"), [*ranked, ("total", sum(quarantine_by_rule.values()))]))
    else:
        parts.append("<p>No file has been quarantined.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    lakehouse: Lakehouse,
    champion: ModelRef,
    evaluations: Sequence[SplitEvaluation],
    summary: Sequence[dict],
    quarantine_by_rule: dict[str, int],
    generated_time: dt.datetime,
    champion_tags: dict[str, str] | None = None,
    reports_dir: Path | None = None,
) -> Path:
    """Draw the charts and write ``index.html`` (default folder ``config.reports_dir``); returns its path.

    ``evaluations`` are this run's (split, scores) of each evaluated version; the charts show the champion's.
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
        TIMELINE_PNG: lambda p: plot_predictions_over_time(predictions_over_time(lakehouse), p),
    }
    images = {}
    for name, draw in charts.items():
        draw(folder / name)
        images[name] = name
    page = render_html(champion, champion_tags or {}, evaluations, summary, quarantine_by_rule, images,
                       generated_time)
    index = folder / "index.html"
    partial = folder / ".index.html.tmp"
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, index)
    return index
