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


def test_a_champion_lost_while_streaming_leaves_images_pending_and_the_stream_catches_up(spark, config, tmp_path):
    """The MLflow store removed under a running stream: the batch's images are recorded as pending (a gold
    event, a model_unavailable alert), never a silent gap; once the store is back the same running stream
    scores them by itself, each image once."""
    import shutil
    import threading

    import numpy as np
    from imagefiles import stage_labelled_dataset
    from support import wait_until

    from batch.bench.champion import register_champion
    from streaming.imaging.features import FEATURE_VERSION
    from streaming.lakehouse.alerts import close_alerts

    config = config.with_overrides(trigger_seconds=0.5)
    stage_labelled_dataset(config.landing_dir, per_class=6, split="train", seed=7)
    run_stream(spark, config, once=True)  # silver only: no champion yet
    labels = {r["image_id"]: r["label"] for r in table_rows(config, "silver_xray_metadata", ["image_id", "label"])}
    features = table_rows(config, "silver_image_features", ["image_id", "features"])
    register_champion(config.root, np.asarray([r["features"] for r in features], dtype=np.float32),
                      np.asarray([labels[r["image_id"]] for r in features]), FEATURE_VERSION)

    def scored() -> set[str]:
        return {r["image_id"] for r in table_rows(config, "gold_pneumonia_predictions", ["image_id"])}

    def silver() -> set[str]:
        return {r["image_id"] for r in table_rows(config, "silver_image_features", ["image_id"])}

    stop = threading.Event()
    stream = threading.Thread(target=run_stream, args=(spark, config), kwargs={"stop_event": stop}, daemon=True)
    stream.start()
    try:
        assert wait_until(lambda: scored() == silver(), timeout=300), "the running stream scores silver at start"
        store, kept = config.root / "mlflow", tmp_path / "mlflow-backup"
        shutil.move(store, kept)  # the store is gone while the stream runs
        stage_labelled_dataset(config.landing_dir, per_class=2, split="val", seed=8)

        def pending_events() -> list[dict]:
            rows = table_rows(config, "pipeline_events", ["query", "input_rows", "output_rows", "message"])
            return [r for r in rows if r["query"] == "gold" and (r["message"] or "").startswith("pending: ")]

        assert wait_until(lambda: len(silver()) == 16 and pending_events(), timeout=300)
        assert pending_events()[0]["input_rows"] == 4 and pending_events()[0]["output_rows"] == 0
        assert "no longer readable in the MLflow registry" in pending_events()[0]["message"]
        assert len(scored()) == 12  # the new images wait, said to be pending

        shutil.move(kept, store)  # restored from the backup
        assert wait_until(lambda: scored() == silver(), timeout=300), "the stream catches up by itself"
    finally:
        stop.set()
        stream.join(timeout=300)
    predictions = [r["image_id"] for r in table_rows(config, "gold_pneumonia_predictions", ["image_id"])]
    assert len(predictions) == len(set(predictions)) == 16
    close_alerts(config)
    alerts = [(r["kind"], r["status"]) for r in table_rows(config, "pipeline_alerts", ["kind", "status"])]
    assert ("model_unavailable", "firing") in alerts and ("model_unavailable", "resolved") in alerts, alerts
