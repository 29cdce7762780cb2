"""xray retrain (batch/training/retrain.py): refusal on too little data, the promotion rule."""

from __future__ import annotations

import pytest
from imagefiles import stage_labelled_dataset

from batch.training.retrain import decide_promotion, retrain
from streaming.core.errors import InsufficientDataError
from streaming.core.registry import champion
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
