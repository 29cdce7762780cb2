"""Champion choice across families (batch/training/comparison.py): a new version of either family meets a
champion of the other on the same held-out images the champion never saw, each reading its own input of
them (features or frames), clean and under the same perturbations; the rule (ROC AUC, then the worst
perturbed view within a margin). Real Spark, Delta and MLflow; silver rows written directly: small frames
whose features are computed from them, learnable by both families. The cross-family test needs JAX."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from batch.training.comparison import PERTURBED_MARGIN, RECORDED, decide_promotion
from streaming.imaging import cnn
from streaming.imaging.features import FEATURE_SIZE, FEATURE_VERSION, extract_features
from streaming.lakehouse.engine import Lakehouse

needs_jax = pytest.mark.skipif(not cnn.available(), reason=cnn.missing_reason() or "")


def test_the_rule_ranks_by_roc_auc_and_guards_the_worst_perturbed_view():
    champion = {"roc_auc": 0.90, "accuracy": 0.85, "perturbed_worst_roc_auc": 0.80}
    better = {"roc_auc": 0.95, "accuracy": 0.80, "perturbed_worst_roc_auc": 0.80 - PERTURBED_MARGIN}
    assert decide_promotion(better, champion, force=False) == (True, "beats the champion on the same validation "
                                                                     "patients")
    fragile = dict(better, perturbed_worst_roc_auc=0.80 - PERTURBED_MARGIN - 0.01)
    promoted, reason = decide_promotion(fragile, champion, force=False)
    assert not promoted and "not under perturbation (worst perturbed ROC AUC 0.770 against 0.800" in reason
    assert decide_promotion(fragile, {"roc_auc": 0.90, "accuracy": 0.85}, force=False)[0]  # no view to compare
    assert not decide_promotion(dict(champion), champion, force=False)[0]  # a tie keeps the champion
    assert decide_promotion(fragile, champion, force=True)[0]


def _silver(lakehouse: Lakehouse, batch: int, images: int, seed: int, frames: bool = True) -> None:
    """``images`` labelled silver rows of silver batch ``batch``: noisy frames, PNEUMONIA (every second one)
    with a bright blob; features computed from the frames (kept unless not ``frames``: rows from before
    silver kept frames); two images a patient, one of each class."""
    rng = np.random.default_rng(seed)
    metadata, features = [], []
    for index in range(images):
        label = index % 2
        frame = rng.normal(100, 20, (FEATURE_SIZE, FEATURE_SIZE))
        if label:
            frame[40:80, 20:60] += 60
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        image_id = hashlib.sha256(f"{seed}/{index}".encode()).hexdigest()
        metadata.append({"image_id": image_id, "label": label, "label_name": ("NORMAL", "PNEUMONIA")[label],
                         "split": "train", "patient_id": f"patient-{seed}-{index // 2}"})
        features.append({"image_id": image_id, "feature_version": FEATURE_VERSION, "silver_batch_id": batch,
                         "features": extract_features(frame / 255.0).tolist(),
                         "frame": frame.tobytes() if frames else None})
    lakehouse.append_rows("silver_xray_metadata", metadata)
    lakehouse.append_rows("silver_image_features", features)


def _compared(result, forced: bool = False) -> None:
    """The comparison ran on unseen images, clean and perturbed, for both models (a forced promotion
    records it without saying it)."""
    if not forced:
        assert "validation images the champion never saw, clean and under 10 perturbations" in result.reason
        assert RECORDED not in result.reason
    for figures in (result.champion_metrics, {k[len("compared_"):]: v for k, v in result.validation_metrics.items()
                                              if k.startswith("compared_")}):
        assert 0.0 <= figures["perturbed_worst_roc_auc"] <= figures["perturbed_mean_roc_auc"] <= 1.0
        assert figures["roc_auc"] is not None and 0.0 <= figures["accuracy"] <= 1.0


@needs_jax
def test_a_new_version_meets_a_champion_of_the_other_family_on_the_same_images(spark, config):
    from batch.training.retrain import retrain
    from streaming.core.registry import champion, version_tags

    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    _silver(lakehouse, 0, 40, seed=1)
    first = retrain(spark, config)  # sklearn, trained through silver batch 0
    assert first.promoted and version_tags(config, first.version)["model_family"] == "sklearn"

    _silver(lakehouse, 1, 160, seed=2)  # new images: the champion never saw them
    network = retrain(spark, config.with_overrides(model_family="cnn", retrain_max_minutes=2), force_promote=True)
    _compared(network, forced=True)  # a cnn retrain against a sklearn champion: features for it, frames for the network
    assert champion(config) == network.version
    assert "validation_perturbed_worst_roc_auc" in version_tags(config, network.version)  # for a later fallback

    _silver(lakehouse, 2, 160, seed=3)
    again = retrain(spark, config, seed=1)  # a sklearn retrain against the cnn champion: its frames are read
    _compared(again)
    expected = decide_promotion({k[len("compared_"):]: v for k, v in again.validation_metrics.items()
                                 if k.startswith("compared_")}, again.champion_metrics, force=False)
    assert again.promoted == expected[0] and again.reason.startswith(expected[1])
    assert champion(config) == (again.version if again.promoted else network.version)


@needs_jax
def test_the_budget_bounds_the_whole_retrain_and_the_command_says_it_stopped_training(spark, config, capsys):
    """A budget already spent (the command started 10 minutes ago, a 1-minute budget): one epoch, the floor,
    and the command says the budget stopped it."""
    import time

    from batch.training.cnnfamily import after_training
    from batch.training.retrain import retrain

    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    _silver(lakehouse, 0, 40, seed=4)
    capsys.readouterr()
    result = retrain(spark, config.with_overrides(model_family="cnn", retrain_max_minutes=1),
                     started=time.time() - 600)
    metrics = result.validation_metrics
    assert metrics["epochs"] == 1 and metrics["stopped_by_budget"]
    assert metrics["budget_reserved_seconds"] >= after_training(40, 8, 6)(0.0)  # registration at least
    assert "training stopped by the time budget after 1 epoch(s) (best 1): --max-minutes 1 bounds the whole " \
           "command" in capsys.readouterr().out
    # The reserve: every image scored after training, at the measured cost, plus MLflow's time.
    assert after_training(100, 20, 16)(0.01) == pytest.approx(0.01 * (16 + 100 + 2 * 20 * 11) + 30.0)


def test_two_sklearn_versions_compare_on_clean_images_when_silver_keeps_no_frames(spark, config):
    from batch.training.retrain import retrain

    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    _silver(lakehouse, 0, 40, seed=5, frames=False)
    retrain(spark, config)
    _silver(lakehouse, 1, 160, seed=6, frames=False)
    again = retrain(spark, config, seed=1)
    assert "validation images the champion never saw, clean only (too few of them keep a frame" in again.reason
    assert set(again.champion_metrics) == {"accuracy", "roc_auc"}
