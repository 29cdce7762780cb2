"""Report model quality on a Kaggle-layout folder:
``python -m batch.evaluation.evaluate_quality [--data DIR]``.

Extracts features for every image with ``streaming.imaging.features.features_from_bytes`` (a process pool
of two, no Spark), trains with ``batch.training.model.fit_and_validate`` (patient-grouped 80/20 split) and
prints the validation metrics with the feature and training timings, then the same held-out patients under
the fixed perturbations of `streaming.imaging.augment` (the generalisation report of `xray retrain`).
Training learns from two augmented copies of each training image, as `xray retrain` does. Labels come from
the ``NORMAL``/``PNEUMONIA`` folder names and patients from the file names (``streaming.core.paths``).

Default data: ``../shared/data/chest_xray_224/train`` relative to the repository root. ``--family cnn``
evaluates the convolutional network instead (`batch.evaluation.quality_cnn`; needs the ``[cnn]`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from batch.training import model as model_lib
from batch.training.generalisation import at_test_mix, perturbation_report
from streaming.core.paths import parse_xray_path
from streaming.imaging import features as feature_lib
from streaming.imaging.augment import PERTURBATIONS

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "chest_xray_224" / "train"
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def find_images(root: Path) -> list[tuple[Path, int, str]]:
    """(path, label, patient group) of every labelled image under ``root``, sorted by path."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        info = parse_xray_path(str(path.relative_to(root.parent)))
        if info.label is None:
            continue
        group = info.patient_key or f"{info.label}/{path.name}"  # unknown patient: its own group
        found.append((path, int(info.label == "PNEUMONIA"), group))
    return found


def _timed_features(path: Path) -> tuple[np.ndarray, float]:
    content = path.read_bytes()
    started = time.perf_counter()
    vector = feature_lib.features_from_bytes(content)
    return vector, time.perf_counter() - started


def extract_all(paths: list[Path], processes: int = 2) -> tuple[np.ndarray, float]:
    """Feature matrix for ``paths`` and the mean decode+resize+feature time per image (ms, one core)."""
    with Pool(processes) as pool:
        results = pool.map(_timed_features, paths, chunksize=64)
    X = np.stack([vector for vector, _ in results]) if results else np.zeros((0, feature_lib.FEATURE_LENGTH))
    per_image_ms = 1000.0 * float(np.mean([seconds for _, seconds in results])) if results else 0.0
    return X.astype(np.float32), per_image_ms


