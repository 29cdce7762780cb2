"""The expectations on Spark DataFrames: flag columns planned with the batch, and the split by Spark."""

from __future__ import annotations

import functools

from pyspark import SparkContext
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming.quality.expectations import (
    Expectation,
    QualityResult,
    count_rows,
    flag_names,
    raise_on_failure,
)

__all__ = ["apply_expectations", "failed", "flag_expectations"]


def failed(expectation: Expectation) -> Column:
    """True for rows that violate the rule (NULL conditions do not)."""
    return ~F.coalesce(F.expr(expectation.condition), F.lit(True))


def flag_expectations(batch: DataFrame, expectations: tuple[Expectation, ...], table: str) -> DataFrame:
    """``batch`` plus, per expectation, a failed flag, and the first quarantine rule and reason.

    Planned with the batch's own query, so a micro-batch's rules cost no Spark job of their own; the
    driver then splits the flagged rows with `streaming.quality.arrow.split_flagged`.
    A row failing several quarantine rules is blamed on the first in declaration order.
    """
    return batch.select("*", *_flag_columns(expectations, table, SparkContext._active_spark_context))


@functools.lru_cache(maxsize=16)
def _flag_columns(expectations: tuple[Expectation, ...], table: str, _context: SparkContext | None) -> tuple[Column, ...]:
    # Built once per rule set (and Spark context: the columns are JVM objects): every micro-batch would
    # otherwise parse each rule's SQL again, a few hundred Py4J calls (0.1-0.4 s a batch, `xray bench
    # --only profile`); an unresolved column can go into any number of plans.
    quarantining = [e for e in expectations if e.action == "quarantine"]
    rule = F.coalesce(*[F.when(failed(e), F.lit(e.name)) for e in quarantining]) if quarantining else F.lit(None)
    reason = (F.coalesce(*[F.when(failed(e), F.expr(e.reason).cast("string")) for e in quarantining])
              if quarantining else F.lit(None))
    flags, rule_column, reason_column = flag_names(expectations, table)
    return (*[failed(e).alias(flag) for e, flag in zip(expectations, flags, strict=True)],
            rule.cast("string").alias(rule_column), reason.cast("string").alias(reason_column))


def apply_expectations(
    batch: DataFrame, expectations: tuple[Expectation, ...], table: str, count: bool = True
) -> QualityResult:
    """Evaluate every expectation on ``batch`` and split it with Spark.

    With ``count`` (default) the failures of each rule are counted in one pass (the caller should pass a
    cached or driver-local batch) and `DataQualityFailure` is raised when any ``fail`` rule is violated;
    without, the split is only planned (``fail`` rules then cannot be checked, so they are refused).
    """
    if not count and any(e.action == "fail" for e in expectations):
        raise ValueError("expectations with action 'fail' need count=True")
    flags, rule_column, reason_column = flag_names(expectations, table)
    flagged = flag_expectations(batch, expectations, table)
    totals = flagged.select(
        *[F.sum(F.col(flag).cast("long")).alias(flag) for flag in flags],
        F.sum(F.col(rule_column).isNotNull().cast("long")).alias(rule_column),
    ).first() if expectations and count else None
    counts = count_rows(expectations, table, [totals[flag] if totals else 0 for flag in flags])
    raise_on_failure(counts, table)
    rows = flagged
    for expectation, flag in zip(expectations, flags, strict=True):
        if expectation.action == "drop":
            rows = rows.where(~F.col(flag))
    valid = rows.where(F.col(rule_column).isNull()).drop(*flags, rule_column, reason_column)
    quarantined = (rows.where(F.col(rule_column).isNotNull()).drop(*flags)
                   .withColumnRenamed(rule_column, "rule").withColumnRenamed(reason_column, "reason"))
    dropped = sum(c["failed"] for c in counts if c["action"] == "drop")
    return QualityResult(valid, quarantined, counts, dropped, int((totals[rule_column] if totals else 0) or 0))
