"""Expectations split by Arrow on the driver agree with the Spark split (streaming/quality/arrow.py)."""

from __future__ import annotations

import pytest

from streaming.core.errors import DataQualityFailure
from streaming.quality.arrow import split_flagged
from streaming.quality.expectations import Expectation
from streaming.quality.spark import apply_expectations, flag_expectations


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
