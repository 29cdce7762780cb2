"""The expectations' split on the driver, for rows already flagged in Spark (an Arrow table)."""

from __future__ import annotations

from typing import Any

from streaming.quality.expectations import (
    Expectation,
    QualityResult,
    count_rows,
    flag_names,
    raise_on_failure,
)

__all__ = ["split_flagged"]


def split_flagged(flagged: Any, expectations: tuple[Expectation, ...], table: str) -> QualityResult:
    """Split rows flagged by `streaming.quality.spark.flag_expectations` (a ``pa.Table`` on the driver):
    the same rules as `streaming.quality.spark.apply_expectations`, and `DataQualityFailure` when a ``fail``
    rule is violated."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flags, rule_column, reason_column = flag_names(expectations, table)
    counts = count_rows(expectations, table,
                        [pc.sum(flagged.column(flag).cast(pa.int64())).as_py() for flag in flags])
    raise_on_failure(counts, table)
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
    return QualityResult(valid, quarantined, counts, dropped, quarantined.num_rows)
