"""``xray metrics``: evaluate models per split, refresh the dataset summary and write the report.

- ``gold_model_performance`` (append-only: every evaluation is kept, so quality can be followed over time):
  one row per model version per split present in silver (``train``, ``val``, ``test``, and labelled rows
  without a split as ``unknown``). Only the champion by default, every registered version on request;
  versions trained on another feature version are skipped, their inputs would not mean the same thing.
- ``gold_dataset_summary`` (overwritten): images and patients per split and label, and a ``all``/``all`` row
  with the totals, quarantined files and duplicates.
- a ``feedback`` split when radiologists confirmed labels (``xray feedback``): the version against the
  readers' labels (`batch.evaluation.agreement`), its agreement and Cohen's kappa printed.
- ``<lakehouse>/reports/index.html`` with PNG charts (see `batch.evaluation.report`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batch.evaluation.agreement import FEEDBACK_SPLIT, agreement_line, feedback_split
from batch.training.retrain import collect_labelled, labelled_features
from streaming.core.config import XrayConfig
from streaming.core.errors import NoChampionModelError, first_line
from streaming.core.registry import (
    ModelRef,
    champion,
    load_model,
    model_versions,
    version_tags,
)
from streaming.imaging import features as feature_lib
from streaming.imaging.cnn import reads_frames
from streaming.lakehouse.catalog import (
    GOLD_DATASET_SUMMARY,
    GOLD_MODEL_PERFORMANCE,
    PIPELINE_EVENTS,
    SILVER_METADATA,
)
from streaming.lakehouse.engine import Lakehouse
from streaming.ops.status import quarantine_status
from streaming.ops.text import NOT_DEFINED, metric_text, undefined_metrics

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
ALL = "all"
SILVER_QUERY = "silver"


@dataclass
class SplitEvaluation:
    """One model version scored on one split: the metrics row plus the scores the charts need."""

    model_name: str
    model_version: str
    split: str
    metrics: dict[str, Any]
    threshold: float
    y: np.ndarray
    scores: np.ndarray


@dataclass
class HoldOut:
    """A version's figures on the patients `xray retrain` held out before refitting (recorded in MLflow)."""

    model_name: str
    model_version: str
    metrics: dict[str, Any]
    images: int | None = None
    patients: int | None = None


@dataclass
class MetricsResult:
    """What ``xray metrics`` did."""

    rows_written: int
    report_path: Path | None
    champion: ModelRef | None = None
    evaluations: list[SplitEvaluation] = field(default_factory=list)
    skipped_versions: list[str] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    quarantine_by_rule: dict[str, int] = field(default_factory=dict)
    holdouts: list[HoldOut] = field(default_factory=list)


# -- dataset summary ------------------------------------------------------------------------------------
def duplicate_count(lakehouse: Lakehouse) -> int:
    """Files silver skipped because their content was already seen, summed over its micro-batches.

    Two small columns of ``pipeline_events`` read with delta-rs: a Spark job would cost more than the read.
    """
    if not lakehouse.exists(PIPELINE_EVENTS.name):
        return 0
    import pyarrow.compute as pc

    events = lakehouse.delta_table(PIPELINE_EVENTS.name).to_pyarrow_table(
        columns=["duplicate_rows"], filters=[("query", "=", SILVER_QUERY)])
    return int(pc.sum(events.column("duplicate_rows")).as_py() or 0)


