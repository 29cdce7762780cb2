"""The streaming medallion, landing → bronze → silver, on real Spark and real Delta tables."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from imagefiles import bad_inputs, jpeg_bytes, png_bytes, write, xray_like
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from streaming.bronze.read import read_landing_files
from streaming.core.pseudonym import path_ref
from streaming.lakehouse.engine import Lakehouse
from streaming.pipeline.service import run_stream
from streaming.quality.expectations import Expectation
from streaming.quality.spark import apply_expectations


def table_rows(config, name: str) -> list[dict]:
    return DeltaTable(str(config.table_path(name))).to_pyarrow_table().to_pylist()


def by_file_name(config, rows: list[dict]) -> dict[str, dict]:
    """Rows of a non-bronze table keyed by the file name bronze holds for their path_ref."""
    names = {r["path_ref"]: r["file_name"] for r in table_rows(config, "bronze_xray_images")}
    return {names[r["path_ref"]]: r for r in rows}


def stage_valid_images(landing: Path) -> dict[str, bytes]:
    files = {
        "train/NORMAL/IM-0001-0001.jpeg": jpeg_bytes(xray_like(1)),
        "train/NORMAL/IM-0001-0002.JPG": jpeg_bytes(xray_like(2)),
        "train/PNEUMONIA/person7_bacteria_12.jpeg": jpeg_bytes(xray_like(3, size=(300, 240))),
        "test/PNEUMONIA/person8_virus_13.png": png_bytes(xray_like(4)),
        "inbox-extra/unlabelled.jpeg": jpeg_bytes(xray_like(8)),
    }
    for relative, content in files.items():
        write(landing / relative, content)
    return files


def test_happy_path_fills_bronze_and_silver(spark, config):
    files = stage_valid_images(config.landing_dir)
    write(config.landing_dir / "train/NORMAL/.hidden.jpeg", jpeg_bytes(xray_like(20)))
    write(config.landing_dir / "train/NORMAL/copying.jpeg.tmp", jpeg_bytes(xray_like(21)))
    write(config.landing_dir / "train/NORMAL/notes.txt", b"ignored")

    run_stream(spark, config, layers=("bronze", "silver"), once=True)

    bronze = table_rows(config, "bronze_xray_images")
    assert sorted(r["file_name"] for r in bronze) == sorted(Path(p).name for p in files)
    by_name = {r["file_name"]: r for r in bronze}
    normal = by_name["IM-0001-0001.jpeg"]
    assert normal["content"] == files["train/NORMAL/IM-0001-0001.jpeg"]
    assert normal["content_sha256"] == hashlib.sha256(normal["content"]).hexdigest()
    assert (normal["label"], normal["split"], normal["content_status"]) == ("NORMAL", "train", "ok")
    assert by_name["unlabelled.jpeg"]["label"] is None

    metadata = by_file_name(config, table_rows(config, "silver_xray_metadata"))
    assert len(metadata) == len(files)
    pneumonia = metadata["person7_bacteria_12.jpeg"]
    assert (pneumonia["label"], pneumonia["label_name"], pneumonia["split"]) == (1, "PNEUMONIA", "train")
    assert (pneumonia["width"], pneumonia["height"], pneumonia["pneumonia_type"]) == (300, 240, "bacteria")
    assert metadata["person8_virus_13.png"]["image_format"] == "PNG"
    # Patients are salted hashes: stable per patient, never the raw identifier.
    first, second = metadata["IM-0001-0001.jpeg"], metadata["IM-0001-0002.JPG"]
    assert first["patient_id"] == second["patient_id"] != pneumonia["patient_id"]
    assert "IM-0001" not in first["patient_id"] and len(first["patient_id"]) == 64
    assert metadata["unlabelled.jpeg"]["label"] is None

    features = table_rows(config, "silver_image_features")
    assert len(features) == len(files)
    assert len({len(r["features"]) for r in features}) == 1
    assert table_rows(config, "silver_quarantine") == []

    events = table_rows(config, "pipeline_events")
    by_query = {r["query"]: r for r in events}
    assert by_query["bronze"]["input_rows"] == by_query["bronze"]["output_rows"] == len(files)
    assert by_query["bronze"]["backlog_files"] == 0
    assert by_query["silver"]["output_rows"] == len(files)
    warned = {e["rule"]: e["failed"] for e in by_query["silver"]["expectations"] if e["action"] == "warn"}
    assert warned["label_known"] == 1


def test_bad_inputs_are_quarantined_with_reasons_and_good_files_pass(spark, tmp_path):
    from streaming.core.config import load_config

    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"), max_image_pixels=1_000_000,
                         max_file_bytes=200_000)
    landing = config.landing_dir
    good = jpeg_bytes(xray_like(1))
    write(landing / "train/NORMAL/IM-0002-0001.jpeg", good)
    write(landing / "train/NORMAL/copy-of-IM-0002.jpeg", good)  # same content, other name
    write(landing / "train/PNEUMONIA/person3_virus_9.jpeg", jpeg_bytes(xray_like(2)))
    bad = bad_inputs(config.max_image_pixels)
    for _rule, (name, content) in bad.items():
        write(landing / "train/PNEUMONIA" / name, content)
    write(landing / "train/PNEUMONIA/huge.jpeg", jpeg_bytes(xray_like(3, size=(900, 900)), quality=100) * 3)

    run_stream(spark, config, layers=("bronze", "silver"), once=True)

    quarantine = by_file_name(config, table_rows(config, "silver_quarantine"))
    expected_rules = {name: rule.removesuffix("_pdf") for rule, (name, _) in bad.items()}
    expected_rules["huge.jpeg"] = "file_size_limit"
    assert {name: r["rule"] for name, r in quarantine.items()} == expected_rules
    assert "zero-byte" in quarantine["empty.jpeg"]["reason"]
    assert "text" in quarantine["notes.jpeg"]["reason"]
    assert "PDF" in quarantine["report.jpeg"]["reason"]
    assert "truncated" in quarantine["truncated.jpeg"]["reason"]
    assert "GIF content disguised as JPEG" in quarantine["disguised.jpeg"]["reason"]
    assert "decompression bomb" in quarantine["bomb.jpeg"]["reason"]
    assert "64x64" in quarantine["tiny.jpeg"]["reason"]
    assert "blank" in quarantine["blank.jpeg"]["reason"]
    assert "exceeds max_file_bytes" in quarantine["huge.jpeg"]["reason"]
    # The bronze reference lets a fixed file be replayed.
    assert quarantine["truncated.jpeg"]["content_sha256"] is not None
    assert quarantine["truncated.jpeg"]["source_batch_id"] == 0

    huge_bronze = [r for r in table_rows(config, "bronze_xray_images") if r["file_name"] == "huge.jpeg"]
    assert huge_bronze[0]["content"] is None and huge_bronze[0]["content_status"] == "too_large"

    metadata = table_rows(config, "silver_xray_metadata")
    assert sorted(by_file_name(config, metadata)) == [
        "IM-0002-0001.jpeg", "person3_virus_9.jpeg"]
    silver_event = [e for e in table_rows(config, "pipeline_events") if e["query"] == "silver"][0]
    assert silver_event["duplicate_rows"] == 1
    assert silver_event["quarantined_rows"] == len(expected_rules)
    counts = {(e["rule"], e["action"]): e["failed"] for e in silver_event["expectations"]}
    assert counts[("decodes", "quarantine")] == 1
    assert counts[("format_matches_name", "quarantine")] == 1

    # A duplicate arriving in a later batch is recognised against silver, not written again.
    write(landing / "val/NORMAL/IM-0002-0001-again.jpeg", good)
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    assert len(table_rows(config, "silver_xray_metadata")) == 2
    later = [e for e in table_rows(config, "pipeline_events") if e["query"] == "silver" and e["batch_id"] == 1]
    assert later[0]["duplicate_rows"] == 1


def test_rerunning_once_adds_nothing(spark, config):
    stage_valid_images(config.landing_dir)
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    versions = {name: DeltaTable(str(config.table_path(name))).version()
                for name in ("bronze_xray_images", "silver_xray_metadata", "pipeline_events")}
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    assert versions == {name: DeltaTable(str(config.table_path(name))).version() for name in versions}


def test_file_deleted_between_listing_and_reading_is_skipped_and_logged(spark, config):
    from streaming.pipeline.fused import process_bronze_batch

    house = Lakehouse(spark, config)
    house.ensure_tables()
    kept = write(config.landing_dir / "train/NORMAL/IM-0003-0001.jpeg", jpeg_bytes(xray_like(1)))
    gone = config.landing_dir / "train/NORMAL/IM-0004-0001.jpeg"
    listing = spark.createDataFrame(
        [(str(kept), kept.stat().st_size, 1.0), (str(gone), 1234, 2.0)],
        "path string, length long, t double",
    ).select("path", F.timestamp_seconds("t").alias("modificationTime"), "length")

    event = process_bronze_batch(house, listing, 0)

    assert [r["file_name"] for r in table_rows(config, "bronze_xray_images")] == ["IM-0003-0001.jpeg"]
    assert event.output_rows == 1 and "deleted" in event.message and "IM-0004" not in event.message
    assert path_ref(str(gone), config.patient_salt())[:12] in event.message  # a pseudonym, not the path
    assert table_rows(config, "pipeline_events")[0]["expectations"][0]["failed"] == 1


def test_read_landing_files_is_a_pure_transform(spark, tmp_path):
    small = write(tmp_path / "test/PNEUMONIA/person1_virus_1.jpeg", jpeg_bytes(xray_like(1)))
    big = write(tmp_path / "train/NORMAL/IM-0001-0001.jpeg", b"x" * 200_000)
    listing = spark.createDataFrame(
        [(str(small), small.stat().st_size), (str(big), 200_000)], "path string, length long"
    ).select("path", F.timestamp_seconds(F.lit(0)).alias("modificationTime"), "length")
    rows = read_landing_files(listing, max_file_bytes=100_000, batch_id=7, key="k").select(
        "file_name", "content_status", "label", "split", "batch_id")
    expected = spark.createDataFrame(
        [("person1_virus_1.jpeg", "ok", "PNEUMONIA", "test", 7), ("IM-0001-0001.jpeg", "too_large", "NORMAL", "train", 7)],
        "file_name string, content_status string, label string, split string, batch_id long",
    )
    assertDataFrameEqual(rows, expected)


def test_expectations_split_rows_by_action(spark):
    rows = spark.createDataFrame([(1, 5), (2, -1), (3, None), (4, 200)], "id int, value int")
    rules = (
        Expectation("positive", "value > 0", "quarantine", "concat('value ', value, ' is not positive')"),
        Expectation("small", "value < 100", "drop", "'too big'"),
        Expectation("known", "value IS NOT NULL", "warn", "'missing'"),
    )
    result = apply_expectations(rows, rules, "t")
    assertDataFrameEqual(result.valid, spark.createDataFrame([(1, 5), (3, None)], "id int, value int"))
    assertDataFrameEqual(
        result.quarantined.select("id", "rule", "reason"),
        spark.createDataFrame([(2, "positive", "value -1 is not positive")], "id int, rule string, reason string"),
    )
    assert [(c["rule"], c["failed"]) for c in result.counts] == [("positive", 1), ("small", 1), ("known", 1)]


def test_fail_action_stops_the_batch(spark):
    from streaming.core.errors import DataQualityFailure

    rows = spark.createDataFrame([(1,), (None,)], "id int")
    with pytest.raises(DataQualityFailure, match="id_present"):
        apply_expectations(rows, (Expectation("id_present", "id IS NOT NULL", "fail", "'no id'"),), "t")


@pytest.mark.slow
def test_kill_minus_nine_at_random_moments_keeps_each_file_exactly_once(tmp_path):
    """The stream process dies without warning while files arrive; after a restart that drains landing,
    every valid file is in bronze and silver exactly once."""
    lakehouse = tmp_path / "lh"
    landing = lakehouse / "landing"
    environment = {**os.environ, "PYSPARK_PYTHON": sys.executable, "XRAY_SPARK_MASTER": "local[2]",
                   "XRAY_SHUFFLE_PARTITIONS": "2", "XRAY_MAX_FILES_PER_TRIGGER": "3"}
    command = [sys.executable, "-m", "streaming.cli.main", "stream", "--lakehouse", str(lakehouse)]
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
    finished = subprocess.run([*command, "--once"], env=environment, capture_output=True, text=True,
                              timeout=300)
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
