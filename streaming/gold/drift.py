"""Drift: the images gold scores against the images the champion was trained on.

Five statistics per image, all already computed by silver (no extra pass over pixels):

- ``mean_intensity``, ``std_intensity``, ``dynamic_range``: silver's gray-level measures (exposure, contrast,
  the 1st-99th percentile range); an inverted image moves the mean, a washed-out one the other two;
- ``centre_level``: the mean of the central quarter of the feature vector's 16x16 z-scored thumbnail: the
  bright mediastinum between dark lungs makes it positive; inverted images make it negative (the features
  are z-scored, so global exposure does not move it);
- ``edge_strength``: the mean of the HOG block: sharp rib and vessel edges; blur lowers it.

``xray retrain`` stores the champion's reference with the model version (`build_reference`, an MLflow
artifact: `streaming.core.registry.log_version_json`): quintile edges and proportions of each statistic
over the training images, their PNEUMONIA prevalence and the share the model predicts PNEUMONIA. Gold keeps
a rolling window of the last ``drift_window_images`` scored images per lakehouse (in memory: it restarts
empty with the process, and with a new champion) and, once the window holds ``drift_min_images``, compares
it with the reference at every batch (`observe`): PSI per statistic, their maximum (``drift_psi``), and the
PSI of the predicted PNEUMONIA share against the reference's. A window rather than the batch alone: a
micro-batch of a few images would measure sampling noise (quintiles: expected PSI about 4/n images).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streaming.core.config import XrayConfig
from streaming.core.errors import first_line
from streaming.core.registry import ModelRef, version_json
from streaming.imaging.features import FEATURE_BLOCKS, FEATURE_LENGTH, FEATURE_VERSION
from streaming.quality.drift import psi, reference_bins, sample_psi

__all__ = ["MEASURES", "REFERENCE", "STATISTICS", "Drift", "DriftWindow", "build_reference", "image_statistics", "observe",
           "predicted_pneumonia"]

log = logging.getLogger(__name__)

STATISTICS = ("mean_intensity", "std_intensity", "dynamic_range", "centre_level", "edge_strength")
MEASURES = STATISTICS[:3]  # columns of silver's inspected rows and of silver_xray_metadata
REFERENCE = "drift_reference"  # the artifact (and version tag) holding a model's reference
REFERENCE_BINS = 5  # quintiles: see the module docstring
MIN_REFERENCE_IMAGES = 20  # a statistic known for fewer training images is left out of the reference
_PIXELS = FEATURE_BLOCKS["pixels"]
_SIDE = int(round((_PIXELS.stop - _PIXELS.start) ** 0.5))
_CENTRE = (np.arange(_SIDE * _SIDE).reshape(_SIDE, _SIDE)[_SIDE // 4:3 * _SIDE // 4, _SIDE // 4:3 * _SIDE // 4]
           .ravel() + _PIXELS.start)


def _feature_matrix(features: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The feature vectors as an (images, FEATURE_LENGTH) float array; NaN rows for a missing or foreign
    vector. One copy of the values, no per-float conversion."""
    column = features.combine_chunks() if isinstance(features, pa.ChunkedArray) else features
    rows = len(column)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    if column.null_count == 0 and bool(np.all(lengths == FEATURE_LENGTH)):
        return pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(rows, -1)
    matrix = np.full((rows, FEATURE_LENGTH), np.nan)
    for index, vector in enumerate(column.to_pylist()):
        if vector is not None and len(vector) == FEATURE_LENGTH:
            matrix[index] = vector
    return matrix


def image_statistics(rows: pa.Table, features: np.ndarray | None = None) -> np.ndarray:
    """The `STATISTICS` of each image, an (images, 5) float array, from silver's measures (columns of
    ``rows``) and the feature vectors (``features``, an (images, FEATURE_LENGTH) array, else the column of
    ``rows``): NaN where a value is missing (e.g. rows written before silver measured images)."""
    values = np.full((rows.num_rows, len(STATISTICS)), np.nan)
    for index, name in enumerate(MEASURES):
        if name in rows.column_names:
            column = pc.fill_null(rows.column(name).cast(pa.float64()), float("nan"))
            values[:, index] = column.to_numpy()
    if features is None and "features" in rows.column_names and rows.num_rows:
        features = _feature_matrix(rows.column("features"))
    if features is not None and len(features):
        matrix = np.asarray(features)
        values[:, STATISTICS.index("centre_level")] = matrix[:, _CENTRE].mean(axis=1, dtype=np.float64)
        values[:, STATISTICS.index("edge_strength")] = matrix[:, FEATURE_BLOCKS["hog"]].mean(axis=1, dtype=np.float64)
    return values


def predicted_pneumonia(predictions: pa.Table) -> np.ndarray:
    """1.0 where gold predicted PNEUMONIA, else 0.0."""
    return pc.equal(predictions.column("predicted_label"), "PNEUMONIA").to_numpy(zero_copy_only=False).astype(float)