def dataset_summary(lakehouse: Lakehouse, quarantine_by_rule: dict[str, int], updated_time: dt.datetime
                    ) -> list[dict]:
    """Rows of ``gold_dataset_summary``: per split x label, then the ``all``/``all`` totals row."""
    metadata = lakehouse.read(SILVER_METADATA.name)
    # One job: the rollup's grand total is distinct over the whole table (a patient in two splits counts
    # once), which no sum of the per-split rows can give. Its per-split subtotals are not kept.
    grouped = (
        metadata.select(F.coalesce("split", F.lit(UNKNOWN)).alias("split"),
                        F.coalesce("label_name", F.lit(UNKNOWN)).alias("label_name"), "image_id", "patient_id")
        .rollup("split", "label_name")
        .agg(F.countDistinct("image_id").alias("images"), F.countDistinct("patient_id").alias("patients"),
             F.grouping_id().alias("level"))
        .where(F.col("level").isin(0, 3))
        .collect()
    )
    rows, total = [], {"images": 0, "patients": 0}
    for r in grouped:
        if r["level"] == 3:
            total = {"images": int(r["images"]), "patients": int(r["patients"])}
            continue
        rows.append({"split": r["split"], "label_name": r["label_name"], "images": int(r["images"]),
                     "patients": int(r["patients"]), "quarantined": None, "duplicates": None,
                     "updated_time": updated_time})
    from batch.evaluation.figures import split_sort_key

    rows.sort(key=lambda r: (split_sort_key(r["split"]), r["label_name"]))
    rows.append({"split": ALL, "label_name": ALL, **total, "quarantined": sum(quarantine_by_rule.values()),
                 "duplicates": duplicate_count(lakehouse), "updated_time": updated_time})
    return rows


def refresh_dataset_summary(lakehouse: Lakehouse, updated_time: dt.datetime | None = None
                            ) -> tuple[list[dict], dict[str, int]]:
    """Recompute and overwrite ``gold_dataset_summary``; returns its rows and quarantine counts per rule."""
    updated_time = updated_time or dt.datetime.now(dt.timezone.utc)
    quarantine_by_rule = quarantine_status(lakehouse)["by_rule"]
    rows = dataset_summary(lakehouse, quarantine_by_rule, updated_time)
    lakehouse.overwrite_rows(GOLD_DATASET_SUMMARY.name, rows)
    return rows, quarantine_by_rule


