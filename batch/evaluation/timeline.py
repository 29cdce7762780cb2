"""The "predictions over time" chart: gold predictions per time bin, the bin chosen from the span shown.

Predictions made within one second get one-second bins, a day of streaming gets 30-minute bins, months get
days or weeks: about `MAX_BINS` bars at most, each as wide as its bin on the time axis.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from batch.evaluation.figures import LABEL_COLORS, LABEL_ORDER, message_figure, new_figure, save
from streaming.lakehouse.catalog import GOLD_PREDICTIONS
from streaming.lakehouse.engine import Lakehouse

# (seconds, name of one bin) from the finest; the first that keeps the bars at most MAX_BINS wins.
BIN_WIDTHS = (
    (1, "second"), (5, "5 seconds"), (10, "10 seconds"), (30, "30 seconds"),
    (60, "minute"), (300, "5 minutes"), (600, "10 minutes"), (1800, "30 minutes"),
    (3600, "hour"), (3 * 3600, "3 hours"), (6 * 3600, "6 hours"),
    (86400, "day"), (7 * 86400, "week"), (30 * 86400, "30 days"),
)
MAX_BINS = 48
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def choose_bin(span: dt.timedelta) -> tuple[int, str]:
    """The finest bin width (seconds, name) that draws ``span`` in at most `MAX_BINS` bars."""
    seconds = max(span.total_seconds(), 0.0)
    for width, name in BIN_WIDTHS:
        if seconds / width < MAX_BINS:
            return width, name
    return BIN_WIDTHS[-1]


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def predictions_over_time(lakehouse: Lakehouse) -> tuple[list[tuple[dt.datetime, str, int]], int, str]:
    """(bin start UTC, predicted label, predictions) from gold, the bin width in seconds and its name.

    Two small Spark jobs: the span first (min and max time), then the counts per bin; a few rows come back.
    """
    from pyspark.sql import functions as F

    if not lakehouse.exists(GOLD_PREDICTIONS.name):
        return [], *BIN_WIDTHS[0]
    gold = lakehouse.read(GOLD_PREDICTIONS.name).where(F.col("predicted_time").isNotNull())
    # Arrow keeps timestamps in UTC; Row objects would shift them to the local zone.
    bounds = gold.agg(F.min("predicted_time").alias("first"), F.max("predicted_time").alias("last")).toArrow()
    first, last = bounds.column("first")[0].as_py(), bounds.column("last")[0].as_py()
    if first is None:
        return [], *BIN_WIDTHS[0]
    width, name = choose_bin(_utc(last) - _utc(first))
    seconds = F.unix_micros("predicted_time") / F.lit(1_000_000)
    binned = (
        gold.groupBy((F.floor(seconds / width) * width).cast("long").alias("bin"), "predicted_label")
        .count()
        .toArrow()
    )
    result = [(EPOCH + dt.timedelta(seconds=start), label or "unknown", int(count))
              for start, label, count in zip(binned.column("bin").to_pylist(),
                                             binned.column("predicted_label").to_pylist(),
                                             binned.column("count").to_pylist(), strict=True)]
    return sorted(result), width, name


def plot_predictions_over_time(binned: Sequence[tuple[dt.datetime, str, int]], path: Path,
                               bin_seconds: int = 3600, bin_name: str = "hour") -> Path:
    """Stacked bars of predictions per bin (one bin wide each), by predicted label."""
    if not binned:
        return save(message_figure("Predictions over time", "no predictions in gold yet"), path)
    import matplotlib.dates as mdates
    from matplotlib.ticker import MaxNLocator

    buckets: dict[dt.datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for start, label, count in binned:
        buckets[start][label] += count
    times = sorted(buckets)
    labels = [label for label in LABEL_ORDER if any(label in buckets[t] for t in times)]
    labels += sorted({label for t in times for label in buckets[t]} - set(labels))
    figure = new_figure(9, 4.2)
    axes = figure.add_subplot()
    bottom = np.zeros(len(times))
    width = 0.9 * bin_seconds / 86400  # matplotlib dates count in days
    x = mdates.date2num(times)
    for label in labels:
        values = np.array([buckets[t].get(label, 0) for t in times], dtype=float)
        axes.bar(x, values, width, bottom=bottom, align="edge", label=label, color=LABEL_COLORS.get(label, "#444"))
        bottom += values
    # A little time either side, at least a few bins, so one bar does not fill the whole axis.
    pad = max(3 * bin_seconds, (times[-1] - times[0]).total_seconds() * 0.05) / 86400
    axes.set_xlim(x[0] - pad, x[-1] + bin_seconds / 86400 + pad)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=dt.timezone.utc))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(f"predictions per {bin_name}")
    axes.set_xlabel("predicted time (UTC)")
    total = int(sum(c for _, _, c in binned))
    axes.set_title(f"Predictions over time ({total} in gold), per {bin_name}, by predicted label")
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    return save(figure, path)