def build_reference(statistics: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The reference of a model (JSON-ready) from its training images: each statistic's quintile edges and
    proportions (statistics known for too few images left out), the PNEUMONIA prevalence of the labels and
    the share of the images the model predicts PNEUMONIA."""
    bins = {}
    for index, name in enumerate(STATISTICS):
        column = statistics[:, index]
        if np.isfinite(column).sum() >= MIN_REFERENCE_IMAGES:
            bins[name] = reference_bins(column, REFERENCE_BINS)
    return {"format": 1, "feature_version": FEATURE_VERSION, "images": int(len(labels)), "statistics": bins,
            "prevalence": float(np.mean(labels)) if len(labels) else None,
            "predicted_prevalence": float(np.mean(predicted)) if len(predicted) else None}


@dataclass
class Drift:
    """What the window says at one batch: always the predicted PNEUMONIA share; the PSIs when the champion
    has a reference and the window holds enough images."""

    model_version: str
    window_images: int
    predicted_prevalence: float
    psi: dict[str, float] = field(default_factory=dict)
    prevalence_psi: float | None = None
    reference_prevalence: float | None = None
    reference_predicted_prevalence: float | None = None

    @property
    def drift_psi(self) -> float | None:
        return max(self.psi.values()) if self.psi else None

    def as_dict(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "window_images": self.window_images,
                "psi": {k: round(v, 4) for k, v in self.psi.items()},
                "prevalence_psi": None if self.prevalence_psi is None else round(self.prevalence_psi, 4),
                "predicted_prevalence": round(self.predicted_prevalence, 4),
                "reference_prevalence": self.reference_prevalence,
                "reference_predicted_prevalence": self.reference_predicted_prevalence}


class DriftWindow:
    """The last ``size`` scored images of one lakehouse (statistics and predictions) and the serving
    champion's reference; emptied when the champion changes."""

    def __init__(self, size: int, minimum: int):
        self.size, self.minimum = max(1, size), max(1, minimum)
        self.ref: ModelRef | None = None
        self.reference: dict[str, Any] | None = None
        self.statistics = np.zeros((0, len(STATISTICS)))
        self.predicted = np.zeros(0)
        self._lock = threading.Lock()

    def add(self, config: XrayConfig, ref: ModelRef, tags: dict[str, str], statistics: np.ndarray,
            predicted: np.ndarray) -> Drift:
        with self._lock:
            if ref != self.ref:
                self.ref, self.reference = ref, _load_reference(config, ref, tags)
                self.statistics, self.predicted = np.zeros((0, len(STATISTICS))), np.zeros(0)
            self.statistics = np.concatenate([self.statistics, statistics])[-self.size:]
            self.predicted = np.concatenate([self.predicted, predicted])[-self.size:]
            return compare(self.reference, self.statistics, self.predicted, ref.version, self.minimum)


def compare(reference: dict[str, Any] | None, statistics: np.ndarray, predicted: np.ndarray, model_version: str,
            minimum: int) -> Drift:
    """The window against the reference (pure): PSIs only for statistics with at least ``minimum`` values."""
    drift = Drift(model_version, len(predicted), float(np.mean(predicted)) if len(predicted) else 0.0)
    if reference is None or len(predicted) < minimum:
        return drift
    for name, bins in reference["statistics"].items():
        column = statistics[:, STATISTICS.index(name)]
        if np.isfinite(column).sum() >= minimum:
            drift.psi[name] = sample_psi(bins, column)
    drift.reference_prevalence = reference.get("prevalence")
    expected = reference.get("predicted_prevalence")
    drift.reference_predicted_prevalence = expected
    if expected is not None:
        drift.prevalence_psi = psi([1 - expected, expected], [1 - drift.predicted_prevalence,
                                                              drift.predicted_prevalence])
    return drift


def _load_reference(config: XrayConfig, ref: ModelRef, tags: dict[str, str]) -> dict[str, Any] | None:
    """The champion's reference; None (said once, at the switch to this champion) when it has none."""
    try:
        reference = version_json(config, ref, REFERENCE, tags)
    except Exception as error:  # drift must never stop scoring
        log.warning("drift: cannot read the training reference of model %s v%s (%s); drift is not computed "
                    "for it", ref.name, ref.version, first_line(error))
        return None
    if reference is None:
        log.info("drift: model %s v%s has no training reference (registered before drift monitoring, or not by "
                 "xray retrain); only the predicted prevalence is recorded until the next xray retrain",
                 ref.name, ref.version)
    return reference


_windows: dict[str, DriftWindow] = {}
_windows_lock = threading.Lock()


def observe(config: XrayConfig, ref: ModelRef, tags: dict[str, str], rows: pa.Table,
            predictions: pa.Table) -> Drift | None:
    """Add a batch's scored images (``rows``: statistics columns; ``predictions``: gold's rows for them,
    same order) to the lakehouse's window and compare it with the champion's reference."""
    if predictions.num_rows == 0:
        return None
    key = str(config.tables_dir)
    with _windows_lock:
        window = _windows.get(key)
        if window is None or (window.size, window.minimum) != (config.drift_window_images, config.drift_min_images):
            window = _windows[key] = DriftWindow(config.drift_window_images, config.drift_min_images)
    return window.add(config, ref, tags, image_statistics(rows), predicted_pneumonia(predictions))
