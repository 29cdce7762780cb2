"""Model lifecycle: gold stream with the MLflow champion, the stream's own retrain once enough labels arrived,
retrain, promotion, rescore, metrics."""

from __future__ import annotations

import threading
import time

import pytest
from deltalake import DeltaTable
from imagefiles import stage_labelled_dataset

from batch.evaluation.metrics import run_metrics
from batch.retraining import retrain_task
from batch.training.rescore import rescore
from batch.training.retrain import retrain
from streaming.core.errors import NoChampionModelError
from streaming.core.registry import champion, version_tags
from streaming.pipeline.service import run_stream


def rows(config, table: str, columns=None) -> list[dict]:
    return DeltaTable(str(config.table_path(table))).to_pyarrow_table(columns=columns).to_pylist()


def wait_for(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.mark.slow
def test_stream_retrain_gold_metrics_rescore_end_to_end(spark, config):
    # The stream retrains by itself once 60 labelled images are in silver (checked every 0.6 s).
    config = config.with_overrides(retrain_min_new_labels=60, retrain_check_minutes=0.01)
    stage_labelled_dataset(config.landing_dir, per_class=24, split="train", seed=1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            run_stream(spark, config, once=False, stop_event=stop, background=[retrain_task(config)])
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    stream = threading.Thread(target=serve, daemon=True)
    stream.start()
    try:
        # No champion yet, and too few labels to train one: silver fills, gold waits without failing.
        wait_for(lambda: config.table_path("silver_image_features").exists()
                 and len(rows(config, "silver_image_features", ["image_id"])) == 48, 180, "silver")
        time.sleep(2)
        assert rows(config, "gold_pneumonia_predictions") == [] and rows(config, "retrain_runs") == []
        assert not errors

        # The test split completes 60 labels: the stream trains its first champion (on train only) and
        # picks it up, without a restart.
        stage_labelled_dataset(config.landing_dir, per_class=6, split="test", seed=2)
        wait_for(lambda: len(rows(config, "gold_pneumonia_predictions", ["image_id"])) == 60, 240, "gold")
        assert stream.is_alive() and not errors
    finally:
        stop.set()
        stream.join(120)
    assert not errors, errors
    (cycle,) = rows(config, "retrain_runs")
    assert (cycle["trigger"], cycle["runner"], cycle["outcome"]) == ("new_labels", "xray stream", "ok")
    assert cycle["promoted"] and cycle["message"] == "no champion yet" and cycle["labelled_rows"] == 60
    first = champion(config)
    assert first.version == cycle["model_version"]
    assert float(version_tags(config, first)["validation_accuracy"]) >= 0.8

    gold = rows(config, "gold_pneumonia_predictions")
    assert {r["model_version"] for r in gold} == {first.version}
    test_rows = [r for r in gold if r["true_label"] is not None]
    assert sum(r["is_correct"] for r in test_rows) / len(test_rows) >= 0.8
    assert all(0.5 <= r["confidence"] <= 1.0 for r in gold)

    # Same data, same seed: the new version ties, so the champion is not replaced.
    second = retrain(spark, config)
    assert not second.promoted and champion(config) == first

    # A newer champion: rescore replaces the stale rows, once.
    third = retrain(spark, config, seed=5, force_promote=True)
    assert champion(config) == third.version
    result = rescore(spark, config)
    assert result.stale_rows == result.updated_rows == 60
    rescored = rows(config, "gold_pneumonia_predictions")
    assert len(rescored) == 60 and {r["model_version"] for r in rescored} == {third.version.version}
    version_before = DeltaTable(str(config.table_path("gold_pneumonia_predictions"))).version()
    again = rescore(spark, config)
    assert again.stale_rows == again.updated_rows == 0
    assert DeltaTable(str(config.table_path("gold_pneumonia_predictions"))).version() == version_before

    metrics = run_metrics(spark, config)
    performance = rows(config, "gold_model_performance")
    latest = max(r["evaluated_time"] for r in performance)  # the stream's cycle evaluated its champion before
    performance = [r for r in performance if r["evaluated_time"] == latest]
    assert {r["split"] for r in performance} >= {"train", "test"}
    assert all(r["model_version"] == third.version.version for r in performance)
    assert metrics.report_path is not None and metrics.report_path.exists()
    assert list(metrics.report_path.parent.glob("*.png"))


def test_no_champion_start_leaves_gold_waiting(spark, config):
    stage_labelled_dataset(config.landing_dir, per_class=2)
    run_stream(spark, config, once=True)
    assert len(rows(config, "silver_image_features", ["image_id"])) == 4
    assert rows(config, "gold_pneumonia_predictions") == []
    assert not config.checkpoint_path("gold").exists()
    with pytest.raises(NoChampionModelError):
        rescore(spark, config)
