"""Data-quality expectations as data, in the manner of Delta Live Tables.

Each table declares a tuple of `Expectation`s: a SQL condition valid rows satisfy, an action, and a SQL
expression giving a readable reason. A condition that evaluates to NULL does not apply to the row (for
example, "at least 128 px" for a file that is not an image at all), so each failing row is blamed on the
rule that really describes it.

Actions: ``warn`` (count only), ``drop`` (count and leave the row out), ``quarantine`` (count and send the
row, with rule and reason, to ``silver_quarantine``), ``fail`` (stop the stream: the batch is not committed
and is retried on restart).

One engine: rules are always evaluated as flag columns (`streaming.quality.spark.flag_expectations`, in the
batch's own Spark plan); the flagged rows are then split by Spark (`streaming.quality.spark.apply_expectations`)
or, on the driver, by Arrow (`streaming.quality.arrow.split_flagged`). This module holds what both share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from streaming.core.errors import DataQualityFailure

__all__ = ["ACTIONS", "Action", "Expectation", "QualityResult", "count_rows", "flag_names", "raise_on_failure"]

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


@dataclass(frozen=True)
class QualityResult:
    """A batch split by its expectations (Spark DataFrames or Arrow tables, as the backend works)."""

    valid: Any  # rows to write to the table (warned rows included)
    quarantined: Any  # rows that failed a quarantine rule, with columns `rule` and `reason`
    counts: list[dict]  # [{"table", "rule", "action", "failed"}] for every expectation
    dropped: int
    quarantined_count: int


def flag_names(expectations: tuple[Expectation, ...], table: str) -> tuple[list[str], str, str]:
    """Names of the flag columns (one per rule), the quarantine rule and reason columns of a table (named
    after the table, so the rules of several tables can flag one pass)."""
    return [f"_dq_{table}_{e.name}" for e in expectations], f"_dq_{table}__rule", f"_dq_{table}__reason"


def count_rows(expectations: tuple[Expectation, ...], table: str, failed: list[int]) -> list[dict]:
    """The per-rule counts recorded in ``pipeline_events.expectations``."""
    return [{"table": table, "rule": e.name, "action": e.action, "failed": int(n or 0)}
            for e, n in zip(expectations, failed, strict=True)]


def raise_on_failure(counts: list[dict], table: str) -> None:
    """`DataQualityFailure` when a ``fail`` rule is violated: the batch is not committed."""
    violated = [c for c in counts if c["action"] == "fail" and c["failed"]]
    if violated:
        details = ", ".join(f"{c['rule']} ({c['failed']} rows)" for c in violated)
        raise DataQualityFailure(f"{table}: expectations with action 'fail' violated: {details}")
