"""Gold scoring (streaming/gold/scoring.py): every image scored exactly once per champion."""

from __future__ import annotations

from support import table_rows

from streaming.lakehouse.engine import Lakehouse
from streaming.pipeline.service import run_stream


def test_images_ingested_without_champion_are_scored_once_when_one_appears(spark, config):
    """Gold inside bronze's batch skips scoring while no champion exists; the catch-up scores those
    images once (a second catch-up and a later batch write nothing twice)."""
    from imagefiles import stage_labelled_dataset

    from batch.training.retrain import retrain
    from streaming.gold import scoring as gold

    stage_labelled_dataset(config.landing_dir, per_class=20, split="train", seed=5)
    run_stream(spark, config, once=True)
    assert table_rows(config, "gold_pneumonia_predictions") == []
    retrain(spark, config)
    house = Lakehouse(spark, config)
    silver_ids = {r["image_id"] for r in table_rows(config, "silver_image_features")}
    assert gold.score_unscored(house) == len(silver_ids)
    assert gold.score_unscored(house) == 0
    stage_labelled_dataset(config.landing_dir, per_class=2, split="val", seed=6)
    run_stream(spark, config, once=True)
    predictions = table_rows(config, "gold_pneumonia_predictions")
    ids = [p["image_id"] for p in predictions]
    assert len(ids) == len(set(ids)) == len({r["image_id"] for r in table_rows(config, "silver_image_features")})
    assert all(p["true_label"] in ("NORMAL", "PNEUMONIA") for p in predictions)
