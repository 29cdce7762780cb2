"""Silver's micro-batch writer (streaming/silver/batch.py): a replay after a partial commit writes the rest."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from deltalake import DeltaTable
from support import table_rows

from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent
from streaming.quality.arrow import split_flagged
from streaming.quality.spark import flag_expectations
from streaming.silver.batch import write_silver
from streaming.silver.expectations import silver_expectations
from streaming.silver.transform import to_metadata_rows


def _flagged_batch(spark, config, shas: list[str]) -> pa.Table:
    """Inspected-like rows for `write_silver`: valid 160 px JPEG measures, one row per sha."""
    from streaming.silver.inspect import INSPECTED_SCHEMA

    rows = [{
        "path": f"file:/l/train/NORMAL/IM-{i:04d}-0001.jpeg", "file_name": f"IM-{i:04d}-0001.jpeg",
        "path_ref": f"ref{i}",
        "size_bytes": 1000, "content_status": "ok", "content_sha256": sha, "label_name": "NORMAL",
        "split": "train", "source_batch_id": 0, "expected_format": "JPEG", "detected_format": "JPEG",
        "content_kind": "JPEG image", "width": 160, "height": 160, "mode": "L", "pixel_count": 25600,
        "decode_error": None, "mean_intensity": 90.0, "std_intensity": 30.0, "dynamic_range": 130.0,
        "features": [0.5] * 4, "patient_id": f"p{i}", "pneumonia_type": None,
    } for i, sha in enumerate(shas)]
    frame = spark.createDataFrame(rows, INSPECTED_SCHEMA)
    return flag_expectations(frame, silver_expectations(config), "silver_xray_metadata").toArrow()


def test_replay_after_a_partial_silver_commit_writes_the_rest(spark, config):
    """A crash after the metadata commit but before the features commit: the replay must judge the batch's
    images new again (silver as it was before the batch), so their features are written, not dropped."""
    house = Lakehouse(spark, config)
    house.ensure_tables()
    flagged = _flagged_batch(spark, config, ["a", "b"])
    valid = split_flagged(flagged, silver_expectations(config), "silver_xray_metadata").valid
    metadata = to_metadata_rows(valid, 4, dt.datetime.now(dt.timezone.utc))
    house.append_arrow("silver_xray_metadata", metadata, ("bronze", 4))  # the first attempt got this far
    replay_event = BatchEvent("silver", 4)
    replayed = write_silver(house, flagged, 4, "bronze", replay_event)
    assert replayed.num_rows == 2 and replay_event.duplicate_rows == 0
    features = DeltaTable(str(config.table_path("silver_image_features"))).to_pyarrow_table()
    assert sorted(features.column("image_id").to_pylist()) == ["a", "b"]
    assert len(table_rows(config, "silver_xray_metadata")) == 2  # the metadata commit was skipped
    later = BatchEvent("silver", 5)
    assert write_silver(house, flagged, 5, "bronze", later).num_rows == 0 and later.duplicate_rows == 2
