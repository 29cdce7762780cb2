"""Expectations split by Spark (streaming/quality/spark.py)."""

from __future__ import annotations

import pytest
from pyspark.testing import assertDataFrameEqual

from streaming.quality.expectations import Expectation
from streaming.quality.spark import apply_expectations


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
