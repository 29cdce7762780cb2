"""Drift and alerts end to end (streaming/pipeline/alerting.py, streaming/gold/drift.py): a champion trained on
synthetic X-rays, then a batch like its training images (no alert) and a batch of inverted ones (a drift alert
on a real loopback webhook, in pipeline_alerts and in pipeline_events); the time-based monitor; a failed and
a stopped stream."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from imagefiles import write
from loopback import Webhook
from PIL import Image, ImageOps
from support import table_rows

from streaming.core.errors import XrayError
from streaming.core.names import LABELS
from streaming.imaging.synthetic import make_xray_jpeg
from streaming.lakehouse.alerts import close_alerts
from streaming.lakehouse.engine import Lakehouse
from streaming.pipeline import alerting
from streaming.pipeline.service import run_stream


def inverted(content: bytes) -> bytes:
    buffer = io.BytesIO()
    ImageOps.invert(Image.open(io.BytesIO(content)).convert("L")).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def stage(landing: Path, count: int, seed: int, split: str, invert: bool = False, modified: float | None = None) -> None:
    """``count`` synthetic X-rays, half of each label, two images per patient, Kaggle-style names
    (``modified``: their modification time, which orders the landing source's batches)."""
    for index in range(count):
        label, patient = LABELS[index % 2], seed * 1000 + index // 4
        name = f"IM-{patient:04d}-{index:04d}.jpeg" if label == "NORMAL" else f"person{patient}_bacteria_{index}.jpeg"
        content = make_xray_jpeg(label, seed * 10_000 + index, size=(192, 192))
        path = write(landing / split / label / name, inverted(content) if invert else content)
        if modified is not None:
            os.utime(path, (modified, modified))


def register_champion_with_reference(spark, config) -> str:
    """A champion fit on the labelled silver images (read without Spark), registered with the drift
    reference `xray retrain` records (`record_reference`) but without retrain's validation jobs
    (tests/batch/training/test_retrain.py checks that retrain stores it). Returns the version."""
    import numpy as np

    from batch.bench.champion import register_champion
    from batch.training.reference import record_reference
    from batch.training.retrain import LabelledData
    from streaming.core.registry import champion, load_model
    from streaming.imaging.features import FEATURE_VERSION

    labels = {r["image_id"]: r["label"] for r in table_rows(config, "silver_xray_metadata", ["image_id", "label"])}
    features = table_rows(config, "silver_image_features", ["image_id", "features"])
    ids = [r["image_id"] for r in features]
    X = np.asarray([r["features"] for r in features], dtype=np.float32)
    y = np.asarray([labels[i] for i in ids])
    register_champion(config.root, X, y, FEATURE_VERSION)
    ref = champion(config)
    data = LabelledData(ids, X, y, ids, ["train"] * len(ids), np.zeros(len(ids), dtype=np.int64))
    record_reference(Lakehouse(spark, config), ref, data, load_model(config, ref))
    return ref.version


@pytest.mark.slow
def test_inverted_images_raise_a_drift_alert_on_the_webhook_and_images_like_the_training_ones_do_not(spark, config):
    """One stream over 200 new images like the training ones (batch 1) and 100 inverted ones (batch 2)."""
    from streaming.core.registry import ModelRef, version_json
    from streaming.gold.drift import REFERENCE, STATISTICS

    stage(config.landing_dir, 200, seed=1, split="train")
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    version = register_champion_with_reference(spark, config)
    reference = version_json(config, ModelRef(config.model_name, version), REFERENCE)
    assert set(reference["statistics"]) == set(STATISTICS) and reference["images"] == 200

    now = time.time()
    stage(config.landing_dir, 200, seed=2, split="val", modified=now - 60)
    stage(config.landing_dir, 100, seed=3, split="val", invert=True, modified=now - 30)
    threshold = config.drift_psi_threshold
    with Webhook() as hook:
        run_stream(spark, config.with_overrides(alert_webhook_url=hook.url, max_files_per_trigger=200), once=True)
    # (batch -1: the training images scored once a champion existed, outside the window)
    like_training, shifted = sorted((e for e in table_rows(config, "pipeline_events")
                                     if e["query"] == "gold" and e["batch_id"] >= 0), key=lambda e: e["batch_id"])
    assert (like_training["batch_id"], like_training["input_rows"], shifted["input_rows"]) == (1, 200, 100)
    assert like_training["drift_psi"] < threshold and shifted["drift_psi"] > threshold
    assert 0 < like_training["predicted_prevalence"] < 1
    [alert] = hook.bodies  # batch 1 raised nothing
    assert (alert["kind"], alert["severity"], alert["status"]) == ("drift", "warning", "firing")
    assert (alert["details"]["batch_id"], alert["details"]["window_images"]) == (2, 200)
    assert alert["details"]["model_version"] == version
    assert alert["details"]["psi"]["mean_intensity"] > threshold and alert["details"]["psi"]["centre_level"] > threshold
    assert "mean_intensity PSI" in alert["message"]
    [row] = table_rows(config, "pipeline_alerts")
    assert (row["alert_id"], row["kind"], row["delivery"]) == (alert["alert_id"], "drift", "delivered")


def test_the_monitor_alerts_on_a_stall_an_old_backlog_and_no_champion_then_resolves(spark, config):
    from streaming.lakehouse.direct import append_rows

    waiting = write(config.landing_dir / "train/NORMAL/IM-0001-0001.jpeg", make_xray_jpeg("NORMAL", 1))
    two_hours_ago = time.time() - 7200
    os.utime(waiting, (two_hours_ago, two_hours_ago))
    append_rows(config, "silver_image_features", [{"image_id": "a" * 64, "feature_version": "v"}])
    with Webhook() as hook:
        watched = config.with_overrides(alert_webhook_url=hook.url, alert_stall_minutes=5, alert_backlog_minutes=60,
                                        alert_champion_minutes=5)
        monitor = alerting.AlertMonitor(Lakehouse(spark, watched), ("bronze", "silver", "gold"))
        monitor.check()  # just started: only the old file alerts (no stall yet, the champion just missed)
        monitor.started_at -= 600
        monitor.champion_missing_since -= 600
        monitor.check()
        waiting.unlink()
        monitor.started_at = time.monotonic()
        monitor.check()
        close_alerts(watched)
    sent = [(b["kind"], b["status"]) for b in hook.bodies]
    assert sent == [("backlog_age", "firing"), ("stream_stalled", "firing"), ("no_champion", "firing"),
                    ("stream_stalled", "resolved"), ("backlog_age", "resolved")]
    assert hook.bodies[0]["details"]["waiting_files"] == 1 and hook.bodies[0]["details"]["oldest_age_minutes"] >= 119
    assert hook.bodies[2]["details"]["silver_images"] == 1 and "xray retrain" in hook.bodies[2]["message"]
    assert len(table_rows(config, "pipeline_alerts")) == 5


def test_a_failed_query_and_a_stopped_stream_alert_without_paths(spark, config):
    with Webhook() as hook:
        watched = config.with_overrides(alert_webhook_url=hook.url)
        alerting.query_failed(watched, "bronze", OSError("cannot read /srv/landing/train/person7_virus_3.jpeg"))
        with pytest.raises(XrayError), alerting.watching(spark, watched, ("bronze",), once=True):
            raise XrayError("table bronze_xray_images under /srv/lakehouse/tables is damaged")
    failed, stopped = hook.bodies
    assert (failed["kind"], failed["details"]["layer"]) == ("query_failed", "bronze")
    assert failed["message"] == "bronze: the query failed (OSError: cannot read <path>); restarting from its checkpoint"
    assert (stopped["kind"], stopped["severity"]) == ("stream_stopped", "critical")
    assert stopped["message"] == "xray stream stopped: XrayError: table bronze_xray_images under <path> is damaged"
