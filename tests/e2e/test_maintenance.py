"""Maintenance while a stream runs: `maintain_tables` in a loop (retention 0) beside a continuous `xray stream`
subprocess (with its own periodic pass) while files arrive in waves. No referenced file ever disappears, and
every image ends in bronze and silver exactly once. No model is trained (that alone would take longer than
the test): gold waits for a champion, as the other stream e2e tests leave it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
from deltalake import DeltaTable
from imagefiles import labelled_xray, stage_labelled_dataset, write
from support import table_rows

from streaming.lakehouse import maintenance, tablepass
from streaming.lakehouse.catalog import ALL_TABLES

WAVES, PER_WAVE = 4, 4


def missing_referenced_files(config) -> list[str]:
    """Files the current snapshot of a table references that are not on disk (must always be none)."""
    missing = []
    for spec in ALL_TABLES:
        path = config.table_path(spec.name)
        if not DeltaTable.is_deltatable(str(path)):
            continue
        referenced = DeltaTable(str(path)).get_add_actions(flatten=True).column("path").to_pylist()
        missing += [f"{spec.name}/{name}" for name in referenced if not (path / name).exists()]
    return missing


def count(config, table: str) -> int:
    path = config.table_path(table)
    return len(table_rows(config, table, ["image_id"])) if DeltaTable.is_deltatable(str(path)) else 0


def wait_for(condition, process, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.3)


def sha_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_maintenance_in_a_loop_beside_a_stream_loses_and_duplicates_nothing(config, monkeypatch):
    expected = {sha_of(p) for p in stage_labelled_dataset(config.landing_dir, per_class=3, seed=1)}

    environment = {**os.environ, "PYSPARK_PYTHON": sys.executable, "XRAY_SPARK_MASTER": "local[2]",
                   "XRAY_SHUFFLE_PARTITIONS": "2", "XRAY_MAX_FILES_PER_TRIGGER": "2",
                   "XRAY_MAINTENANCE_INTERVAL_MINUTES": "0.05", "XRAY_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "streaming.cli", "stream", "--lakehouse", str(config.root),
                                "--trigger-seconds", "0.2"], env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    # Compact at every pass here (the stream's own pass keeps the default threshold and retention).
    monkeypatch.setattr(tablepass, "COMPACT_MIN_FILES", 2)
    passes = compacted = vacuumed = 0
    try:
        wait_for(lambda: count(config, "silver_image_features") > 0, process)  # the stream is up
        for wave in range(WAVES + 2):  # the last passes run after the last wave
            if wave < WAVES:
                for index in range(PER_WAVE):
                    number = wave * PER_WAVE + index
                    label = ("NORMAL", "PNEUMONIA")[number % 2]
                    name = f"IM-{7000 + number:04d}-0001.jpeg" if label == "NORMAL" else f"person{7000 + number}_virus_1.jpeg"
                    target = write(config.landing_dir / "train" / label / name, labelled_xray(label, 90_000 + number))
                    expected.add(sha_of(target))
            time.sleep(1)
            # Orphan age 0.01 h (36 s): longer than a batch takes between writing a file and committing it.
            report = maintenance.maintain_tables(config, retention_hours=0, orphan_min_age_hours=0.01,
                                                 wait_seconds=120)  # the stream's pass may hold the lock
            assert not report.errors, report.summary()
            passes += 1
            compacted += sum(t.compacted for t in report.tables)
            vacuumed += sum(t.vacuumed for t in report.tables)
            assert missing_referenced_files(config) == []
            assert process.poll() is None, process.stderr.read()[-2000:] if process.stderr else ""

        wait_for(lambda: count(config, "silver_image_features") >= len(expected), process)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=120)
        stderr = process.stderr.read() if process.stderr else ""
    assert returncode == 0, stderr[-2000:]
    assert compacted > 0 and vacuumed > 0, "the loop compacted and vacuumed while the stream wrote"
    assert missing_referenced_files(config) == []

    bronze = table_rows(config, "bronze_xray_images", ["path", "content_sha256"])
    assert len(bronze) == len({r["path"] for r in bronze}) == len(expected)
    assert {r["content_sha256"] for r in bronze} == expected
    for table in ("silver_xray_metadata", "silver_image_features"):
        ids = [r["image_id"] for r in table_rows(config, table, ["image_id"])]
        assert sorted(ids) == sorted(expected), table  # each image exactly once
    assert table_rows(config, "gold_pneumonia_predictions") == []  # no champion: gold waits
    # The stream's own periodic pass ran and recorded its row.
    events = table_rows(config, "pipeline_events", ["query", "batch_id", "message"])
    passes_of_stream = [e for e in events if e["query"] == "maintenance"]
    assert passes_of_stream and all(e["batch_id"] == -1 and "freed" in e["message"] for e in passes_of_stream)
    assert "maintenance" not in stderr.lower() or "periodic pass failed" not in stderr, stderr[-2000:]
