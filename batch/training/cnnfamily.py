"""``xray retrain`` for the ``cnn`` model family: silver's frames in, a `TrainResult` out, validated as the
sklearn family is (README: Model families).

- the same patient-grouped validation split (`model.patient_grouped_split`, same seed), never trained on;
- augmentation: the sklearn family's changed copies (`streaming.imaging.augment.augmented_copies`, seeded
  by the image) of every frame, shown as views during training (`batch.training.cnn`);
- early stopping and the operating point on a patient-grouped tuning part of the training side only;
- the same perturbed views of the validation images (`augment.PERTURBATIONS`) for the generalisation
  report, and the budget ``retrain_max_minutes`` (``xray retrain --max-minutes``).

The copies and perturbations are made from silver's 8-bit frame, on the driver: about 5 ms an image,
under a minute for the 5,216 Kaggle train images, small beside the training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from batch.training import model as model_lib
from batch.training.cnn import DEFAULT_EPOCHS, TUNING_FRACTION, fit_cnn
from streaming.core.errors import ConfigError
from streaming.core.progress import progress
from streaming.imaging import cnn
from streaming.imaging.augment import AUGMENTED_COPIES, PERTURBATIONS, augmented_copies

__all__ = ["require_cnn", "augmented_frames", "perturbed_frames", "after_training", "fit_and_validate_cnn",
           "REGISTRATION_SECONDS"]

log = logging.getLogger(__name__)

# MLflow's run, the pyfunc's artifacts, the registered version and its tags: measured 5-15 s on a 2-core
# machine; twice that, so the budget holds on a loaded one.
REGISTRATION_SECONDS = 30.0


def require_cnn() -> None:
    """``ConfigError`` saying how to install the family when JAX is missing."""
    reason = cnn.missing_reason()
    if reason is not None:
        raise ConfigError(f"model_family = cnn: {reason}; or set model_family = sklearn")


def _levels(gray: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(gray, 0.0, 1.0) * 255.0).astype(np.uint8)


def augmented_frames(frames: np.ndarray, image_ids: list[str], rows: np.ndarray, seed: int) -> np.ndarray:
    """(n, AUGMENTED_COPIES, size, size) uint8: the changed copies of ``rows`` (other rows: the frame itself,
    never shown)."""
    copies = np.repeat(frames[:, None], AUGMENTED_COPIES, axis=1)
    with progress(len(rows), "cnn augment", unit="image") as bar:
        for row in rows:
            gray = frames[row].astype(np.float32) * np.float32(1.0 / 255.0)
            copies[row] = np.stack([_levels(c) for c in augmented_copies(gray, image_ids[row], seed)])
            bar.update(1)
    return copies


def perturbed_frames(frames: np.ndarray) -> np.ndarray:
    """(n, len(PERTURBATIONS), size, size) uint8: every perturbation of each frame."""
    out = np.empty((len(frames), len(PERTURBATIONS), *frames.shape[1:]), np.uint8)
    for index, frame in enumerate(frames):
        gray = frame.astype(np.float32) * np.float32(1.0 / 255.0)
        out[index] = np.stack([_levels(change(gray)) for change in PERTURBATIONS.values()])
    return out


def after_training(images: int, validation: int, tuning: int) -> Callable[[float], float]:
    """The seconds `xray retrain` spends after the epochs, given the seconds one image costs to score: the
    operating point (the tuning images), the validation images clean and perturbed, the same again for a
    champion scored on them (`batch.training.comparison`), the drift reference (every image), and
    ``REGISTRATION_SECONDS`` for MLflow."""
    views = len(PERTURBATIONS) + 1
    return lambda per_image: per_image * (tuning + images + 2 * validation * views) + REGISTRATION_SECONDS


def fit_and_validate_cnn(frames: np.ndarray, y: np.ndarray, groups: list[str], image_ids: list[str], seed: int = 0,
                         target_sensitivity: float = model_lib.DEFAULT_TARGET_SENSITIVITY,
                         max_minutes: float = 0.0, max_epochs: int = DEFAULT_EPOCHS,
                         started: float | None = None) -> model_lib.TrainResult:
    """Train the network on the training side of the patient-grouped split and validate it on the rest
    (figures as `model.fit_and_validate` reports them, plus the epochs). ``max_minutes`` (0: no budget)
    bounds everything from ``started`` (a ``time.time()``, default now: the command's start for `xray
    retrain`) to the end of the command: the epochs stop early enough to leave the estimated time of what
    follows them (`after_training`), at least one epoch runs. Raises ``InsufficientTrainingData`` as the
    sklearn family does."""
    require_cnn()
    started = time.time() if started is None else started
    y = np.asarray(y).astype(int)
    model_lib.check_trainable(np.zeros((len(y), 1)), y, groups)
    g = np.asarray([str(group) for group in groups], dtype=object)
    train, validation = model_lib.patient_grouped_split(g, y, seed=seed)
    copies = augmented_frames(frames, image_ids, train, seed)
    deadline = started + max_minutes * 60.0 if max_minutes else None
    reserve = after_training(len(y), len(validation), int(round(len(train) * TUNING_FRACTION)))
    with progress(max_epochs, "cnn train", unit="epoch") as bar:
        def on_epoch(epoch: dict) -> None:
            bar.update(1, step=f"loss {epoch['loss']:.3f}, tuning ROC AUC {epoch['tuning_roc_auc']:.3f}")

        fit = fit_cnn(frames, y, g, train, seed=seed, copies=copies, target_sensitivity=target_sensitivity,
                      max_epochs=max_epochs, on_epoch=on_epoch, deadline=deadline, reserve=reserve)
    metrics = model_lib.evaluate(fit.model, frames[validation], y[validation])
    metrics.pop("n", None)
    metrics.update({
        "target_sensitivity": target_sensitivity,
        "oof_sensitivity": fit.operating_point.sensitivity,  # on the tuning part (training side)
        "oof_specificity": fit.operating_point.specificity,
        "n_train": len(train),
        "n_validation": len(validation),
        "n_train_patients": len(np.unique(g[train])),
        "n_validation_patients": len(np.unique(g[validation])),
        "augmented_copies": AUGMENTED_COPIES,
        "epochs": fit.epochs,
        "best_epoch": fit.best_epoch,
        "stopped_by_budget": fit.stopped == "time budget",
        "budget_reserved_seconds": round(fit.reserved_seconds, 1),
    })
    log.info("cnn: %d epoch(s), best %d, stopped by %s, %.0f s", fit.epochs, fit.best_epoch, fit.stopped, fit.seconds)
    return model_lib.TrainResult(model=fit.model, validation_metrics=metrics, train_index=train,
                                 validation_index=validation, held_out_model=fit.model,
                                 operating_point=fit.operating_point)
