"""The fused hot path (bronze's batch writes silver and gold) and its driver-side Arrow steps."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from imagefiles import bad_inputs, jpeg_bytes, write, xray_like

from streaming.core.errors import DataQualityFailure
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent
from streaming.pipeline.plan import plan_queries
from streaming.pipeline.service import run_stream
from streaming.quality.arrow import split_flagged
from streaming.quality.expectations import Expectation
from streaming.quality.spark import apply_expectations, flag_expectations
from streaming.silver.batch import write_silver
from streaming.silver.expectations import silver_expectations
from streaming.silver.transform import first_copies, to_metadata_rows


def table_rows(config, name: str) -> list[dict]:
    return DeltaTable(str(config.table_path(name))).to_pyarrow_table().to_pylist()


def bronze_names(config) -> dict[str, str]:
    """path_ref → file name, from bronze (the only table holding names)."""
    return {r["path_ref"]: r["file_name"] for r in table_rows(config, "bronze_xray_images")}


def test_plan_runs_downstream_layers_inside_bronze():
    assert plan_queries(("bronze", "silver", "gold")) == {"bronze": ("silver", "gold")}
    assert plan_queries(("bronze", "silver")) == {"bronze": ("silver",)}
    assert plan_queries(("bronze",)) == {"bronze": ()}
    assert plan_queries(("silver", "gold")) == {"silver": ("gold",)}
    assert plan_queries(("gold",)) == {"gold": ()}


def test_split_flagged_matches_apply_expectations(spark):
    rows = spark.createDataFrame([(1, 5), (2, -1), (3, None), (4, 200), (5, -7)], "id int, value int")
    rules = (
        Expectation("positive", "value > 0", "quarantine", "concat('value ', value, ' is not positive')"),
        Expectation("small", "value < 100", "drop", "'too big'"),
        Expectation("known", "value IS NOT NULL", "warn", "'missing'"),
    )
    split = split_flagged(flag_expectations(rows, rules, "t").toArrow(), rules, "t")
    planned = apply_expectations(rows, rules, "t")
    assert split.counts == planned.counts
    assert sorted(split.valid.column("id").to_pylist()) == sorted(r.id for r in planned.valid.collect()) == [1, 3]
    assert split.valid.column_names == ["id", "value"]
    assert split.quarantined.select(["id", "rule", "reason"]).to_pylist() == [
        {"id": 2, "rule": "positive", "reason": "value -1 is not positive"},
        {"id": 5, "rule": "positive", "reason": "value -7 is not positive"},
    ]
    assert (split.dropped, split.quarantined_count) == (1, 2)


def test_split_flagged_fail_rule_raises(spark):
    rows = spark.createDataFrame([(1,), (None,)], "id int")
    rules = (Expectation("id_present", "id IS NOT NULL", "fail", "'no id'"),)
    with pytest.raises(DataQualityFailure, match=r"id_present \(1 rows\)"):
        split_flagged(flag_expectations(rows, rules, "t").toArrow(), rules, "t")


def test_first_copies_keeps_the_earliest_copy_of_new_content():
    valid = pa.table({
        "content_sha256": ["a", "b", "a", "c"],
        "source_batch_id": [3, 3, 2, 3],
        "path": ["x/2.jpeg", "x/1.jpeg", "x/9.jpeg", "x/3.jpeg"],
    })
    kept = first_copies(valid, known_image_ids={"c"})
    assert kept.to_pylist() == [
        {"content_sha256": "b", "source_batch_id": 3, "path": "x/1.jpeg"},
        {"content_sha256": "a", "source_batch_id": 2, "path": "x/9.jpeg"},
    ]


def test_read_arrow_filters_do_not_lose_rows_of_long_strings(spark, config):
    """delta-rs 1.6 prunes files on a column without min/max statistics as if nothing matched."""
    house = Lakehouse(spark, config)
    long_reason = "corrupt or truncated JPEG: " + "deep " * 80  # longer than any min/max kept
    house.append_rows("silver_quarantine", [{"rule": "decodes", "reason": long_reason, "content_sha256": "s"}])
    found = house.read_arrow("silver_quarantine", columns=["rule"], filters=[("reason", "in", [long_reason])])
    assert found.column("rule").to_pylist() == ["decodes"]
    assert house.read_arrow("silver_quarantine", filters=[("reason", "=", "other")]).num_rows == 0


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


def test_images_ingested_without_champion_are_scored_once_when_one_appears(spark, config):
    """Gold inside bronze's batch skips scoring while no champion exists; the catch-up scores those
    images once (a second catch-up and a later batch write nothing twice)."""
    from imagefiles import stage_labelled_dataset

    from batch.training.retrain import retrain
    from streaming.gold import scoring as gold

    stage_labelled_dataset(config.landing_dir, per_class=20, split="train", seed=5)
    run_stream(spark, config, once=True)
    assert table_rows(config, "gold_pneumonia_predictions") == []
    retrain(spark, config)
    house = Lakehouse(spark, config)
    silver_ids = {r["image_id"] for r in table_rows(config, "silver_image_features")}
    assert gold.score_unscored(house) == len(silver_ids)
    assert gold.score_unscored(house) == 0
    stage_labelled_dataset(config.landing_dir, per_class=2, split="val", seed=6)
    run_stream(spark, config, once=True)
    predictions = table_rows(config, "gold_pneumonia_predictions")
    ids = [p["image_id"] for p in predictions]
    assert len(ids) == len(set(ids)) == len({r["image_id"] for r in table_rows(config, "silver_image_features")})
    assert all(p["true_label"] in ("NORMAL", "PNEUMONIA") for p in predictions)
