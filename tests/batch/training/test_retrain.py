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


def test_confirmed_labels_win_over_folder_labels_and_are_counted(spark, tmp_path_factory):
    """The shared lakehouse's retrain ran after radiologists' labels (tests/populated.py, FEEDBACK): it
    trained on their labels, left the disputed and the test images alone, and said how many it used."""
    from populated import image_id, populated_lakehouse

    from batch.training.confirmed import confirmed_labels
    from batch.training.retrain import TRAINING_SPLITS_EXCLUDED, collect_labelled, labelled_features
    from streaming.core.registry import configure_mlflow, version_tags

    shared = populated_lakehouse(spark, tmp_path_factory)
    lakehouse, trained = shared["lakehouse"], shared["trained"]
    overrides = [image_id(i) for i in ("train/NORMAL/0/0", "train/NORMAL/0/1", "train/NORMAL/1/0")]
    added, disputed, test = [image_id("unlabelled/0"), image_id("unlabelled/1")], image_id("train/PNEUMONIA/1/0"), \
        image_id("test/PNEUMONIA/0/0")
    assert trained.feedback == {"n_feedback_labels": 6, "n_feedback_overrides": len(overrides),
                                "n_feedback_added": len(added), "n_feedback_disputed": 1, "n_feedback_test_images": 1}

    with_readers = collect_labelled(labelled_features(
        lakehouse, confirmed=confirmed_labels(lakehouse, TRAINING_SPLITS_EXCLUDED)))
    folders_only = collect_labelled(labelled_features(lakehouse))
    label = dict(zip(with_readers.image_ids, with_readers.y.tolist(), strict=True))
    folder = dict(zip(folders_only.image_ids, folders_only.y.tolist(), strict=True))
    assert [folder[i] for i in overrides] == [0, 0, 0] and [label[i] for i in overrides] == [1, 1, 1]
    assert [label[i] for i in added] == [0, 0] and not set(added) & set(folder)
    assert disputed in folder and disputed not in label
    assert test not in label and test not in folder  # test is never trained on, feedback or not
    assert set(label) == (set(folder) | set(added)) - {disputed}

    run = configure_mlflow(shared["config"]).get_run(version_tags(shared["config"], trained.version)["run_id"])
    assert run.data.params["n_labelled"] == str(len(label))
    assert {k: int(v) for k, v in run.data.params.items() if k.startswith("n_feedback_")} == trained.feedback
