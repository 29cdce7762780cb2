"""A champion reads only its own input column of silver (`streaming.imaging.cnn.input_column`): a sklearn
champion never reads the frames (16 KB a row) in the catch-up (`score_unscored`), a gold micro-batch
(`process_gold_batch`) or `xray rescore`. Real Spark, real Delta, a real MLflow champion; what each path
read is recorded on the way to the real reads."""

from __future__ import annotations

import re

import pytest
from populated import synthetic_silver

from streaming.lakehouse.catalog import SILVER_FEATURES
from streaming.lakehouse.engine import Lakehouse

pytestmark = pytest.mark.engine_dependent  # Lakehouse.read(columns=): the deltars schema, native pruning

FRAME = re.compile(r"\bframe#")  # the frame column as an attribute of a Spark plan


def test_a_sklearn_champion_never_reads_the_frames(spark, config, monkeypatch):
    from batch.training.rescore import rescore
    from batch.training.retrain import retrain
    from streaming.gold import scoring

    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    silver = synthetic_silver(lakehouse)
    retrain(spark, config)

    read: list[tuple[str, tuple[str, ...]]] = []
    real_read = Lakehouse.read_arrow

    def recording_read(self, name, columns=None, **options):
        read.append((name, tuple(columns or ())))
        return real_read(self, name, columns=columns, **options)

    monkeypatch.setattr(Lakehouse, "read_arrow", recording_read)
    assert scoring.score_unscored(lakehouse) == len(silver)
    silver_reads = [columns for name, columns in read if name == SILVER_FEATURES.name]
    assert silver_reads and all("frame" not in columns for columns in silver_reads)
    assert any("features" in columns for columns in silver_reads)

    batches: list[list[str]] = []
    real_attach = scoring.attach_labels
    monkeypatch.setattr(scoring, "attach_labels", lambda rows, house: batches.append(rows.column_names)
                        or real_attach(rows, house))
    scoring.process_gold_batch(lakehouse, lakehouse.read(SILVER_FEATURES.name), 0)
    assert batches == [["image_id", "feature_version", "features"]]

    merged = []
    real_merge = Lakehouse.merge_by_key
    monkeypatch.setattr(Lakehouse, "merge_by_key", lambda self, frame, name, key: merged.append(frame)
                        or real_merge(self, frame, name, key))
    retrain(spark, config, seed=1, force_promote=True)
    assert rescore(spark, config).updated_rows == len(silver)
    plans = [frame._jdf.queryExecution().executedPlan().toString() for frame in merged]  # what is read
    assert plans and not any(FRAME.search(plan) for plan in plans), plans[0][:2000]
