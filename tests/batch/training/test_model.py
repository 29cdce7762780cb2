"""The classifier: patient-grouped split, threshold, metrics, pickling, refusal on too little data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from batch.training.model import (
    InsufficientTrainingData,
    ThresholdedClassifier,
    TrainResult,
    build_pipeline,
    evaluate,
    fit_and_validate,
    operating_point,
    patient_grouped_split,
)
from streaming.core.paths import parse_xray_path
from streaming.imaging.features import FEATURE_LENGTH, features_from_bytes
from streaming.imaging.synthetic import write_synthetic_dataset

METRIC_KEYS = {"accuracy", "roc_auc", "precision", "recall", "specificity", "f1", "threshold"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Features, labels and patients of ~120 synthetic images written in the Kaggle layout."""
    root = tmp_path_factory.mktemp("synthetic")
    paths = write_synthetic_dataset(root, per_class=60, splits=("train",), seed=11)
    infos = [parse_xray_path(str(path)) for path in paths]
    X = np.stack([features_from_bytes(path.read_bytes()) for path in paths])
    y = np.array([int(info.label == "PNEUMONIA") for info in infos])
    groups = [info.patient_key for info in infos]
    return X, y, groups


@pytest.fixture(scope="module")
def trained(synthetic) -> TrainResult:
    X, y, groups = synthetic
    return fit_and_validate(X, y, groups, seed=0)


def test_grouped_split_has_no_patient_on_both_sides():
    rng = np.random.default_rng(0)
    groups = [f"p{int(i)}" for i in rng.integers(0, 60, 400)]
    labels = [int(g[1:]) % 3 == 0 for g in groups]  # the label is a property of the patient
    for seed in range(4):
        train, validation = patient_grouped_split(groups, labels, validation_fraction=0.2, seed=seed)
        assert len(train) + len(validation) == len(groups)
        assert not set(train) & set(validation)
        assert not {groups[i] for i in train} & {groups[i] for i in validation}
        assert set(np.asarray(labels)[validation]) == {False, True}
        assert 0.1 < len(validation) / len(groups) < 0.35


