"""The ``profile`` part: one profiled ``xray stream --once`` on a few small images reports every phase."""

from __future__ import annotations

import numpy as np
import pytest
from imagefiles import jpeg_bytes, write, xray_like

from batch.bench.champion import register_champion
from batch.bench.context import BenchContext, resolve_dataset
from batch.bench.phases import SPARK_JOB, TASK_REST, driver_serial, profile_rows
from batch.bench.profile import bench_profile
from streaming.imaging.features import FEATURE_LENGTH, FEATURE_VERSION

EXECUTOR_PHASES = {"read", "hash", "bronze row", "bronze write", "decode", "measures", "features", "inspect row",
                   "arrow in/out", "Spark: input from the JVM", "Spark: output to the JVM", TASK_REST}
# "gold scoring" too once the stream's warm-up has loaded the champion: a cold start's first batch may be
# scored on the driver instead (`streaming.gold.inline.batch_champion`).
DRIVER_PHASES = {"Spark job (plan, executors, result to driver)", "commit bronze_xray_images",
                 "commit silver_xray_metadata", "commit silver_image_features", "commit gold_pneumonia_predictions",
                 "commit pipeline_events", "silver (split, dedupe, rows)", "gold (predictions from the executors' scores)",
                 "champion (registry lookup, model shipped)", "other (driver)"}


@pytest.mark.slow
def test_profile_reports_every_phase_adding_up_to_the_whole(tmp_path, config):
    for index in range(6):
        label = ("NORMAL", "PNEUMONIA")[index % 2]
        name = f"person{index}_bacteria_{index}.jpeg" if label == "PNEUMONIA" else f"IM-{index:04d}-0001.jpeg"
        write(tmp_path / "data" / "train" / label / name, jpeg_bytes(xray_like(index, (300 + 10 * index, 260))))
    work = tmp_path / "work"
    files, data = resolve_dataset(tmp_path / "data", None, work, 1)
    ctx = BenchContext(config, work, files, {"data": data, "errors": {}})
    # Any champion will do for a profile (quality is not measured): no model stream and retrain to wait for.
    rng = np.random.default_rng(0)
    ctx.tracking_uri = register_champion(work / "model", rng.normal(size=(20, FEATURE_LENGTH)),
                                         np.arange(20) % 2, FEATURE_VERSION)

    result = bench_profile(ctx, kinds=("cold",))  # the warm run sums its batches the same way

    _check(result["cold"])
    assert any(row[0].strip() == "decode" for row in profile_rows(result))


def _check(profile: dict) -> None:
    assert profile["images"] == 6 and profile["executor_tasks"] >= 1
    assert EXECUTOR_PHASES <= set(profile["executor"]) and DRIVER_PHASES <= set(profile["driver"])
    executor = [phase["ms_per_image"] for phase in profile["executor"].values()]
    assert all(ms >= 0 for ms in executor)
    # Phases never overlap: they add up to the tasks' (and the batch's) whole time, up to rounding.
    assert sum(executor) == pytest.approx(profile["executor_ms_per_image"], rel=0.01, abs=0.05)
    driver = [phase["ms"] for phase in profile["driver"].values()]
    assert all(ms >= 0 for ms in driver)
    assert sum(driver) == pytest.approx(profile["driver_seconds"] * 1000, rel=0.01, abs=1.0)
    assert profile["executor"][TASK_REST]["share"] < 0.2
    assert profile["slots_outside_tasks_ms_per_image"] >= 0 and profile["spark_job"]["tasks_running_seconds"] >= 0


def test_driver_serial_time_is_the_slope_through_batches_of_different_sizes():
    """The driver's serial cost per image (the slope of its thread's CPU time) and per batch (the serial
    wall time less that), from batches of different sizes (the warm-up batches left out), and the bound it
    puts on one stream (Amdahl)."""
    def batch(images: int, serial: float, job: float, cpu: float) -> dict:
        return {"images": images, "wall_seconds": serial + job, "driver": {SPARK_JOB: job}, "cpu_seconds": cpu}

    # 0.05 ms an image, 150 ms a batch of wall outside the Spark job, whatever the Spark job took.
    serial = driver_serial([batch(2, 0.9, 3.0, 0.5), batch(100, 0.155, 5.0, 0.105),
                            batch(200, 0.160, 9.0, 0.110)])
    assert serial["ms_per_image"] == pytest.approx(0.05) and serial["cpu_fixed_ms_per_batch"] == pytest.approx(100.0)
    assert serial["fixed_ms_per_batch"] == pytest.approx(150.0)
    assert serial["amdahl_images_per_second"] == 20000
    assert serial["bound_images_per_second"]["4000"] == round(4000 / (0.15 + 0.2))
    assert [b["images"] for b in serial["batches"]] == [100, 200]
    rows = profile_rows({"warm": {"images": 200, "executor_tasks": 2, "loadavg": {"start": [1.0], "end": [1.0]},
                                  "executor_ms_per_image": 1.0, "executor": {}, "slots_outside_tasks_ms_per_image": 0,
                                  "driver_seconds": 9.16, "driver_ms_per_image": 45.8, "driver": {},
                                  "driver_serial": serial}})
    assert any("Amdahl" in row[0] and row[1] == 20000 for row in rows)
    assert "ms_per_image" not in driver_serial([batch(300, 0.2, 5.0, 0.1)])  # one size: no slope
    flat = driver_serial([batch(100, 0.2, 5.0, 0.12), batch(200, 0.2, 5.0, 0.11)])  # noise: no slope at all
    assert flat["ms_per_image"] == 0.0 and flat["amdahl_images_per_second"] is None
