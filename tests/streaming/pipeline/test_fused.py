"""The fused hot path (bronze's batch writes silver and gold) and its driver-side Arrow steps."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable
from imagefiles import bad_inputs, jpeg_bytes, write, xray_like

from streaming.pipeline.service import run_stream

# Runs once per Delta engine (tests/conftest.py).
pytestmark = pytest.mark.engine_dependent


def table_rows(config, name: str) -> list[dict]:
    return DeltaTable(str(config.table_path(name))).to_pyarrow_table().to_pylist()


def bronze_names(config) -> dict[str, str]:
    """path_ref → file name, from bronze (the only table holding names)."""
    return {r["path_ref"]: r["file_name"] for r in table_rows(config, "bronze_xray_images")}


def test_bronze_only_then_silver_alone_then_fused_keeps_every_file_once(spark, config):
    """Mixing the query plans on one lakehouse: silver re-reading bronze neither duplicates images nor
    quarantines a bad file twice."""
    landing = config.landing_dir
    write(landing / "train/NORMAL/IM-0101-0001.jpeg", jpeg_bytes(xray_like(1)))
    bad_name, bad_content = bad_inputs(config.max_image_pixels)["decodes"]
    write(landing / "train/NORMAL" / bad_name, bad_content)
    run_stream(spark, config, layers=("bronze", "silver"), once=True)  # fused
    write(landing / "train/NORMAL/IM-0102-0001.jpeg", jpeg_bytes(xray_like(2)))
    run_stream(spark, config, layers=("bronze",), once=True)  # bronze only
    assert len(table_rows(config, "silver_xray_metadata")) == 1
    run_stream(spark, config, layers=("silver",), once=True)  # re-reads all of bronze
    metadata = table_rows(config, "silver_xray_metadata")
    names = bronze_names(config)
    assert sorted(names[r["path_ref"]] for r in metadata) == ["IM-0101-0001.jpeg", "IM-0102-0001.jpeg"]
    assert len(table_rows(config, "silver_image_features")) == 2
    assert [names[r["path_ref"]] for r in table_rows(config, "silver_quarantine")] == [bad_name]


def test_a_file_outside_a_label_folder_is_one_warning_with_its_ref_and_counted_in_status(spark, config, caplog):
    from streaming.core.pseudonym import short_ref
    from streaming.lakehouse.engine import Lakehouse
    from streaming.ops.status import collect_status

    write(config.landing_dir / "train" / "NORMAL" / "IM-0001-0001.jpeg", jpeg_bytes(xray_like(1)))
    write(config.landing_dir / "unlabelled" / "to-classify.jpeg", jpeg_bytes(xray_like(2)))
    stray = write(config.landing_dir / "dropped-at-the-root.jpeg", jpeg_bytes(xray_like(3)))
    caplog.set_level("WARNING", logger="streaming.pipeline.fused")
    run_stream(spark, config, layers=("bronze", "silver"), once=True)

    ref = next(row["path_ref"] for row in table_rows(config, "bronze_xray_images") if row["path"] == str(stray))
    warnings = [r.getMessage() for r in caplog.records if "outside a label folder" in r.getMessage()]
    assert len(warnings) == 1 and "1 file(s) outside a label folder of landing" in warnings[0]
    assert short_ref(ref) in warnings[0] and "dropped-at-the-root" not in warnings[0]
    bronze_event = next(row for row in table_rows(config, "pipeline_events") if row["query"] == "bronze")
    assert short_ref(ref) in bronze_event["message"]
    status = collect_status(Lakehouse(spark, config))
    assert status["unlabelled"] == {"images": 2}  # the stray file and the one meant to be classified
