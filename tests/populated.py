"""A lakehouse populated with synthetic silver rows, radiologists' labels, a champion, gold predictions and
ops rows: shared by the retrain, metrics and status tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io

import numpy as np

from streaming.core.config import load_config
from streaming.imaging import features as feature_lib
from streaming.lakehouse.engine import Lakehouse

T0 = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.timezone.utc)


# split -> (patients per class, images per patient); labelled rows without split and unlabelled rows below.
LAYOUT = {"train": (14, 2), "test": (5, 2)}


_populated: dict = {}


def image_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_silver(lakehouse: Lakehouse, seed: int = 0, with_features: bool = True) -> list[dict]:
    """Write silver metadata (+ learnable features): PNEUMONIA shifts the first features up."""
    rng = np.random.default_rng(seed)
    metadata = []
    for split, (patients, per_patient) in LAYOUT.items():
        for label, label_name in ((0, "NORMAL"), (1, "PNEUMONIA")):
            for patient in range(patients):
                for image in range(per_patient):
                    metadata.append({"image_id": image_id(f"{split}/{label_name}/{patient}/{image}"),
                                     "label": label, "label_name": label_name, "split": split,
                                     "patient_id": image_id(f"patient-{split}-{label_name}-{patient}")})
    for index, (label, label_name) in enumerate(((0, "NORMAL"), (1, "PNEUMONIA"), (1, "PNEUMONIA"))):
        metadata.append({"image_id": image_id(f"nosplit/{index}"), "label": label, "label_name": label_name,
                         "split": None, "patient_id": None})
    for index in range(2):
        metadata.append({"image_id": image_id(f"unlabelled/{index}"), "label": None, "label_name": None,
                         "split": None, "patient_id": image_id("patient-unlabelled")})
    for row in metadata:
        row.update(processed_time=T0, width=256, height=256, mode="L", image_format="JPEG")
    lakehouse.append_rows("silver_xray_metadata", metadata)
    if with_features:
        length = feature_lib.FEATURE_LENGTH
        features = []
        for row in metadata:
            vector = rng.normal(0.0, 1.0, length).astype(np.float32)
            vector[: max(4, length // 8)] += 1.5 * (row["label"] or 0)
            features.append({"image_id": row["image_id"], "feature_version": feature_lib.FEATURE_VERSION,
                             "features": vector.tolist(), "processed_time": T0})
        lakehouse.append_rows("silver_image_features", features)
    return metadata


def ops_rows(lakehouse: Lakehouse) -> None:
    """Quarantine rows, pipeline events and a few hours of gold predictions."""
    lakehouse.append_rows("silver_quarantine", [
        {"rule": rule, "reason": "synthetic", "path_ref": f"ref{i}", "quarantined_time": T0}
        for i, rule in enumerate(("not_an_image", "not_an_image", "image_too_small"))
    ])
    lakehouse.append_rows("pipeline_events", [
        {"event_time": T0 + dt.timedelta(seconds=batch), "query": query, "batch_id": batch, "input_rows": 10,
         "output_rows": 9, "duplicate_rows": duplicates, "duration_ms": 50}
        for query, batch, duplicates in (("bronze", 0, 0), ("bronze", 1, 0), ("silver", 0, 2), ("silver", 1, 1))
    ])
    lakehouse.append_rows("gold_pneumonia_predictions", [
        {"prediction_id": image_id(f"p{i}"), "image_id": image_id(f"i{i}"),
         "predicted_label": ("NORMAL", "PNEUMONIA")[i % 2], "predicted_time": T0 + dt.timedelta(minutes=25 * i),
         "model_name": "m", "model_version": "1"}
        for i in range(16)
    ])


# Radiologists' labels recorded before the retrain: (silver image, reader, label). Training then sees
# overrides of train/NORMAL/0/* and train/NORMAL/1/0 (2 of 3 readers), a label agreeing with the folder,
# labels of the two unlabelled images, a disputed image (1 reader against 1) and a test image (never used).
FEEDBACK = (
    ("train/NORMAL/0/0", "Dr A", "PNEUMONIA"), ("train/NORMAL/0/1", "Dr A", "PNEUMONIA"),
    ("train/PNEUMONIA/0/0", "Dr A", "PNEUMONIA"),
    ("unlabelled/0", "Dr A", "NORMAL"), ("unlabelled/1", "Dr A", "NORMAL"),
    ("train/PNEUMONIA/1/0", "Dr A", "PNEUMONIA"), ("train/PNEUMONIA/1/0", "Dr B", "NORMAL"),
    ("train/NORMAL/1/0", "Dr A", "PNEUMONIA"), ("train/NORMAL/1/0", "Dr B", "PNEUMONIA"),
    ("train/NORMAL/1/0", "Dr C", "NORMAL"),
    ("test/PNEUMONIA/0/0", "Dr A", "NORMAL"),
)


def radiologist_feedback(config) -> list[dict]:  # XrayConfig
    """Record `FEEDBACK` as `xray feedback` does; returns the table rows."""
    from streaming.gold.feedback import FeedbackInput, check_feedback, record_feedback

    given = [FeedbackInput(n, image_id(image), label, reader) for n, (image, reader, label) in enumerate(FEEDBACK)]
    batch = check_feedback(given, {image_id(image) for image, _, _ in FEEDBACK}, config.patient_salt(), T0)
    assert not batch.rejected and record_feedback(config, batch.rows)["added"] == len(FEEDBACK)
    return batch.rows


def populated_lakehouse(spark, tmp_path_factory) -> dict:
    """One lakehouse with silver data, a champion and a metrics run; built once, shared with test_status."""
    if not _populated:
        from batch.evaluation.metrics import run_metrics
        from batch.training.retrain import retrain

        root = tmp_path_factory.mktemp("populated") / "lakehouse"
        config = load_config(environ={}, lakehouse=str(root), spark_master="local[2]", shuffle_partitions=2)
        lakehouse = Lakehouse(spark, config)
        lakehouse.ensure_tables()
        metadata = synthetic_silver(lakehouse)
        ops_rows(lakehouse)
        feedback = radiologist_feedback(config)
        trained = retrain(spark, config, seed=0)
        with contextlib.redirect_stdout(io.StringIO()) as printed:  # what `xray metrics` shows, for its test
            result = run_metrics(spark, config)
        _populated.update(config=config, lakehouse=lakehouse, metadata=metadata, trained=trained, result=result,
                          feedback=feedback, metrics_output=printed.getvalue())
    return _populated
