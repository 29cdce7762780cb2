"""``xray retrain``: train on labelled silver features, register the model, promote it only if it is better.

Never trains on split ``test`` (kept for ``xray metrics``). Validation is a patient-grouped hold-out of the
labelled rows; the current champion, of either family, is scored on the same held-out images, clean and
perturbed, and the ``champion`` alias moves only when the new version wins by the rule of
`batch.training.comparison` or there is no champion yet.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch.training import model as model_lib
from batch.training.comparison import COMPARED, compare_with_champion, decide_promotion
from batch.training.confirmed import ConfirmedLabels, apply_confirmed, confirmed_labels
from batch.training.reference import record_reference
from streaming.core.config import XrayConfig
from streaming.core.errors import InsufficientDataError
from streaming.core.progress import progress
from streaming.core.registry import (
    ModelRef,
    champion,
    ensure_experiment,
    set_champion,
    version_tags,
)
from streaming.imaging import features as feature_lib
from streaming.imaging.augment import PERTURBATIONS
from streaming.imaging.cnn import reads_frames
from streaming.lakehouse.catalog import SILVER_FEATURES, SILVER_METADATA
from streaming.lakehouse.engine import Lakehouse

__all__ = ["LabelledData", "RetrainResult", "decide_promotion", "labelled_features", "collect_labelled",
           "model_inputs", "retrain"]

PERTURBATION_NAMES = tuple(PERTURBATIONS)

log = logging.getLogger(__name__)

TRAINING_SPLITS_EXCLUDED = ("test",)
# What `xray retrain` shows as it goes (a bar on a terminal, INFO lines elsewhere).
RETRAIN_STEPS = ("collect", "fit", "validate", "register")
PROGRESS_TICK_SECONDS = 1.0  # a step takes seconds (fit, Spark jobs): the bar's clock runs meanwhile


@dataclass
class LabelledData:
    """Feature matrix with labels and patient groups, as numpy arrays on the driver."""

    image_ids: list[str]
    X: np.ndarray
    y: np.ndarray
    groups: list[str]
    splits: list[str | None]
    silver_batches: np.ndarray  # silver micro-batch of each row: tells which rows a model trained on
    frames: np.ndarray | None = None  # (rows, size, size) uint8 silver frames, for the cnn family


def model_inputs(model, data: LabelledData) -> np.ndarray:
    """What ``model`` reads of ``data``: the frames for the cnn family, else the feature vectors."""
    return data.frames if reads_frames(model) else data.X


def labelled_features(lakehouse: Lakehouse, splits_excluded: tuple[str, ...] = TRAINING_SPLITS_EXCLUDED,
                      only_splits: tuple[str, ...] | None = None, confirmed: ConfirmedLabels | None = None,
                      frames: bool = False) -> DataFrame:
    """Silver features of the current feature version joined with labels, patients and splits; with
    ``confirmed``, the readers' labels win over the folders' outside split test (`batch.training.confirmed`);
    with ``frames``, the rows that keep a frame, with it (the cnn family's input)."""
    features = lakehouse.read(SILVER_FEATURES.name).where(F.col("feature_version") == feature_lib.FEATURE_VERSION)
    if frames:
        features = features.where(F.col("frame").isNotNull())
    metadata = lakehouse.read(SILVER_METADATA.name)
    if confirmed:
        metadata = apply_confirmed(lakehouse.spark, metadata, confirmed, TRAINING_SPLITS_EXCLUDED)
    metadata = metadata.where(F.col("label").isNotNull())
    if only_splits is not None:
        metadata = metadata.where(F.col("split").isin(list(only_splits)))
    elif splits_excluded:
        metadata = metadata.where(F.col("split").isNull() | ~F.col("split").isin(list(splits_excluded)))
    return features.join(metadata.select("image_id", "label", "patient_id", "split"), "image_id").select(
        "image_id", "features", "label", F.coalesce("patient_id", "image_id").alias("group"), "split",
        features["silver_batch_id"].alias("silver_batch_id"), *(["frame"] if frames else []),
    )


def collect_labelled(frame: DataFrame) -> LabelledData:
    """Bring a labelled feature frame to the driver (features are small: about a thousand floats a row)."""
    table = frame.orderBy("image_id").toArrow()
    if table.num_rows == 0:
        return LabelledData([], np.zeros((0, feature_lib.FEATURE_LENGTH), np.float32), np.zeros(0, int), [], [],
                            np.zeros(0, int))
    matrix = np.asarray(table.column("features").to_pylist(), dtype=np.float32)
    return LabelledData(
        table.column("image_id").to_pylist(),
        matrix,
        np.asarray(table.column("label").to_pylist(), dtype=int),
        table.column("group").to_pylist(),
        table.column("split").to_pylist(),
        # Unknown batches count as old ones: a row is "unseen by the champion" only when provably so.
        np.asarray([-1 if b is None else b for b in table.column("silver_batch_id").to_pylist()], dtype=np.int64),
        feature_lib.frames_array(table.column("frame").to_pylist()) if "frame" in table.column_names else None,
    )


@dataclass
class RetrainResult:
    """What a retrain did."""

    version: ModelRef
    promoted: bool
    validation_metrics: dict
    champion_metrics: dict | None
    previous_champion: ModelRef | None
    reason: str
    feedback: dict[str, int] = field(default_factory=dict)  # what it took from radiologists (ConfirmedLabels.usage)


def _model_requirements(family: str = "sklearn") -> list[str]:
    """What loading the model needs, pinned to this environment (spares MLflow inferring it: seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    requirements = []
    packages = ("jax", "jaxlib", "numpy") if family == "cnn" else ("scikit-learn", "numpy", "scipy")
    for package in (*packages, "xray-lakehouse"):
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            requirements.append(package)
    return requirements


def _refeature_hint(lakehouse: Lakehouse) -> str:
    """'; N silver image(s) ... run xray refeature' when silver holds images of older feature versions only."""
    from streaming.silver.refeature import missing_images

    stale = len(missing_images(lakehouse, feature_lib.FEATURE_VERSION)[0])
    return (f"; {stale} silver image(s) have features of an older feature version only: run xray refeature "
            f"(recomputes them as {feature_lib.FEATURE_VERSION}), then xray retrain" if stale else "")


def retrain(spark: SparkSession, config: XrayConfig, seed: int = 0, force_promote: bool = False,
            started: float | None = None) -> RetrainResult:
    """Train, log to MLflow, register a version, and promote it when it beats the champion. ``started`` (a
    ``time.time()``, default now): the command's start, from which ``retrain_max_minutes`` counts."""
    started = time.time() if started is None else started
    with progress(len(RETRAIN_STEPS), "retrain", unit="step", tick=PROGRESS_TICK_SECONDS) as steps:
        steps.update(0, step=RETRAIN_STEPS[0])
        lakehouse = Lakehouse(spark, config)
        lakehouse.ensure_tables()
        confirmed = confirmed_labels(lakehouse, TRAINING_SPLITS_EXCLUDED)
        family = config.model_family
        data = collect_labelled(labelled_features(lakehouse, confirmed=confirmed, frames=family == "cnn"))
        feedback = confirmed.usage(data.image_ids)
        steps.update(1, step=RETRAIN_STEPS[1])
        fitting = time.monotonic()
        result = _fit_cnn(lakehouse, data, seed, started) if family == "cnn" else _fit(lakehouse, data, seed)
        training_seconds = time.monotonic() - fitting
        steps.update(1, step=RETRAIN_STEPS[2])
        previous = champion(config)
        champion_metrics, compared, comparison = None, result.validation_metrics, ""
        if previous is not None:
            previous_tags = version_tags(config, previous)
            if previous_tags.get("feature_version") == feature_lib.FEATURE_VERSION:
                champion_metrics, compared, comparison = compare_with_champion(
                    lakehouse, previous, previous_tags, result, data
                )
        steps.update(1, step=RETRAIN_STEPS[3])
        ref = _log_and_register(config, seed, result, data, champion_metrics, training_seconds, feedback)
        # drift monitoring's reference (streaming.gold.drift)
        record_reference(lakehouse, ref, data, result.model, model_inputs(result.model, data))
        if previous is not None and champion_metrics is None and not force_promote:
            promoted, reason = True, "champion uses other features"
        else:
            promoted, reason = decide_promotion(
                compared, champion_metrics if previous is not None else None, force_promote
            )
        if comparison and previous is not None and not force_promote:
            reason = f"{reason} ({comparison})"
        if promoted:
            set_champion(config, ref)
        steps.update(1)
    _report(ref, result.validation_metrics, promoted, reason, feedback)
    if result.validation_metrics.get("stopped_by_budget"):
        _report_budget(config, result.validation_metrics, time.time() - started)
    return RetrainResult(ref, promoted, result.validation_metrics, champion_metrics, previous, reason, feedback)


def _fit(lakehouse: Lakehouse, data: LabelledData, seed: int) -> model_lib.TrainResult:
    """Fit with augmented copies and validate with the generalisation report (`batch.training.generalisation`):
    the changed copies are computed on executors from bronze, for this split."""
    from batch.training.changed import changed_features
    from batch.training.generalisation import at_test_mix, perturbation_report

    try:
        model_lib.check_trainable(data.X, data.y, data.groups)
        _, validation = model_lib.patient_grouped_split(data.groups, data.y, seed=seed)
        changed = changed_features(lakehouse, data.image_ids, data.X, validation, seed)
        result = model_lib.fit_and_validate(data.X, data.y, data.groups, seed=seed,
                                            target_sensitivity=lakehouse.config.target_sensitivity,
                                            augmented=changed.augmented)
    except model_lib.InsufficientTrainingData as error:
        raise InsufficientDataError(f"cannot retrain: {error}{_refeature_hint(lakehouse)}") from None
    metrics = result.validation_metrics
    metrics["accuracy_at_test_mix"] = at_test_mix(metrics)
    metrics["images_without_bytes"] = changed.missing
    if len(changed.perturbed_rows):
        report = perturbation_report(result.held_out_model, changed.perturbed, data.y[changed.perturbed_rows],
                                     PERTURBATION_NAMES)
        metrics.update({k: v for k, v in report.items() if k != "perturbations"})
        result.perturbations = report["perturbations"]
    return result


def _fit_cnn(lakehouse: Lakehouse, data: LabelledData, seed: int, started: float) -> model_lib.TrainResult:
    """The cnn family's fit and validation (`batch.training.cnnfamily`), with the same generalisation report
    on the same perturbations of the held-out images; the budget counts from ``started``."""
    from batch.training.cnnfamily import fit_and_validate_cnn, perturbed_frames
    from batch.training.generalisation import at_test_mix, perturbation_report

    config = lakehouse.config
    try:
        result = fit_and_validate_cnn(data.frames, data.y, data.groups, data.image_ids, seed=seed,
                                      target_sensitivity=config.target_sensitivity,
                                      max_minutes=config.retrain_max_minutes, started=started)
    except model_lib.InsufficientTrainingData as error:
        raise InsufficientDataError(f"cannot retrain the cnn family: {error} (only silver rows that keep a frame "
                                    f"count: README, Model families)") from None
    metrics = result.validation_metrics
    metrics["accuracy_at_test_mix"] = at_test_mix(metrics)
    validation = np.asarray(result.validation_index, dtype=int)
    report = perturbation_report(result.held_out_model, perturbed_frames(data.frames[validation]),
                                 data.y[validation], PERTURBATION_NAMES)
    metrics.update({k: v for k, v in report.items() if k != "perturbations"})
    result.perturbations = report["perturbations"]
    return result


def _log_and_register(config: XrayConfig, seed: int, result: model_lib.TrainResult, data: LabelledData,
                      champion_metrics: dict | None, training_seconds: float,
                      feedback: dict[str, int] | None = None) -> ModelRef:
    """Log the run (parameters, metrics, validation report, model) to MLflow and tag the registered version."""
    import mlflow

    experiment_id = ensure_experiment(config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"retrain-seed{seed}") as run:
        mlflow.log_params({
            "seed": seed,
            "feature_version": feature_lib.FEATURE_VERSION,
            "feature_length": feature_lib.FEATURE_LENGTH,
            "model_family": config.model_family,
            "threshold": round(float(result.model.threshold), 6),
            "n_labelled": len(data.y),
            "n_patients": len(set(data.groups)),
            "class_balance_pneumonia": round(float(np.mean(data.y)), 4) if len(data.y) else 0.0,
            **(feedback or {}),
        })
        numeric = {f"validation_{k}": float(v) for k, v in result.validation_metrics.items()
                   if isinstance(v, (int, float)) and v is not None}
        mlflow.log_metrics({**numeric, "training_seconds": training_seconds})
        if champion_metrics:
            mlflow.log_metrics({f"champion_validation_{k}": float(v) for k, v in champion_metrics.items()
                                if isinstance(v, (int, float)) and v is not None})
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / "validation.json"
            report.write_text(json.dumps({"new": result.validation_metrics, "champion": champion_metrics,
                                          "perturbations": result.perturbations}, indent=2, default=str))
            mlflow.log_artifact(str(report))
        info = _log_model(config, result, data)
        run_id = run.info.run_id
    ref = ModelRef(config.model_name, str(info.registered_model_version))
    _tag_version(config, ref, result, data, run_id)
    return ref


def _log_model(config: XrayConfig, result: model_lib.TrainResult, data: LabelledData):
    if config.model_family == "cnn":
        return _log_cnn_model(config, result, data)
    import mlflow.models
    import mlflow.sklearn

    # A signature is required by Unity Catalog's registry and documents the input for everyone else.
    sample = data.X[:5]
    signature = mlflow.models.infer_signature(sample, result.model.predict_proba(sample)[:, 1])
    return mlflow.sklearn.log_model(result.model, name="model", registered_model_name=config.model_name,
                                    signature=signature, pip_requirements=_model_requirements(),
                                    skops_trusted_types=[f"{model_lib.__name__}.ThresholdedClassifier",
                                                         "sklearn.frozen._frozen.FrozenEstimator"])


def _log_cnn_model(config: XrayConfig, result: model_lib.TrainResult, data: LabelledData):
    return log_cnn_pyfunc(config, result.model)


def log_cnn_pyfunc(config: XrayConfig, model: Any):
    """The network (a `streaming.imaging.cnn.CnnClassifier`) as a pyfunc whose loader is
    `streaming.imaging.cnn` (the classifier gold scores with), registered under the configured name: input
    the frames (n, size, size) uint8; ``predict`` gives the labels at the threshold, or P(PNEUMONIA) with
    ``params={"output": "probability"}``. Inside an active MLflow run."""
    import mlflow.models
    import mlflow.pyfunc
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    size = feature_lib.FEATURE_SIZE
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, size, size))]),
                               outputs=Schema([ColSpec("double")]),
                               params=ParamSchema([ParamSpec("output", "string", "label")]))
    with tempfile.TemporaryDirectory() as folder:
        model.save(folder)
        return mlflow.pyfunc.log_model(name="model", loader_module="streaming.imaging.cnn", data_path=folder,
                                       registered_model_name=config.model_name, signature=signature,
                                       pip_requirements=_model_requirements("cnn"))


