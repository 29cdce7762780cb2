"""The radiologists' images as one more split of ``xray metrics``: ``feedback``.

Its images are those readers confirmed (`streaming.gold.feedback.decide_labels`: the majority label; a
disputed image is left out), of any split, with their current-version features; its labels are the
readers'. Each evaluated version gets a ``gold_model_performance`` row for it like any split: ``accuracy``
there is the version's agreement with the readers. The champion may have trained on these images outside
split test (`xray retrain` uses confirmed labels), so the figure is labelled in-sample like train's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.sql import functions as F

from batch.evaluation.figures import FEEDBACK_SPLIT
from streaming.core.names import LABEL_CODES
from streaming.gold.feedback import cohen_kappa, decide_labels, read_feedback
from streaming.imaging import features as feature_lib
from streaming.lakehouse.catalog import SILVER_FEATURES
from streaming.lakehouse.engine import Lakehouse

__all__ = ["FEEDBACK_SPLIT", "agreement_line", "feedback_split"]


def feedback_split(lakehouse: Lakehouse) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"feedback": (X, y)}`` over the confirmed images with features of the current version; empty
    without feedback (no Spark job then)."""
    table = read_feedback(lakehouse.config, columns=("image_id", "reader_label"))
    confirmed = decide_labels(table.to_pylist()).confirmed if table is not None else {}
    if not confirmed:
        return {}
    import pyarrow as pa

    # From Arrow: a local relation in the JVM, no Python worker to start.
    labels = lakehouse.spark.createDataFrame(pa.table({
        "image_id": pa.array(list(confirmed), pa.string()),
        "label": pa.array([LABEL_CODES[label] for label in confirmed.values()], pa.int32())}))
    rows = (lakehouse.read(SILVER_FEATURES.name).where(F.col("feature_version") == feature_lib.FEATURE_VERSION)
            .join(F.broadcast(labels), "image_id").select("image_id", "features", "label")
            .dropDuplicates(["image_id"]).orderBy("image_id").toArrow())
    if rows.num_rows == 0:
        return {}
    X = np.asarray(rows.column("features").to_pylist(), dtype=np.float32)
    return {FEEDBACK_SPLIT: (X, np.asarray(rows.column("label").to_pylist(), dtype=int))}


def agreement_line(version: str, metrics: dict[str, Any]) -> str:
    """What ``xray metrics`` prints of a version's agreement with the readers."""
    matrix = metrics.get("confusion_matrix") or [[0, 0], [0, 0]]
    n, agreeing = int(np.sum(matrix)), int(np.trace(np.asarray(matrix)))
    kappa = cohen_kappa(matrix)
    return (f"radiologist feedback: version {version} agrees with the readers on {agreeing} of {n} confirmed "
            f"image(s) ({agreeing / n:.1%}), Cohen's kappa {'-' if kappa is None else f'{kappa:.3f}'}"
            if n else f"radiologist feedback: no confirmed image has features of version {feature_lib.FEATURE_VERSION}")
