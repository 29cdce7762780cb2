"""Training of the ``cnn`` model family (`streaming.imaging.cnn`): Adam, early stopping, a seed, a budget.

Data: the fixed-size gray frames of the labelled images and their ``AUGMENTED_COPIES`` changed copies
(`streaming.imaging.augment`, the sklearn family's augmentation); every epoch shows each training image once,
as itself or one of its copies chosen at random, so an epoch costs one pass over the images.

Splits, all patient-grouped (`batch.training.model.patient_grouped_split`): the 20 % validation part is
never seen by training; of the rest, 20 % of the patients are the *tuning* part, which decides early
stopping (the epoch with the best ROC AUC) and the operating point (`operating_point`, the
``target_sensitivity`` rule), so both are chosen on training data only. The shipped model is the one fitted
on the training part, whose validation figures are reported: a refit on every row would double the
training time without a second early-stopping signal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from batch.training import model as model_lib
from streaming.imaging import cnn
from streaming.imaging.cnn import CnnClassifier

__all__ = ["CnnFit", "fit_cnn", "DEFAULT_EPOCHS", "PATIENCE", "BATCH_SIZE"]

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 30
PATIENCE = 5  # epochs without a better tuning AUC before training stops
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4
TUNING_FRACTION = 0.2


@dataclass
class CnnFit:
    """What training did: the model, its operating point, and the epochs' history."""

    model: CnnClassifier
    operating_point: model_lib.OperatingPoint
    epochs: int
    best_epoch: int
    stopped: str  # "early stopping", "epochs", "time budget"
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    reserved_seconds: float = 0.0  # kept for the work after training, by the last estimate (``reserve``)


def _train_step():
    cnn.missing_reason()  # JAX's CPU settings, before its first import
    import jax
    import jax.numpy as jnp
    import optax

    optimiser = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)

    def loss_fn(params, x, y, weights):
        logits = cnn.forward(params, x)
        return jnp.sum(weights * optax.sigmoid_binary_cross_entropy(logits, y)) / jnp.sum(weights)

    @jax.jit
    def step(params, state, x, y, weights):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, weights)
        updates, state = optimiser.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return optimiser, step


def _epoch_views(frames: np.ndarray, copies: np.ndarray | None, rows: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One view of each of ``rows``, shuffled: the image itself or one of its changed copies; and the
    rows in that order."""
    order = rng.permutation(rows)
    if copies is None or copies.shape[1] == 0:
        return frames[order], order
    pick = rng.integers(0, copies.shape[1] + 1, len(order))
    views = frames[order].copy()
    changed = pick > 0
    views[changed] = copies[order[changed], pick[changed] - 1]
    return views, order


def _run_epoch(step, params, state, views: np.ndarray, labels: np.ndarray, class_weight: np.ndarray):
    """One pass over ``views`` in batches of ``BATCH_SIZE`` (the last padded with zero-weight rows, so
    XLA compiles one shape); returns the parameters, the optimiser state and the mean loss."""
    losses = []
    for start in range(0, len(views), BATCH_SIZE):
        x = cnn.prepare(views[start:start + BATCH_SIZE])
        target = labels[start:start + BATCH_SIZE].astype(np.float32)
        weights = class_weight[labels[start:start + BATCH_SIZE]]
        if len(x) < BATCH_SIZE:
            pad = BATCH_SIZE - len(x)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), np.float32)])
            target = np.concatenate([target, np.zeros(pad, np.float32)])
            weights = np.concatenate([weights, np.zeros(pad, np.float32)])
        params, state, loss = step(params, state, x, target, weights)
        losses.append(float(loss))
    return params, state, float(np.mean(losses)) if losses else float("nan")


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 else 0.0


def fit_cnn(frames: np.ndarray, y: np.ndarray, groups, rows: np.ndarray, seed: int = 0,
            copies: np.ndarray | None = None, target_sensitivity: float = model_lib.DEFAULT_TARGET_SENSITIVITY,
            max_epochs: int = DEFAULT_EPOCHS, max_seconds: float | None = None,
            on_epoch: Callable[[dict], None] | None = None, deadline: float | None = None,
            reserve: Callable[[float], float] | None = None) -> CnnFit:
    """Fit on ``rows`` of (frames, y): a patient-grouped tuning part of them for early stopping and the
    operating point, the rest to learn from (with ``copies``, shape (n, copies, size, size), as views).
    ``max_seconds`` stops after the epoch that crosses it. ``deadline`` (a ``time.time()``) is when the
    whole command must end: after each epoch, ``reserve(seconds per image)`` estimates the work that comes
    after training from the latest tuning pass's cost, and training stops when another epoch as long as the
    last would not end before ``deadline`` minus that; at least one epoch runs. The best epoch is kept."""
    started = time.monotonic()
    y = np.asarray(y).astype(int)
    g = np.asarray(groups, dtype=object)
    fit_part, tune_part = model_lib.patient_grouped_split(g[rows], y[rows], TUNING_FRACTION, seed=seed + 7)
    fit_rows, tune_rows = rows[fit_part], rows[tune_part]
    optimiser, step = _train_step()
    params = cnn.init_params(seed)
    state = optimiser.init(params)
    positive_share = float(y[fit_rows].mean())
    class_weight = np.array([0.5 / max(1 - positive_share, 1e-6), 0.5 / max(positive_share, 1e-6)], np.float32)
    rng = np.random.default_rng(seed)
    best = (-1.0, 0, params)
    history: list[dict] = []
    stopped = "epochs"
    reserved = 0.0
    for epoch in range(1, max_epochs + 1):
        epoch_started = time.monotonic()
        views, order = _epoch_views(frames, copies, fit_rows, rng)
        params, state, loss = _run_epoch(step, params, state, views, y[order], class_weight)
        scoring_started = time.monotonic()
        tune_scores = cnn.probabilities(params, frames[tune_rows])
        # The latest pass, not the first: the first includes XLA's compilation of the scoring shapes.
        per_image = (time.monotonic() - scoring_started) / max(len(tune_rows), 1)
        auc = _auc(y[tune_rows], tune_scores)
        history.append({"epoch": epoch, "loss": loss, "tuning_roc_auc": auc,
                        "seconds": round(time.monotonic() - started, 1)})
        if on_epoch:
            on_epoch(history[-1])
        if auc > best[0]:
            best = (auc, epoch, params)
        if epoch - best[1] >= PATIENCE:
            stopped = "early stopping"
            break
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            stopped = "time budget"
            break
        if deadline is not None:
            reserved = reserve(per_image) if reserve else 0.0
            if time.time() + (time.monotonic() - epoch_started) > deadline - reserved:
                stopped = "time budget"
                break
    _, best_epoch, params = best
    params = {name: np.asarray(value) for name, value in params.items()}
    point = model_lib.operating_point(y[tune_rows], cnn.probabilities(params, frames[tune_rows]),
                                      target_sensitivity)
    return CnnFit(CnnClassifier(params, point.threshold), point, len(history), best_epoch, stopped, history,
                  time.monotonic() - started, reserved)
