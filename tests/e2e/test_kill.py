"""The streaming medallion, landing → bronze → silver, on real Spark and real Delta tables."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from deltalake import DeltaTable
from imagefiles import jpeg_bytes, write, xray_like


def table_rows(config, name: str) -> list[dict]:
    return DeltaTable(str(config.table_path(name))).to_pyarrow_table().to_pylist()


@pytest.mark.slow
@pytest.mark.engine_dependent
def test_kill_minus_nine_at_random_moments_keeps_each_file_exactly_once(tmp_path, delta_engine):
    """The stream process dies without warning while files arrive; after a restart that drains landing,
    every valid file is in bronze and silver exactly once, on either Delta engine (``delta_engine`` sets
    XRAY_DELTA_ENGINE for the stream processes)."""
    lakehouse = tmp_path / "lh"
    landing = lakehouse / "landing"
    environment = {**os.environ, "PYSPARK_PYTHON": sys.executable, "XRAY_SPARK_MASTER": "local[2]",
                   "XRAY_SHUFFLE_PARTITIONS": "2", "XRAY_MAX_FILES_PER_TRIGGER": "3"}
    command = [sys.executable, "-m", "streaming.cli", "stream", "--lakehouse", str(lakehouse)]
    rng = random.Random(7)
    expected: set[str] = set()
    file_number = 0

    def drop(count: int) -> None:
        nonlocal file_number
        for _ in range(count):
            file_number += 1
            content = jpeg_bytes(xray_like(1000 + file_number))
            write(landing / "train/NORMAL" / f"IM-{file_number:04d}-0001.jpeg", content)
            expected.add(hashlib.sha256(content).hexdigest())

    drop(6)
    # Twice killed without warning, then asked to stop (SIGTERM): that one must end cleanly.
    for stop_signal in (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM):
        process = subprocess.Popen([*command, "--trigger-seconds", "0.2"], env=environment,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + rng.uniform(10, 18)
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 1.5))
            drop(rng.randint(1, 3))
        process.send_signal(stop_signal)
        returncode = process.wait(timeout=120)
        if stop_signal == signal.SIGTERM:
            assert returncode == 0
    drop(2)
    # The drain takes every file left in few batches (a native Delta commit costs seconds on 2 cores); the
    # batch a kill left planned is replayed first with exactly its own files, whatever this limit.
    finished = subprocess.run([*command, "--once"], env={**environment, "XRAY_MAX_FILES_PER_TRIGGER": "100"},
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]

    bronze = DeltaTable(str(lakehouse / "tables/bronze_xray_images")).to_pyarrow_table(
        columns=["path", "content_sha256"]).to_pylist()
    assert len(bronze) == len({r["path"] for r in bronze}) == len(expected)
    silver = DeltaTable(str(lakehouse / "tables/silver_xray_metadata")).to_pyarrow_table(
        columns=["image_id"]).column("image_id").to_pylist()
    assert sorted(silver) == sorted(expected)
    features = DeltaTable(str(lakehouse / "tables/silver_image_features")).to_pyarrow_table(
        columns=["image_id"]).column("image_id").to_pylist()
    assert sorted(features) == sorted(expected)
