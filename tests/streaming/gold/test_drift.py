"""Drift statistics, the reference and the window (streaming/gold/drift.py), on real decoded images: no
Spark, no registry."""

from __future__ import annotations

import io
import logging

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageFilter, ImageOps

from streaming.core.registry import ModelRef
from streaming.gold.drift import STATISTICS, DriftWindow, build_reference, compare, image_statistics
from streaming.imaging.images import inspect_image
from streaming.imaging.synthetic import make_xray_jpeg

SCHEMA = pa.schema([("mean_intensity", pa.float64()), ("std_intensity", pa.float64()),
                    ("dynamic_range", pa.float64()), ("features", pa.list_(pa.float32()))])


def changed(content: bytes, change) -> bytes:
    buffer = io.BytesIO()
    change(Image.open(io.BytesIO(content)).convert("L")).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def inspected(contents: list[bytes]) -> pa.Table:
    rows = []
    for content in contents:
        result = inspect_image(content, 40_000_000, "JPEG")
        rows.append({"mean_intensity": result.mean_intensity, "std_intensity": result.std_intensity,
                     "dynamic_range": result.dynamic_range, "features": np.asarray(result.features).tolist()})
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def column(values: np.ndarray, name: str) -> np.ndarray:
    return values[:, STATISTICS.index(name)]


def test_inverted_and_blurred_images_move_their_statistics():
    originals = [make_xray_jpeg(("NORMAL", "PNEUMONIA")[i % 2], i) for i in range(6)]
    base = image_statistics(inspected(originals))
    inverted = image_statistics(inspected([changed(c, ImageOps.invert) for c in originals]))
    blurred = image_statistics(inspected([changed(c, lambda im: im.filter(ImageFilter.GaussianBlur(4)))
                                          for c in originals]))
    assert np.isfinite(base).all()
    assert column(inverted, "mean_intensity") == pytest.approx(255 - column(base, "mean_intensity"), abs=2)
    assert (column(base, "centre_level") > 0).all() and (column(inverted, "centre_level") < 0).all()
    assert (column(blurred, "edge_strength") < column(base, "edge_strength")).all()
    # The features as a matrix (retrain's) or as the Arrow column (gold's) give the same statistics.
    rows = inspected(originals)
    matrix = np.asarray(rows.column("features").to_pylist(), dtype=np.float32)
    assert image_statistics(rows.drop_columns(["features"]), matrix) == pytest.approx(base)


def test_a_reference_leaves_out_unknown_statistics_and_the_window_needs_enough_images():
    rng = np.random.default_rng(1)
    training = rng.normal(0, 1, (200, len(STATISTICS)))
    training[:, 0] = np.nan  # e.g. silver rows written before the measures existed
    labels = (rng.random(200) < 0.7).astype(float)
    reference = build_reference(training, labels, labels)
    assert set(reference["statistics"]) == set(STATISTICS[1:])
    assert reference["prevalence"] == reference["predicted_prevalence"] == pytest.approx(labels.mean())

    window = rng.normal(0, 1, (100, len(STATISTICS)))
    predicted = np.ones(100)
    too_few = compare(reference, window, predicted, "3", minimum=101)
    assert too_few.psi == {} and too_few.drift_psi is None and too_few.predicted_prevalence == 1.0
    assert compare(None, window, predicted, "3", minimum=10).drift_psi is None
    drift = compare(reference, window, predicted, "3", minimum=100)
    assert set(drift.psi) == set(STATISTICS[1:]) and drift.drift_psi < 0.25
    assert drift.prevalence_psi > 0.25  # everything predicted PNEUMONIA against 70 % in training
    assert drift.as_dict()["window_images"] == 100


def test_the_window_keeps_the_last_images_and_empties_for_a_new_champion(config, caplog):
    """Champions without a reference (tags without one: no registry read): the predicted prevalence only,
    and one log line per champion."""
    caplog.set_level(logging.INFO, logger="streaming.gold.drift")
    window = DriftWindow(size=5, minimum=2)
    first, second = ModelRef("m", "1"), ModelRef("m", "2")
    statistics = np.zeros((3, len(STATISTICS)))
    assert window.add(config, first, {}, statistics, np.array([1, 1, 1.0])).window_images == 3
    drift = window.add(config, first, {}, statistics, np.array([0, 0, 0.0]))
    assert (drift.window_images, drift.predicted_prevalence) == (5, pytest.approx(0.4))
    assert window.add(config, second, {}, statistics[:1], np.array([1.0])).window_images == 1
    said = [r.getMessage() for r in caplog.records if "no training reference" in r.getMessage()]
    assert len(said) == 2 and "m v1 " in said[0] and "m v2 " in said[1]
