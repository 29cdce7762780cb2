"""``python -m batch.evaluation.evaluate_quality --family cnn``: the cnn model family on a Kaggle-layout folder,
trained and validated as ``xray retrain --family cnn`` does (`batch.training.cnnfamily`): the frames silver
keeps (decoded by a process pool of two, no Spark), the same patient-grouped split, augmentation, early
stopping, operating point and perturbed views; then the inference cost per image."""

from __future__ import annotations

import hashlib
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from streaming.imaging import features as feature_lib

__all__ = ["frames_of", "evaluate_cnn"]


def _frame(path: Path) -> tuple[bytes | None, str]:
    from streaming.imaging.images import decoded_gray

    content = path.read_bytes()
    gray = decoded_gray(content, 10**9)
    # The image id (the content's SHA-256) seeds the augmented copies, as in `xray retrain`.
    return (feature_lib.frame_bytes(gray) if gray is not None else None), hashlib.sha256(content).hexdigest()


def frames_of(paths: list[Path], processes: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(frames of the decodable images, their image ids, their rows in ``paths``)."""
    with Pool(processes) as pool:
        results = pool.map(_frame, paths, chunksize=64)
    rows = np.asarray([i for i, (frame, _) in enumerate(results) if frame is not None], dtype=int)
    return (feature_lib.frames_array([results[i][0] for i in rows]), [results[i][1] for i in rows], rows)


def inference_ms(model, frames: np.ndarray, images: int = 1024) -> float:
    """Milliseconds per image of the classifier's ``predict_proba`` (batches of 256, after a warm-up)."""
    sample = frames[:images]
    model.predict_proba(sample)  # compiles each batch shape once
    started = time.perf_counter()
    model.predict_proba(sample)
    return 1000.0 * (time.perf_counter() - started) / len(sample)


def evaluate_cnn(paths: list[Path], y: np.ndarray, groups: list[str], seed: int, target_sensitivity: float,
                 processes: int, max_minutes: float) -> dict:
    """Train and validate the network: the `TrainResult` (``result``), the perturbed validation frames and
    their labels (``perturbed``, ``perturbed_y``), and the timings; ``evaluate_quality`` prints them."""
    from batch.training.cnnfamily import fit_and_validate_cnn, perturbed_frames

    started = time.perf_counter()
    frames, image_ids, rows = frames_of(paths, processes)
    y, groups = y[rows], [groups[i] for i in rows]
    frame_seconds = time.perf_counter() - started
    print(f"frames: {len(rows)} of {len(paths)} images decoded in {frame_seconds:.1f} s wall")
    started = time.perf_counter()
    result = fit_and_validate_cnn(frames, y, groups, image_ids, seed=seed, target_sensitivity=target_sensitivity,
                                  max_minutes=max_minutes)
    training_seconds = time.perf_counter() - started
    metrics = result.validation_metrics
    print(f"training (augmented copies, {metrics['epochs']} epochs, best {metrics['best_epoch']}, threshold on the "
          f"tuning part): {training_seconds:.1f} s")
    validation = np.asarray(result.validation_index, dtype=int)
    cost = inference_ms(result.model, frames)
    print(f"inference: {cost:.2f} ms per image (batches of 256, all cores)")
    return {"result": result, "perturbed": perturbed_frames(frames[validation]), "perturbed_y": y[validation],
            "frame_seconds": frame_seconds, "training_seconds": training_seconds, "inference_ms_per_image": cost}
