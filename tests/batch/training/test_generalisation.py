"""The generalisation report (batch/training/generalisation.py) and training with augmented copies."""

from __future__ import annotations

import numpy as np
import pytest

from batch.training.generalisation import TEST_MIX_PNEUMONIA, at_test_mix, perturbation_report
from batch.training.model import fit_and_validate, fit_pipeline


def separable(n: int = 120, features: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(0, 1, (n, features)).astype(np.float32)
    X[:, 0] += 2.5 * y
    return X, y, [f"p{i // 2}" for i in range(n)]


def test_accuracy_at_the_test_mix_weights_sensitivity_and_specificity():
    assert at_test_mix({"recall": 1.0, "specificity": 0.0}) == TEST_MIX_PNEUMONIA
    assert at_test_mix({"recall": 0.9, "specificity": 0.5}) == pytest.approx(0.625 * 0.9 + 0.375 * 0.5)


def test_perturbation_report_gives_each_change_and_the_worst_and_mean():
    X, y, groups = separable()
    model = fit_and_validate(X, y, groups).model
    shifted = X.copy()
    shifted[:, 0] += 2.0  # every image looks sicker: specificity collapses, ranking survives
    report = perturbation_report(model, np.stack([X, shifted], axis=1), y, ("none", "brighter"))
    assert set(report["perturbations"]) == {"none", "brighter"}
    brighter, none = report["perturbations"]["brighter"], report["perturbations"]["none"]
    assert brighter["specificity"] < none["specificity"] - 0.3
    assert report["perturbed_worst_specificity"] == brighter["specificity"]
    assert report["perturbed_mean_specificity"] == pytest.approx((brighter["specificity"] + none["specificity"]) / 2)
    assert abs(brighter["roc_auc"] - none["roc_auc"]) < 1e-9  # a shift of every score keeps the ranking


def test_training_learns_from_the_augmented_copies_of_its_rows_only():
    X, y, groups = separable()
    copies = np.stack([X + 0.1, X - 0.1], axis=1)
    pipeline = fit_pipeline(X, y, np.arange(10), 0, copies)
    assert pipeline.named_steps["scale"].n_samples_seen_ == 30  # 10 rows and their 2 copies each
    result = fit_and_validate(X, y, groups, augmented=copies)
    assert result.validation_metrics["augmented_copies"] == 2
    assert result.held_out_model.estimator.estimator.named_steps["scale"].n_samples_seen_ \
        == 3 * result.validation_metrics["n_train"]
