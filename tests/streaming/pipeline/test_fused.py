"""The fused hot path (bronze's batch writes silver and gold) and its driver-side Arrow steps."""

from __future__ import annotations

from deltalake import DeltaTable
from imagefiles import bad_inputs, jpeg_bytes, write, xray_like

from streaming.pipeline.service import run_stream


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