def test_grouped_split_is_deterministic_and_seeded():
    groups = [f"p{i // 2}" for i in range(100)]
    labels = [(i // 2) % 2 for i in range(100)]
    first = patient_grouped_split(groups, labels, seed=3)
    again = patient_grouped_split(groups, labels, seed=3)
    other = patient_grouped_split(groups, labels, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_grouped_split_treats_missing_patients_as_their_own_group():
    train, validation = patient_grouped_split([None] * 20, [0, 1] * 10, seed=0)
    assert len(train) + len(validation) == 20 and len(validation) > 0


def test_grouped_split_needs_two_patients():
    with pytest.raises(ValueError, match="two patients"):
        patient_grouped_split(["same"] * 10, [0, 1] * 5)


def test_fit_and_validate_learns_the_synthetic_classes(trained, synthetic):
    X, y, groups = synthetic
    metrics = trained.validation_metrics
    assert METRIC_KEYS | {"n_train", "n_validation"} <= set(metrics)
    assert metrics["accuracy"] >= 0.9, metrics
    assert metrics["roc_auc"] >= 0.95, metrics
    assert metrics["n_train"] + metrics["n_validation"] == len(y)
    train_patients = {groups[i] for i in trained.train_index}
    assert not train_patients & {groups[i] for i in trained.validation_index}
    assert 0.0 < trained.model.threshold < 1.0
    assert metrics["threshold"] == trained.model.threshold


def test_the_model_is_sklearns_fixed_threshold_classifier(trained, synthetic):
    from sklearn.model_selection import FixedThresholdClassifier

    X, _, _ = synthetic
    model = trained.model
    assert isinstance(model, FixedThresholdClassifier)
    probabilities = model.predict_proba(X)
    assert probabilities.shape == (len(X), 2) and np.allclose(probabilities.sum(axis=1), 1.0)
    assert list(model.classes_) == [0, 1]
    assert np.array_equal(model.predict(X), (probabilities[:, 1] >= model.threshold).astype(int))
    assert model.estimator.n_features_in_ == FEATURE_LENGTH
    restored = pickle.loads(pickle.dumps(model))
    assert restored.threshold == model.threshold
    assert np.array_equal(restored.predict(X), model.predict(X))


def test_an_older_thresholded_classifier_still_predicts_with_its_threshold(trained, synthetic):
    X, _, _ = synthetic
    legacy = ThresholdedClassifier(trained.model.estimator.estimator, threshold=0.7)
    restored = pickle.loads(pickle.dumps(legacy))
    assert np.array_equal(restored.predict(X), (restored.predict_proba(X)[:, 1] >= 0.7).astype(int))
    assert ThresholdedClassifier(legacy.pipeline, threshold=1.01).predict(X).sum() == 0


def test_evaluate_reports_metrics_and_confusion_matrix():
    class Fixed:
        threshold = 0.5

        def predict_proba(self, X):
            p = np.asarray(X, dtype=float)[:, 0]
            return np.column_stack([1 - p, p])

    X = np.array([[0.1], [0.6], [0.4], [0.9], [0.8], [0.2]])
    y = np.array([0, 0, 1, 1, 1, 0])
    metrics = evaluate(Fixed(), X, y)
    assert metrics["confusion_matrix"] == [[2, 1], [1, 2]]
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["specificity"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["roc_auc"] == pytest.approx(8 / 9)
    assert metrics["threshold"] == 0.5 and metrics["n"] == 6
    # One class only: no ROC AUC, no division by zero.
    single = evaluate(Fixed(), X[y == 1], y[y == 1])
    assert single["roc_auc"] is None and single["specificity"] == 0.0


def test_operating_point_meets_the_sensitivity_target_with_the_most_specificity():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.62, 0.55, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95, 0.97, 0.99])
    point = operating_point(y, scores, target_sensitivity=0.9)
    # 9 of 10 PNEUMONIA needs the threshold at or below 0.6: halfway to the next lower score (0.55).
    assert point.threshold == pytest.approx(0.575)
    assert point.sensitivity == pytest.approx(0.9) and point.specificity == pytest.approx(0.75)
    strict = operating_point(y, scores, target_sensitivity=1.0)
    assert strict.sensitivity == 1.0 and strict.specificity == pytest.approx(0.75)
    assert strict.threshold == pytest.approx(0.425)  # halfway between the 0.55 PNEUMONIA and the 0.3 NORMAL
    loose = operating_point(y, scores, target_sensitivity=0.5)
    assert loose.threshold > point.threshold and loose.specificity == 1.0
    assert operating_point(np.ones(5), np.linspace(0, 1, 5)).threshold == 0.5


def test_validation_reports_the_operating_point(trained):
    metrics = trained.validation_metrics
    assert metrics["target_sensitivity"] == 0.95 and metrics["oof_sensitivity"] >= 0.95
    assert 0.0 <= metrics["oof_specificity"] <= 1.0
    assert trained.operating_point.threshold == trained.model.threshold


def test_build_pipeline_handles_class_imbalance():
    pipeline = build_pipeline(random_state=0)
    assert pipeline.get_params()["classify__class_weight"] == "balanced"


@pytest.mark.parametrize(
    ("n_normal", "n_pneumonia", "patients"),
    [(3, 30, 30), (30, 5, 30), (12, 12, 3), (0, 40, 40)],
)
def test_insufficient_training_data(n_normal, n_pneumonia, patients):
    rng = np.random.default_rng(0)
    y = np.array([0] * n_normal + [1] * n_pneumonia)
    X = rng.normal(size=(len(y), 8)).astype(np.float32)
    groups = [f"p{i % patients}" for i in range(len(y))]
    with pytest.raises(InsufficientTrainingData) as raised:
        fit_and_validate(X, y, groups)
    message = str(raised.value)
    assert f"NORMAL={n_normal} images" in message and f"PNEUMONIA={n_pneumonia} images" in message
    assert "need at least 10 images" in message
    assert isinstance(raised.value, ValueError)


def test_fit_and_validate_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        fit_and_validate(np.zeros((30, 4)), np.arange(30) % 3, [str(i) for i in range(30)])
