"""The streaming service end to end on real Spark and Delta (streaming/pipeline/service.py): happy path,
bad inputs quarantined with reasons, a rerun adds nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from deltalake import DeltaTable
from imagefiles import bad_inputs, jpeg_bytes, png_bytes, write, xray_like
from support import table_rows, wait_until

from streaming.pipeline.service import run_stream


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


def by_file_name(config, rows: list[dict]) -> dict[str, dict]:
    """Rows of a non-bronze table keyed by the file name bronze holds for their path_ref."""
    names = {r["path_ref"]: r["file_name"] for r in table_rows(config, "bronze_xray_images")}
    return {names[r["path_ref"]]: r for r in rows}


@pytest.mark.engine_dependent
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


@pytest.mark.engine_dependent
def test_rerunning_once_adds_nothing(spark, config):
    stage_valid_images(config.landing_dir)
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    versions = {name: DeltaTable(str(config.table_path(name))).version()
                for name in ("bronze_xray_images", "silver_xray_metadata", "pipeline_events")}
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    assert versions == {name: DeltaTable(str(config.table_path(name))).version() for name in versions}


def test_a_failed_maintenance_pass_is_one_warning_and_the_next_pass_runs(spark, config, caplog, monkeypatch):
    import threading

    from streaming.lakehouse import maintenance
    from streaming.lakehouse.engine import Lakehouse
    from streaming.pipeline.background import PeriodicMaintenance

    calls = []

    def failing_then_working(config, should_stop=None, spark=None):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk unplugged\nsecond line")
        return maintenance.MaintenanceReport()

    monkeypatch.setattr(maintenance, "maintain_tables", failing_then_working)
    stop = threading.Event()
    thread = PeriodicMaintenance(Lakehouse(spark, config.with_overrides(maintenance_interval_minutes=0.001)), stop)
    thread.start()
    wait_until(lambda: thread.passes >= 1)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive() and thread.passes >= 1 and len(calls) >= 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "maintenance" in r.getMessage()]
    assert warnings == ["maintenance: the periodic pass failed (disk unplugged); the stream goes on, the next pass "
                        "retries"]
