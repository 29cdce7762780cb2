"""Data-quality expectations as data, in the manner of Delta Live Tables.

Each table declares a tuple of `Expectation`s: a SQL condition valid rows satisfy, an action, and a SQL
expression giving a readable reason. A condition that evaluates to NULL does not apply to the row (for
example, "at least 128 px" for a file that is not an image at all), so each failing row is blamed on the
rule that really describes it.

Actions: ``warn`` (count only), ``drop`` (count and leave the row out), ``quarantine`` (count and send the
row, with rule and reason, to ``silver_quarantine``), ``fail`` (stop the stream: the batch is not committed
and is retried on restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming.core.errors import DataQualityFailure

Action = Literal["warn", "drop", "quarantine", "fail"]
ACTIONS: tuple[str, ...] = ("warn", "drop", "quarantine", "fail")


@dataclass(frozen=True)
class Expectation:
    """A rule rows of a table must meet."""

    name: str
    condition: str  # SQL: true for valid rows, NULL when the rule does not apply
    action: Action
    reason: str  # SQL expression: why a failing row fails, readable

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"expectation {self.name}: action must be one of {ACTIONS}, not {self.action!r}")

    def failed(self) -> Column:
        """True for rows that violate the rule (NULL conditions do not)."""
        return ~F.coalesce(F.expr(self.condition), F.lit(True))


@dataclass(frozen=True)
class QualityResult:
    """A batch split by its expectations."""

    valid: DataFrame  # rows to write to the table (warned rows included)
    quarantined: DataFrame  # rows that failed a quarantine rule, with columns `rule` and `reason`
    counts: list[dict]  # [{"table", "rule", "action", "failed"}] for every expectation
    dropped: int
    quarantined_count: int


def apply_expectations(
    batch: DataFrame, expectations: tuple[Expectation, ...], table: str, count: bool = True
) -> QualityResult:
    """Evaluate every expectation on ``batch`` and split it.

    With ``count`` (default) the failures of each rule are counted in one pass (the caller should pass a
    cached or driver-local batch) and `DataQualityFailure` is raised when any ``fail`` rule is violated;
    without, the split is only planned (``fail`` rules then cannot be checked, so they are refused).
    A row failing several quarantine rules is quarantined once, under the first rule in declaration order.
    """
    if not count and any(e.action == "fail" for e in expectations):
        raise ValueError("expectations with action 'fail' need count=True")
    flags = batch.select(
        *[F.sum(e.failed().cast("long")).alias(e.name) for e in expectations],
        F.sum(F.coalesce(*[F.when(e.failed(), F.lit(1)) for e in expectations
                           if e.action == "quarantine"], F.lit(0))).alias("_quarantined"),
    ).first() if expectations and count else None
    counts = [
        {"table": table, "rule": e.name, "action": e.action, "failed": int((flags[e.name] if flags else 0) or 0)}
        for e in expectations
    ]
    violated = [c for c in counts if c["action"] == "fail" and c["failed"]]
    if violated:
        details = ", ".join(f"{c['rule']} ({c['failed']} rows)" for c in violated)
        raise DataQualityFailure(f"{table}: expectations with action 'fail' violated: {details}")

    dropping = [e for e in expectations if e.action == "drop"]
    quarantining = [e for e in expectations if e.action == "quarantine"]
    rows = batch
    for expectation in dropping:
        rows = rows.where(~expectation.failed())
    if quarantining:
        first_rule = F.coalesce(*[F.when(e.failed(), F.lit(e.name)) for e in quarantining])
        first_reason = F.coalesce(*[F.when(e.failed(), F.expr(e.reason).cast("string")) for e in quarantining])
        rows = rows.withColumn("_rule", first_rule).withColumn("_reason", first_reason)
        valid = rows.where(F.col("_rule").isNull()).drop("_rule", "_reason")
        quarantined = (
            rows.where(F.col("_rule").isNotNull())
            .withColumnRenamed("_rule", "rule").withColumnRenamed("_reason", "reason")
        )
    else:
        valid = rows
        quarantined = rows.limit(0).withColumn("rule", F.lit(None).cast("string")).withColumn(
            "reason", F.lit(None).cast("string")
        )
    dropped = sum(c["failed"] for c in counts if c["action"] == "drop")
    quarantined_count = int(flags["_quarantined"] or 0) if flags is not None else 0
    return QualityResult(valid, quarantined, counts, dropped, quarantined_count)


def _flag_names(expectations: tuple[Expectation, ...], table: str) -> tuple[list[str], str, str]:
    """Names of the flag columns (one per rule), the quarantine rule and reason columns of a table."""
    return [f"_dq_{table}_{e.name}" for e in expectations], f"_dq_{table}__rule", f"_dq_{table}__reason"


def flag_expectations(batch: DataFrame, expectations: tuple[Expectation, ...], table: str) -> DataFrame:
    """``batch`` plus, per expectation, a failed flag, and the first quarantine rule and reason
    (columns named after ``table``, so the rules of several tables can flag one pass).

    Planned with the batch's own query, so a micro-batch's rules cost no Spark job of their own; the
    driver then splits the flagged rows with `split_flagged`.
    """
    quarantining = [e for e in expectations if e.action == "quarantine"]
    rule = F.coalesce(*[F.when(e.failed(), F.lit(e.name)) for e in quarantining]) if quarantining else F.lit(None)
    reason = (F.coalesce(*[F.when(e.failed(), F.expr(e.reason).cast("string")) for e in quarantining])
              if quarantining else F.lit(None))
    flags, rule_column, reason_column = _flag_names(expectations, table)
    return batch.select(
        "*",
        *[e.failed().alias(flag) for e, flag in zip(expectations, flags, strict=True)],
        rule.cast("string").alias(rule_column),
        reason.cast("string").alias(reason_column),
    )


@dataclass(frozen=True)
class ArrowQualityResult:
    """A driver-held (Arrow) batch split by its expectations."""

    valid: Any  # pa.Table: rows to write (warned rows included)
    quarantined: Any  # pa.Table: rows that failed a quarantine rule, with columns `rule` and `reason`
    counts: list[dict]
    dropped: int
    quarantined_count: int


def split_flagged(flagged: Any, expectations: tuple[Expectation, ...], table: str) -> ArrowQualityResult:
    """Split rows flagged by `flag_expectations` (an Arrow table on the driver): same rules as
    `apply_expectations`, and `DataQualityFailure` when a ``fail`` rule is violated."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flags, rule_column, reason_column = _flag_names(expectations, table)
    counts = []
    for e, flag in zip(expectations, flags, strict=True):
        failed = flagged.column(flag)
        counts.append({"table": table, "rule": e.name, "action": e.action,
                       "failed": int(pc.sum(failed.cast(pa.int64())).as_py() or 0)})
    violated = [c for c in counts if c["action"] == "fail" and c["failed"]]
    if violated:
        details = ", ".join(f"{c['rule']} ({c['failed']} rows)" for c in violated)
        raise DataQualityFailure(f"{table}: expectations with action 'fail' violated: {details}")
    keep = pa.array([True] * flagged.num_rows, pa.bool_())
    for e, flag in zip(expectations, flags, strict=True):
        if e.action == "drop":
            keep = pc.and_(keep, pc.invert(pc.fill_null(flagged.column(flag), False)))
    rows = flagged.filter(keep)
    in_quarantine = pc.is_valid(rows.column(rule_column))
    valid = rows.filter(pc.invert(in_quarantine)).drop_columns([*flags, rule_column, reason_column])
    quarantined = rows.filter(in_quarantine).drop_columns(flags)
    quarantined = quarantined.rename_columns(
        [{rule_column: "rule", reason_column: "reason"}.get(n, n) for n in quarantined.column_names])
    dropped = sum(c["failed"] for c in counts if c["action"] == "drop")
    return ArrowQualityResult(valid, quarantined, counts, dropped, quarantined.num_rows)
