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
    patient_grouped_split,
    tune_threshold,
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


def test_thresholded_classifier_predicts_with_its_threshold(trained, synthetic):
    X, _, _ = synthetic
    model = trained.model
    probabilities = model.predict_proba(X)
    assert probabilities.shape == (len(X), 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert list(model.classes_) == [0, 1]
    assert np.array_equal(model.predict(X), (probabilities[:, 1] >= model.threshold).astype(int))
    strict = ThresholdedClassifier(model.pipeline, threshold=1.01)
    assert strict.predict(X).sum() == 0
    assert model.n_features_in_ == FEATURE_LENGTH


def test_thresholded_classifier_pickles_round_trip(trained, synthetic):
    X, _, _ = synthetic
    restored = pickle.loads(pickle.dumps(trained.model))
    assert isinstance(restored, ThresholdedClassifier)
    assert restored.threshold == trained.model.threshold
    assert np.array_equal(restored.predict_proba(X), trained.model.predict_proba(X))
    assert np.array_equal(restored.predict(X), trained.model.predict(X))


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


def test_tune_threshold_maximises_balanced_accuracy():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.62, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95, 0.99])
    threshold = tune_threshold(y, scores)
    # Best: above the 0.62 normal (J = 7/8 - 0) rather than above 0.3 (J = 1 - 1/4); halfway to 0.7.
    assert threshold == pytest.approx(0.66)
    # Separable classes: the threshold sits between them.
    assert 0.3 < tune_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.7, 0.9])) < 0.7
    assert tune_threshold(np.ones(5), np.linspace(0, 1, 5)) == 0.5


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
