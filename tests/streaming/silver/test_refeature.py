"""xray refeature (streaming/silver/refeature.py): after a feature version change, every silver image gets
exactly one row of the new version (equal to a direct recomputation), incrementally and exactly once."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from deltalake import DeltaTable
from imagefiles import stage_labelled_dataset
from support import table_rows

from streaming.core.errors import LakehouseBusyError
from streaming.core.locks import stream_lock
from streaming.imaging import features as feature_lib
from streaming.imaging.images import expected_format, inspect_image
from streaming.lakehouse.engine import Lakehouse
from streaming.ops.status import collect_status, render_status
from streaming.pipeline.service import run_stream
from streaming.silver import refeature as refeature_lib
from streaming.silver.refeature import NOT_IN_BRONZE, refeature

# Runs once per Delta engine (tests/conftest.py).
pytestmark = pytest.mark.engine_dependent

NEW_VERSION = "test-refeature-v99"


@pytest.fixture
def streamed(spark, config):
    """Six images streamed into silver with the released feature version."""
    stage_labelled_dataset(config.landing_dir, per_class=3)
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    return config


def _new_version_rows(config) -> Counter:  # XrayConfig
    rows = table_rows(config, "silver_image_features", ["image_id", "feature_version"])
    return Counter(r["image_id"] for r in rows if r["feature_version"] == NEW_VERSION)


def _silver_ids(config) -> set[str]:  # XrayConfig
    return {r["image_id"] for r in table_rows(config, "silver_xray_metadata", ["image_id"])}


def test_refeature_recomputes_each_image_once_and_a_rerun_adds_nothing(spark, streamed, monkeypatch, capsys):
    config = streamed
    monkeypatch.setattr(feature_lib, "FEATURE_VERSION", NEW_VERSION)
    status = collect_status(Lakehouse(spark, config))
    assert status["features"] == {"feature_version": NEW_VERSION, "stale": 6, "unfinished": 0}
    assert "6 silver image(s) have features of an older feature version only" in render_status(status)
    assert "run xray refeature" in render_status(status)
    result = refeature(spark, config, chunk_images=4)
    assert (result.recomputed, result.chunks, result.skipped) == (6, 2, {})
    assert _new_version_rows(config) == Counter(dict.fromkeys(_silver_ids(config), 1))
    assert "6 image(s) recomputed" in capsys.readouterr().out

    # Equal to a direct recomputation from bronze's bytes, with the metadata row's silver batch.
    bronze = {r["content_sha256"]: r for r in table_rows(config, "bronze_xray_images")}
    batches = {r["image_id"]: r["silver_batch_id"] for r in table_rows(config, "silver_xray_metadata")}
    for row in table_rows(config, "silver_image_features"):
        if row["feature_version"] == NEW_VERSION:
            copy = bronze[row["image_id"]]
            direct = inspect_image(copy["content"], config.max_image_pixels, expected_format(copy["file_name"]))
            np.testing.assert_array_equal(np.asarray(row["features"], np.float32), direct.features)
            assert row["silver_batch_id"] == batches[row["image_id"]]

    assert "FEATURES" not in render_status(collect_status(Lakehouse(spark, config)))
    again = refeature(spark, config, chunk_images=4)
    assert (again.recomputed, again.chunks) == (0, 0)
    assert sum(_new_version_rows(config).values()) == 6
    events = [r for r in table_rows(config, "pipeline_events") if r["query"] == "refeature"]
    assert sorted(e["output_rows"] for e in events) == [0, 6]


def test_a_crash_after_a_chunk_then_a_rerun_writes_each_image_once(spark, streamed, monkeypatch):
    config = streamed
    monkeypatch.setattr(feature_lib, "FEATURE_VERSION", NEW_VERSION)
    original = Lakehouse.append_arrow
    commits = []

    def crash_after_first_chunk(self, table, data, txn=None, mode="append"):
        original(self, table, data, txn, mode)
        if table == "silver_image_features":
            commits.append(txn)
            raise KeyboardInterrupt("killed after the first chunk's commit")

    monkeypatch.setattr(Lakehouse, "append_arrow", crash_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        refeature(spark, config, chunk_images=2)
    assert commits == [(f"refeature:{NEW_VERSION}", 0)]
    assert sum(_new_version_rows(config).values()) == 2
    monkeypatch.setattr(Lakehouse, "append_arrow", original)

    result = refeature(spark, config, chunk_images=2)
    assert (result.recomputed, result.chunks) == (4, 2)
    assert _new_version_rows(config) == Counter(dict.fromkeys(_silver_ids(config), 1))
    table = DeltaTable(str(config.table_path("silver_image_features")))
    assert table.transaction_version(f"refeature:{NEW_VERSION}") == 2  # chunks 0, 1, 2: none skipped or redone


def test_refused_while_a_stream_holds_the_lakehouse(spark, streamed, monkeypatch):
    config = streamed
    monkeypatch.setattr(feature_lib, "FEATURE_VERSION", NEW_VERSION)
    with stream_lock(config.root), pytest.raises(LakehouseBusyError, match="already being streamed"):
        refeature(spark, config)
    assert not _new_version_rows(config)


def test_an_image_without_bronze_bytes_is_reported_not_fatal(spark, streamed, monkeypatch):
    config = streamed
    lost = sorted(_silver_ids(config))[0]
    DeltaTable(str(config.table_path("bronze_xray_images"))).delete(f"content_sha256 = '{lost}'")
    monkeypatch.setattr(feature_lib, "FEATURE_VERSION", NEW_VERSION)
    result = refeature(spark, config)
    assert (result.recomputed, result.skipped) == (5, {NOT_IN_BRONZE: 1})
    assert set(_new_version_rows(config)) == _silver_ids(config) - {lost}


def test_next_steps_name_retrain_then_rescore():
    result = refeature_lib.RefeatureResult("v2", champion_ref="m version 1", champion_version="v1")
    assert "xray retrain" in refeature_lib.next_steps(result)[0]
    assert "then xray rescore" in refeature_lib.next_steps(result)[0]
    assert refeature_lib.next_steps(refeature_lib.RefeatureResult("v2", champion_ref="m 2", champion_version="v2")) == []


@pytest.mark.slow
def test_after_a_feature_version_change_refeature_retrain_rescore_replace_gold(spark, config, monkeypatch, caplog):
    """The documented upgrade: refeature, then retrain (trains on the new version, promoted), then rescore
    (every gold prediction made again by the new champion on new-version features)."""
    from batch.training.rescore import rescore
    from batch.training.retrain import retrain
    from streaming.core.errors import InsufficientDataError
    from streaming.core.registry import champion, version_tags

    stage_labelled_dataset(config.landing_dir, per_class=16, seed=4)
    run_stream(spark, config, once=True)
    first = retrain(spark, config)
    run_stream(spark, config, once=True)  # gold scores the images with the first champion
    assert len(table_rows(config, "gold_pneumonia_predictions")) == 32

    monkeypatch.setattr(feature_lib, "FEATURE_VERSION", NEW_VERSION)
    with pytest.raises(InsufficientDataError, match="32 silver image.*run xray refeature"):
        retrain(spark, config)
    with caplog.at_level("WARNING", logger="streaming.pipeline.service"):
        run_stream(spark, config, once=True)
    assert any("run xray refeature" in r.getMessage() for r in caplog.records)

    result = refeature(spark, config)
    assert result.recomputed == 32 and result.champion_version != NEW_VERSION
    second = retrain(spark, config)
    assert second.promoted and champion(config) == second.version != first.version
    assert version_tags(config, second.version)["feature_version"] == NEW_VERSION
    assert rescore(spark, config).updated_rows == 32
    gold = table_rows(config, "gold_pneumonia_predictions")
    assert len(gold) == 32 and {(r["model_version"], r["feature_version"]) for r in gold} == {
        (second.version.version, NEW_VERSION)}