def _changed(job: tuple[Path, bool, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(augmented copies' features, perturbations' features or None) of one file, as `xray retrain` makes
    them (keyed by the content's SHA-256, the image id)."""
    import hashlib

    from streaming.imaging.augment import augmented_features, perturbed_features
    from streaming.imaging.images import decoded_gray

    path, perturb, seed = job
    content = path.read_bytes()
    gray = decoded_gray(content, 10**9)
    if gray is None:
        return None, None
    key = hashlib.sha256(content).hexdigest()
    return augmented_features(gray, key, seed), perturbed_features(gray) if perturb else None


def changed_all(paths: list[Path], X: np.ndarray, validation: np.ndarray, seed: int, processes: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augmented copies of every image (its own features where it cannot be decoded) and the perturbed
    features of the validation images: (augmented, perturbed, rows of ``perturbed``)."""
    chosen = set(int(i) for i in validation)
    with Pool(processes) as pool:
        results = pool.map(_changed, [(p, i in chosen, seed) for i, p in enumerate(paths)], chunksize=32)
    augmented = np.stack([a if a is not None else np.stack([X[i], X[i]]) for i, (a, _) in enumerate(results)])
    rows = [i for i, (_, p) in enumerate(results) if p is not None]
    perturbed = np.stack([results[i][1] for i in rows]) if rows else np.zeros((0, 0, X.shape[1]))
    return augmented.astype(np.float32), perturbed.astype(np.float32), np.asarray(rows, dtype=int)


def generalisation(model, metrics: dict, perturbed: np.ndarray, y: np.ndarray) -> dict:
    """Add the test-mix accuracy and the perturbation summary to ``metrics``, print them; the report."""
    metrics["accuracy_at_test_mix"] = at_test_mix(metrics)
    print(f"  accuracy at 62.5 % PNEUMONIA (the test split's mix) {metrics['accuracy_at_test_mix']:.4f}")
    report = perturbation_report(model, perturbed, y, tuple(PERTURBATIONS))
    metrics.update({k: v for k, v in report.items() if k != "perturbations"})
    print(f"held-out images perturbed ({len(y)} images; at the same threshold):")
    print(f"  {'perturbation':26s} {'ROC AUC':>8} {'sensitivity':>12} {'specificity':>12} {'acc@62.5%':>10}")
    for name, figures in report["perturbations"].items():
        print(f"  {name:26s} {figures['roc_auc']:8.4f} {figures['recall']:12.4f} {figures['specificity']:12.4f} "
              f"{figures['accuracy_at_test_mix']:10.4f}")
    for summary in ("worst", "mean"):
        print(f"  {summary:26s} " + " ".join(f"{metrics[f'perturbed_{summary}_{k}']:{w}.4f}" for k, w in (
            ("roc_auc", 8), ("recall", 12), ("specificity", 12), ("accuracy_at_test_mix", 10))))
    return report


def print_validation(metrics: dict) -> None:
    """The patient-grouped validation figures."""
    print("patient-grouped validation "
          f"({metrics['n_validation']} images / {metrics['n_validation_patients']} patients held out, "
          f"{metrics['n_train']} images / {metrics['n_train_patients']} patients trained on):")
    for key in ("accuracy", "roc_auc", "balanced_accuracy", "precision", "recall", "specificity", "f1",
                "threshold"):
        value = metrics[key]
        print(f"  {key:18s} {value:.4f}" if value is not None else f"  {key:18s} n/a")
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    print(f"  confusion matrix   tn={tn} fp={fp} fn={fn} tp={tp}")


def feature_only_ms(paths: list[Path], sample: int = 300) -> float:
    """Mean ``extract_features`` time (ms) on already decoded 128x128 images: the cost beyond decode+resize."""
    from PIL import Image

    grays = []
    for path in paths[:: max(1, len(paths) // sample)][:sample]:
        with Image.open(path) as image:
            grays.append(feature_lib.fixed_size_gray(image))
    feature_lib.extract_features(grays[0])  # warm-up (first call allocates)
    started = time.perf_counter()
    for gray in grays:
        feature_lib.extract_features(gray)
    return 1000.0 * (time.perf_counter() - started) / len(grays)


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation and print a report; returns a process exit code."""
    parser = argparse.ArgumentParser(prog="python -m batch.evaluation.evaluate_quality",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"Kaggle-layout folder with NORMAL/ and PNEUMONIA/ (default {DEFAULT_DATA})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient-grouped split")
    parser.add_argument("--processes", type=int, default=2, help="feature extraction processes")
    parser.add_argument("--target-sensitivity", type=float, default=model_lib.DEFAULT_TARGET_SENSITIVITY,
                        help="operating point: sensitivity on out-of-fold scores (default %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--family", choices=("sklearn", "cnn"), default="sklearn",
                        help="model family: sklearn (features, default) or cnn (the network on the frames)")
    parser.add_argument("--max-minutes", type=float, default=20.0,
                        help="cnn: training budget in minutes (default %(default)s; 0: none)")
    args = parser.parse_args(argv)

    if not args.data.is_dir():
        print(f"no such folder: {args.data}", file=sys.stderr)
        return 2
    images = find_images(args.data)
    if not images:
        print(f"no labelled images under {args.data} (expected NORMAL/ and PNEUMONIA/ folders)", file=sys.stderr)
        return 2
    paths = [path for path, _, _ in images]
    y = np.array([label for _, label, _ in images])
    groups = [group for _, _, group in images]
    print(f"data: {args.data}  images: {len(y)} (NORMAL {int((y == 0).sum())}, PNEUMONIA {int(y.sum())}), "
          f"patients: {len(set(groups))}")
    if args.family == "cnn":
        from batch.evaluation.quality_cnn import evaluate_cnn

        found = evaluate_cnn(paths, y, groups, args.seed, args.target_sensitivity, args.processes, args.max_minutes)
        print_validation(found["result"].validation_metrics)
        report = generalisation(found["result"].held_out_model, found["result"].validation_metrics,
                                found["perturbed"], found["perturbed_y"])
        if args.json:
            args.json.write_text(json.dumps({
                "data": str(args.data), "family": "cnn", "images": len(y),
                **{k: found[k] for k in ("frame_seconds", "training_seconds", "inference_ms_per_image")},
                "validation_metrics": found["result"].validation_metrics, "perturbations": report["perturbations"],
            }, indent=2, default=str))
        return 0
    print(f"features: {feature_lib.FEATURE_VERSION}, length {feature_lib.FEATURE_LENGTH}, "
          f"{args.processes} processes, cpu count {os.cpu_count()}")

    started = time.perf_counter()
    X, decode_and_features_ms = extract_all(paths, args.processes)
    extraction_seconds = time.perf_counter() - started
    extract_ms = feature_only_ms(paths)
    print(f"feature extraction: {extraction_seconds:.1f} s wall; per image on one core: "
          f"{decode_and_features_ms:.2f} ms decode+resize+features, {extract_ms:.3f} ms extract_features alone")

    started = time.perf_counter()
    _, validation = model_lib.patient_grouped_split(groups, y, seed=args.seed)
    augmented, perturbed, perturbed_rows = changed_all(paths, X, validation, args.seed, args.processes)
    print(f"augmented copies and perturbations: {time.perf_counter() - started:.1f} s wall")
    started = time.perf_counter()
    result = model_lib.fit_and_validate(X, y, groups, seed=args.seed, target_sensitivity=args.target_sensitivity,
                                        augmented=augmented)
    training_seconds = time.perf_counter() - started
    metrics = result.validation_metrics
    print(f"training (inner CV for the threshold + fit on train part + refit on all): {training_seconds:.1f} s")
    print_validation(metrics)
    report = generalisation(result.held_out_model, metrics, perturbed, y[perturbed_rows])

    if args.json:
        args.json.write_text(json.dumps({
            "data": str(args.data),
            "feature_version": feature_lib.FEATURE_VERSION,
            "feature_length": feature_lib.FEATURE_LENGTH,
            "images": len(y),
            "extraction_seconds": extraction_seconds,
            "decode_and_features_ms_per_image": decode_and_features_ms,
            "extract_features_ms_per_image": extract_ms,
            "training_seconds": training_seconds,
            "validation_metrics": metrics,
            "perturbations": report["perturbations"],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
