"""The report without Spark: headline figures, in-sample labels, the synthetic caution, titles, time bins."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest

from batch.evaluation.figures import fitted_title
from batch.evaluation.metrics import HoldOut, SplitEvaluation
from batch.evaluation.page import render_html
from batch.evaluation.report import plot_confusion_matrices
from batch.evaluation.timeline import choose_bin, plot_predictions_over_time
from streaming.core.config import load_config
from streaming.core.registry import ModelRef
from streaming.ops.provenance import mark_synthetic, synthetic_data

T0 = dt.datetime(2026, 5, 1, 8, 0, 0, tzinfo=dt.timezone.utc)
CHAMPION = ModelRef("xray_pneumonia_classifier", "1")


def evaluation(version: str, split: str, accuracy: float) -> SplitEvaluation:
    metrics = {"accuracy": accuracy, "balanced_accuracy": accuracy, "roc_auc": accuracy, "recall": accuracy,
               "specificity": accuracy, "precision": accuracy, "f1": accuracy,
               "confusion_matrix": [[5, 0], [0, 5]]}
    return SplitEvaluation(CHAMPION.name, version, split, metrics, 0.5, np.array([0] * 5 + [1] * 5),
                           np.linspace(0, 1, 10))


def page(synthetic: dict | None = None) -> str:
    holdouts = [HoldOut(CHAMPION.name, "1", {"accuracy": 0.812, "roc_auc": 0.873}, 48, 29),
                HoldOut(CHAMPION.name, "2", {"accuracy": 0.799, "roc_auc": 0.861}, 48, 29)]
    evaluations = [evaluation("1", "train", 1.0), evaluation("1", "test", 0.777)]
    return render_html(CHAMPION, {"feature_version": "f1"}, evaluations, [], {}, {}, T0,
                       holdouts=holdouts, synthetic=synthetic)


def table_after(heading: str, text: str) -> str:
    return re.search(rf"<h2>{re.escape(heading)}</h2>.*?(<table.*?</table>)", text, re.S).group(1)


def test_headline_is_the_hold_out_per_version():
    text = page()
    assert text.index("Hold-out performance per model version") < text.index("In-sample figures")
    headline = table_after("Hold-out performance per model version", text)
    assert "v1 (champion)" in headline and "v2" in headline
    assert "0.812" in headline and "0.799" in headline and "0.777" in headline  # validation x2, test
    assert "48 (29 patients)" in headline and "test split (never trained on)" in headline
    assert "1.000" not in headline  # the in-sample train figure is not a headline
    in_sample = table_after("In-sample figures (images the model trained on)", text)
    assert "train" in in_sample and "1.000" in in_sample and "test" not in in_sample
    assert "optimistic" in text


def test_an_undefined_sensitivity_is_n_a_with_its_reason_not_zero():
    feedback = evaluation("1", "feedback", 0.75)
    # Readers confirmed four images, all NORMAL: no PNEUMONIA image, so sensitivity has no value.
    feedback.metrics.update(recall=0.0, specificity=0.75, confusion_matrix=[[3, 1], [0, 0]])
    text = render_html(CHAMPION, {"feature_version": "f1"}, [evaluation("1", "train", 1.0), feedback], [], {}, {},
                       T0)
    in_sample = table_after("In-sample figures (images the model trained on)", text)
    row = re.search(r"<tr><td>v1 \(champion\)</td><td>feedback</td>(.*?)</tr>", in_sample).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[3] == "n/a" and cells[4] == "0.750", cells  # recall, specificity
    assert "n/a: not defined for these images (no PNEUMONIA image: no sensitivity" in text


def test_synthetic_caution_only_for_synthetic_data(tmp_path):
    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"))
    assert synthetic_data(config) is None
    assert "Synthetic data" not in page(synthetic_data(config))
    mark_synthetic(config, images=240, seed=0)
    marker = synthetic_data(config)
    assert marker["images"] == 240
    caution = page(marker)
    assert "Synthetic data: these figures do not measure a medical model" in caution
    assert caution.index("Synthetic data") < caution.index("Hold-out performance")


def test_the_caution_counts_the_images_the_lakehouse_holds(tmp_path):
    """The marker says a demo run staged 250 images; silver holds 447 (a second run, images added later):
    the caution counts what is there."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from streaming.lakehouse.engine import Lakehouse
    from streaming.ops.provenance import synthetic_status

    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"), delta_engine="delta-rs")
    lakehouse = Lakehouse(None, config)
    mark_synthetic(config, images=250, seed=0)
    assert synthetic_status(lakehouse)["images_present"] == 0  # nothing streamed yet
    write_deltalake(str(config.table_path("silver_xray_metadata")), pa.table({"image_id": [f"{i:04d}" for i in
                                                                                         range(447)]}))
    synthetic = synthetic_status(lakehouse)
    assert synthetic["images_present"] == 447 and synthetic["images"] == 250
    caution = page(synthetic)
    assert "This lakehouse holds 447 images; xray demo generated images into it on " in caution
    assert "250" not in caution


@pytest.mark.parametrize(("span", "expected"), [
    (dt.timedelta(0), "second"), (dt.timedelta(milliseconds=900), "second"), (dt.timedelta(seconds=40), "second"),
    (dt.timedelta(minutes=1), "5 seconds"), (dt.timedelta(minutes=20), "30 seconds"),
    (dt.timedelta(hours=6, minutes=15), "10 minutes"), (dt.timedelta(hours=20), "30 minutes"), (dt.timedelta(days=1), "hour"),
    (dt.timedelta(days=20), "day"), (dt.timedelta(days=200), "week"),
])
def test_time_bins_follow_the_span(span, expected):
    seconds, name = choose_bin(span)
    assert name == expected and span.total_seconds() / seconds < 48


def test_timeline_draws_one_second_bars_for_one_second_of_predictions(tmp_path):
    import matplotlib.image

    binned = [(T0, "NORMAL", 120), (T0, "PNEUMONIA", 120)]
    path = plot_predictions_over_time(binned, tmp_path / "t.png", *choose_bin(dt.timedelta(0)))
    assert matplotlib.image.imread(path).shape[:2] == (420, 900)


def test_titles_fit_their_figure(tmp_path):
    long = "Confusion matrix: a_model_name_as_long_as_a_unity_catalog_three_level_one v12, threshold 0.536"
    assert all(len(line) <= 6.5 * 9.5 for line in fitted_title(long, 6.5).splitlines())
    one = [evaluation("1", "test", 0.9)]
    one[0].model_name = "catalog.schema.xray_pneumonia_classifier_with_a_long_name"
    path = plot_confusion_matrices(one, tmp_path / "c.png")
    assert path.stat().st_size > 5000