# -- model evaluation -----------------------------------------------------------------------------------
def labelled_by_split(lakehouse: Lakehouse, frames: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(X, y) of the labelled images of the current feature version, per split (null split: ``unknown``);
    with ``frames``, X is the frames of the images that keep one (the cnn family's input).

    One read of every labelled split, grouped on the driver: ``only_splits`` filters with ``isin``, which
    never matches a null split, and one Spark job is cheaper than one per split.
    """
    data = collect_labelled(labelled_features(lakehouse, splits_excluded=(), frames=frames))
    indexes: dict[str, list[int]] = defaultdict(list)
    for index, split in enumerate(data.splits):
        indexes[split or UNKNOWN].append(index)
    inputs = data.frames if frames else data.X
    return {split: (inputs[rows], data.y[rows]) for split, rows in indexes.items()}


def _plain(value: Any) -> Any:
    """numpy scalars and arrays to plain Python, NaN to None (Delta and JSON both want plain values)."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    return value


def evaluate_split(model: Any, ref: ModelRef, split: str, X: np.ndarray, y: np.ndarray) -> SplitEvaluation:
    """Score one split with `batch.training.model.evaluate`, keeping the probabilities for the ROC chart."""
    from batch.training import model as model_lib

    metrics = {k: _plain(v) for k, v in model_lib.evaluate(model, X, y).items()}
    if len(np.unique(y)) < 2:
        metrics["roc_auc"] = None  # undefined with one class, whatever the library returned
    scores = np.asarray(model.predict_proba(X)[:, 1], dtype=float)
    threshold = float(getattr(model, "threshold", 0.5))
    return SplitEvaluation(ref.name, ref.version, split, metrics, threshold, np.asarray(y), scores)


HOLD_OUT_KEYS = ("accuracy", "balanced_accuracy", "roc_auc", "recall", "specificity", "precision", "f1")
MAX_HOLD_OUT_VERSIONS = 10


def hold_out(config: XrayConfig, ref: ModelRef) -> HoldOut | None:
    """The version's validation metrics: its training run's ``validation_*`` metrics, else its tags."""
    from streaming.core.registry import configure_mlflow

    client = configure_mlflow(config)
    try:
        version = client.get_model_version(ref.name, ref.version)
        tags = dict(version.tags)
        run_id = tags.get("run_id") or version.run_id
        logged = client.get_run(run_id).data.metrics if run_id else {}
    except Exception as error:  # a pruned run must not stop the report
        log.warning("no training run for %s version %s (%s)", ref.name, ref.version, first_line(error))
        tags, logged = {}, {}
    values = {key: logged.get(f"validation_{key}", tags.get(f"validation_{key}")) for key in HOLD_OUT_KEYS}
    metrics = {key: float(value) for key, value in values.items() if value is not None}
    if not metrics:
        return None
    images, patients = logged.get("validation_n_validation"), logged.get("validation_n_validation_patients")
    return HoldOut(ref.name, ref.version, metrics, None if images is None else int(images),
                   None if patients is None else int(patients))


def hold_outs(config: XrayConfig) -> list[HoldOut]:
    """Hold-out figures of the latest registered versions (oldest first): cheap, from the registry."""
    found = (hold_out(config, ref) for ref in model_versions(config)[-MAX_HOLD_OUT_VERSIONS:])
    return [h for h in found if h is not None]


def performance_row(evaluation: SplitEvaluation, evaluated_time: dt.datetime) -> dict:
    """The ``gold_model_performance`` row of one evaluation."""
    m = evaluation.metrics
    return {
        "model_name": evaluation.model_name,
        "model_version": evaluation.model_version,
        "split": evaluation.split,
        "accuracy": m.get("accuracy"),
        "precision": m.get("precision"),
        "recall": m.get("recall"),
        "specificity": m.get("specificity"),
        "f1": m.get("f1"),
        "roc_auc": m.get("roc_auc"),
        "confusion_matrix": json.dumps(m.get("confusion_matrix")),
        "threshold": evaluation.threshold,
        "sample_count": int(len(evaluation.y)),
        "evaluated_time": evaluated_time,
    }


def _versions_to_evaluate(config: XrayConfig, current: ModelRef, all_versions: bool
                          ) -> tuple[list[tuple[ModelRef, dict]], list[str]]:
    candidates = model_versions(config) if all_versions else [current]
    if current not in candidates:
        candidates.append(current)
    kept, skipped = [], []
    for ref in candidates:
        tags = version_tags(config, ref)
        if tags.get("feature_version") != feature_lib.FEATURE_VERSION:
            log.warning("skipping %s version %s: trained on feature version %r, silver has %r", ref.name,
                        ref.version, tags.get("feature_version"), feature_lib.FEATURE_VERSION)
            skipped.append(ref.version)
            continue
        kept.append((ref, tags))
    return kept, skipped


def _print_summary(result: MetricsResult, threshold_of: dict[str, float]) -> None:
    by_version: dict[str, list[SplitEvaluation]] = defaultdict(list)
    for evaluation in result.evaluations:
        by_version[evaluation.model_version].append(evaluation)
    from batch.evaluation.figures import split_role, split_sort_key

    def fmt(value: Any, width: int) -> str:
        return f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"

    undefined: dict[str, str] = {}

    def line(name: str, images: Any, m: dict) -> str:
        undefined.update({key: reason for key, reason in undefined_metrics(m.get("confusion_matrix")).items()
                          if key in ("recall", "specificity")})
        return (f"  {name:<22} {images if images is not None else '-':>7} {fmt(m.get('accuracy'), 9)} "
                f"{fmt(m.get('roc_auc'), 8)} {metric_text(m, 'recall', 12)} {metric_text(m, 'specificity', 12)}")

    holdout_of = {h.model_version: h for h in result.holdouts}
    for version in sorted(by_version, key=int):
        ref = result.champion
        role = " (champion)" if ref and version == ref.version else ""
        print(f"{ref.name if ref else ''} version {version}{role}, threshold {threshold_of[version]:.3f}")
        print(f"  {'split':<22} {'images':>7} {'accuracy':>9} {'ROC AUC':>8} {'sensitivity':>12} {'specificity':>12}")
        if version in holdout_of:
            print(line("validation (held out)", holdout_of[version].images, holdout_of[version].metrics))
        ordered = sorted(by_version[version], key=lambda e: (split_role(e.split) != "held out",
                                                             split_sort_key(e.split)))
        for e in ordered:
            print(line(f"{e.split} ({split_role(e.split)})", len(e.y), e.metrics))
    for key, reason in sorted(undefined.items()):
        print(f"  {NOT_DEFINED}: {'sensitivity' if key == 'recall' else key} is not defined for a split with {reason}")
    if result.skipped_versions:
        print(f"skipped version(s) {', '.join(result.skipped_versions)}: other feature version than "
              f"{feature_lib.FEATURE_VERSION}")
    total = next((r for r in result.summary if r["split"] == ALL), None)
    if total:
        print(f"dataset: {total['images']} images, {total['patients']} patients, {total['quarantined']} "
              f"quarantined, {total['duplicates']} duplicates")
    for e in result.evaluations:
        if e.split == FEEDBACK_SPLIT and result.champion and e.model_version == result.champion.version:
            print(agreement_line(e.model_version, e.metrics))
    print(f"wrote {result.rows_written} row(s) to {GOLD_MODEL_PERFORMANCE.name}")
    if result.report_path:
        print(f"report: {result.report_path}")


def run_metrics(spark: SparkSession, config: XrayConfig, all_versions: bool = False,
                write_report: bool = True) -> MetricsResult:
    """Refresh the dataset summary, evaluate the champion (or every version) per split, write the report.

    Raises `NoChampionModelError` when no version has the ``champion`` alias, after the summary is refreshed
    (it does not depend on a model).
    """
    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    now = dt.datetime.now(dt.timezone.utc)
    summary, quarantine_by_rule = refresh_dataset_summary(lakehouse, now)

    current = champion(config)
    if current is None:
        raise NoChampionModelError(
            f"no version of model {config.model_name} has the 'champion' alias; run 'xray retrain' to train "
            f"one, then 'xray metrics' again (dataset summary refreshed)"
        )
    to_evaluate, skipped = _versions_to_evaluate(config, current, all_versions)
    if current.version in skipped:
        log.warning("the champion uses feature version other than %s: run 'xray retrain' on current features",
                    feature_lib.FEATURE_VERSION)

    splits = labelled_by_split(lakehouse) if to_evaluate else {}
    # The readers' confirmed images: one more split, labelled by them (batch.evaluation.agreement).
    splits.update(feedback_split(lakehouse) if to_evaluate else {})
    if to_evaluate and not splits:
        log.warning("no labelled images with features of version %s in silver: nothing to evaluate",
                    feature_lib.FEATURE_VERSION)
    evaluations: list[SplitEvaluation] = []
    threshold_of: dict[str, float] = {}
    champion_tags: dict[str, str] = {}
    # The cnn family reads the frames: its versions are evaluated on the images that keep one.
    frame_splits = (labelled_by_split(lakehouse, frames=True)
                    if any(tags.get("model_family") == "cnn" for _, tags in to_evaluate) else {})
    for ref, tags in to_evaluate:
        model = load_model(config, ref)
        threshold_of[ref.version] = float(getattr(model, "threshold", 0.5))
        if ref == current:
            champion_tags = tags
        for split, (X, y) in (frame_splits if reads_frames(model) else splits).items():
            evaluations.append(evaluate_split(model, ref, split, X, y))

    rows = [performance_row(e, now) for e in evaluations]
    lakehouse.append_rows(GOLD_MODEL_PERFORMANCE.name, rows)

    holdouts = hold_outs(config)
    report_path = None
    if write_report:
        from batch.evaluation.report import write_report as render
        from streaming.ops.provenance import synthetic_status

        report_path = render(lakehouse, current, evaluations, summary, quarantine_by_rule, now,
                             champion_tags=champion_tags or version_tags(config, current), holdouts=holdouts,
                             synthetic=synthetic_status(lakehouse))
    result = MetricsResult(len(rows), report_path, current, evaluations, skipped, summary, quarantine_by_rule,
                           holdouts)
    _print_summary(result, threshold_of)
    return result