def _tag_version(config: XrayConfig, ref: ModelRef, result: model_lib.TrainResult, data: LabelledData,
                 run_id: str) -> None:
    from streaming.core.registry import configure_mlflow

    client = configure_mlflow(config)
    client.set_model_version_tag(ref.name, ref.version, "model_family", config.model_family)
    client.set_model_version_tag(ref.name, ref.version, "feature_version", feature_lib.FEATURE_VERSION)
    client.set_model_version_tag(ref.name, ref.version, "threshold", str(result.model.threshold))
    client.set_model_version_tag(ref.name, ref.version, "run_id", run_id)
    # The model is refit on every labelled row: rows of later silver batches are new to it.
    trained_through = int(data.silver_batches.max()) if len(data.silver_batches) else -1
    client.set_model_version_tag(ref.name, ref.version, "trained_through_silver_batch", str(trained_through))
    for key in COMPARED:  # what a later retrain compares with when it has too few new images
        if result.validation_metrics.get(key) is not None:
            client.set_model_version_tag(ref.name, ref.version, f"validation_{key}",
                                         repr(float(result.validation_metrics[key])))


def _report(ref: ModelRef, metrics: dict, promoted: bool, reason: str, feedback: dict[str, int]) -> None:
    log.info("model %s v%s: validation accuracy %.3f, ROC AUC %.3f; %s (%s)", ref.name, ref.version,
             metrics.get("accuracy", float("nan")), metrics.get("roc_auc") or float("nan"),
             "promoted to champion" if promoted else "not promoted", reason)
    print(f"registered {ref.name} version {ref.version}: validation accuracy {metrics.get('accuracy', 0):.3f}, "
          f"ROC AUC {(metrics.get('roc_auc') or 0):.3f}; "
          f"{'now champion' if promoted else 'champion unchanged'} ({reason})")
    print(f"  operating point: sensitivity target {metrics.get('target_sensitivity', 0):.2f}; on held-out "
          f"patients sensitivity {metrics.get('recall', 0):.3f}, specificity {metrics.get('specificity', 0):.3f}, "
          f"accuracy at 62.5 % PNEUMONIA {metrics.get('accuracy_at_test_mix', 0):.3f}")
    if any(feedback.values()):
        line = (f"radiologist feedback: {feedback['n_feedback_labels']} confirmed label(s) used "
                f"({feedback['n_feedback_overrides']} overriding the folder's label, {feedback['n_feedback_added']} "
                f"on images without one); {feedback['n_feedback_disputed']} disputed image(s) left out; "
                f"{feedback['n_feedback_test_images']} test image(s) with feedback keep their labels")
        log.info(line)
        print(f"  {line}")
    if "perturbed_worst_specificity" in metrics:
        print(f"  perturbed held-out images (worst / mean of {len(PERTURBATION_NAMES)}): ROC AUC "
              f"{metrics['perturbed_worst_roc_auc']:.3f} / {metrics['perturbed_mean_roc_auc']:.3f}, sensitivity "
              f"{metrics['perturbed_worst_recall']:.3f} / {metrics['perturbed_mean_recall']:.3f}, specificity "
              f"{metrics['perturbed_worst_specificity']:.3f} / {metrics['perturbed_mean_specificity']:.3f}")


def _report_budget(config: XrayConfig, metrics: dict, seconds: float) -> None:
    line = (f"training stopped by the time budget after {metrics['epochs']} epoch(s) (best {metrics['best_epoch']}): "
            f"--max-minutes {config.retrain_max_minutes:g} bounds the whole command, {seconds / 60:.1f} min "
            f"({metrics['budget_reserved_seconds']:.0f} s estimated for validation, perturbed views and "
            f"registration); a larger budget may train a better model")
    log.info(line)
    print(f"  {line}")
