"""xray retrain (batch/training/retrain.py): refusal on too little data, the promotion rule."""

from __future__ import annotations

import pytest
from imagefiles import stage_labelled_dataset

from batch.training.retrain import decide_promotion, retrain
from streaming.core.errors import InsufficientDataError
from streaming.core.registry import champion, version_json
from streaming.gold.drift import REFERENCE, STATISTICS
from streaming.pipeline.service import run_stream


def test_retrain_refuses_too_little_data(spark, config):
    stage_labelled_dataset(config.landing_dir, per_class=3)
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    with pytest.raises(InsufficientDataError, match="cannot retrain"):
        retrain(spark, config)
    assert champion(config) is None


def test_promotion_rule():
    good = {"roc_auc": 0.95, "accuracy": 0.9}
    assert decide_promotion(good, None, force=False)[0]
    assert decide_promotion(good, {"roc_auc": 0.90, "accuracy": 0.95}, force=False)[0]
    assert not decide_promotion({"roc_auc": 0.90, "accuracy": 0.99}, good, force=False)[0]
    assert not decide_promotion(good, dict(good), force=False)[0]  # a tie keeps the champion
    assert decide_promotion({"roc_auc": 0.5, "accuracy": 0.5}, good, force=True)[0]


def test_the_registered_champion_labels_every_image_as_gold_does(spark, config):
    """MLflow's pyfunc of the champion and gold agree on every scored image and on images built to sit
    just either side of the threshold (where a second threshold rule would disagree first)."""
    import datetime as dt

    import mlflow.pyfunc
    import numpy as np
    import pyarrow as pa
    from deltalake import DeltaTable
    from sklearn.model_selection import FixedThresholdClassifier

    from streaming.core.registry import configure_mlflow, load_model
    from streaming.gold.scoring import score_batch

    stage_labelled_dataset(config.landing_dir, per_class=16, seed=4)
    run_stream(spark, config, once=True)
    result = retrain(spark, config)
    metrics = result.validation_metrics
    # The generalisation report: learned from 2 augmented copies per image, validated under perturbations.
    assert metrics["augmented_copies"] == 2 and metrics["images_without_bytes"] == 0
    assert 0.0 <= metrics["perturbed_worst_specificity"] <= metrics["perturbed_mean_specificity"] <= 1.0
    assert 0.0 <= metrics["accuracy_at_test_mix"] <= 1.0
    # The drift reference of its training images is stored with the version (streaming/gold/drift.py).
    reference = version_json(config, result.version, REFERENCE)
    assert set(reference["statistics"]) == set(STATISTICS) and reference["images"] == 32
    assert reference["prevalence"] == 0.5 and 0.0 < reference["predicted_prevalence"] < 1.0
    run_stream(spark, config, once=True)  # gold scores the images that waited for a champion
    configure_mlflow(config)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{config.model_name}@champion")
    served = load_model(config, result.version)
    assert isinstance(served, FixedThresholdClassifier)

    features = DeltaTable(str(config.table_path("silver_image_features"))).to_pyarrow_table().to_pylist()
    gold = {r["image_id"]: r["predicted_label"]
            for r in DeltaTable(str(config.table_path("gold_pneumonia_predictions"))).to_pyarrow_table().to_pylist()}
    assert len(gold) == len(features) == 32
    matrix = np.asarray([r["features"] for r in features], dtype=np.float32)
    labels = np.asarray(pyfunc.predict(matrix)).astype(int)
    assert {r["image_id"]: ("NORMAL", "PNEUMONIA")[label] for r, label in zip(features, labels, strict=True)} == gold

    # Walk from the most NORMAL to the most PNEUMONIA image and bisect to the threshold: points a hair
    # either side of it.
    probabilities = served.predict_proba(matrix)[:, 1]
    low, high = matrix[np.argmin(probabilities)], matrix[np.argmax(probabilities)]
    below, above = 0.0, 1.0
    for _ in range(40):
        middle = (below + above) / 2
        point = (low + middle * (high - low))[None].astype(np.float32)
        below, above = (middle, above) if served.predict_proba(point)[0, 1] < served.threshold else (below, middle)
    steps = np.linspace(below - 1e-5, above + 1e-5, 21)
    near = np.stack([low + t * (high - low) for t in steps]).astype(np.float32)
    near_probabilities = served.predict_proba(near)[:, 1]
    assert np.abs(near_probabilities - served.threshold).max() < 1e-3
    assert 0 < (near_probabilities >= served.threshold).sum() < len(near)  # both sides are there
    rows = pa.table({"image_id": [f"near{i}" for i in range(len(near))], "features": near.tolist(),
                     "label_name": [None] * len(near)})
    scored = score_batch(rows, served, result.version, "v", dt.datetime.now(dt.timezone.utc))
    assert [("NORMAL", "PNEUMONIA").index(p) for p in scored.column("predicted_label").to_pylist()] \
        == np.asarray(pyfunc.predict(near)).astype(int).tolist()
