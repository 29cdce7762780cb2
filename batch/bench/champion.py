"""The champion model used by pipeline, scaling and latency: trained once per run in a separate *model*
lakehouse on a few of the bench files (not timed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from batch.bench.context import BenchContext, BenchFile, label_of, stage
from batch.bench.processes import run_xray
from batch.bench.report import say
from batch.bench.settings import MEASURED_MASTER, MODEL_IMAGES_PER_CLASS
from batch.bench.tables import table_rows
from streaming.core.names import LABELS


def model_files(files: list[BenchFile]) -> list[BenchFile]:
    chosen: list[BenchFile] = []
    for label in (*LABELS, ""):
        same = [f for f in files if label_of(f.relative) == label]
        chosen += same[:MODEL_IMAGES_PER_CLASS]
    return chosen


def fallback_champion(lakehouse: Path) -> str:
    """Register a plain logistic regression as champion when ``xray retrain`` cannot (e.g. unlabelled
    images). Only throughput is measured, not model quality. Returns a description."""
    import numpy as np

    features = {r["image_id"]: r for r in table_rows(lakehouse, "silver_image_features",
                                                     ["image_id", "features", "feature_version"])}
    labels = {r["image_id"]: r["label"] for r in table_rows(lakehouse, "silver_xray_metadata",
                                                          ["image_id", "label"])}
    if not features:
        raise RuntimeError("no silver features in the model lakehouse; cannot register a champion")
    ids = sorted(features)
    X = np.asarray([features[i]["features"] for i in ids], dtype=np.float32)
    y = np.asarray([labels.get(i) if labels.get(i) is not None else int(i, 16) % 2 for i in ids])
    if len(set(y.tolist())) < 2:
        y = np.arange(len(ids)) % 2
    register_champion(lakehouse, X, y, features[ids[0]]["feature_version"])
    return f"bench fallback (LogisticRegression on {len(ids)} images)"


def register_champion(lakehouse: Path, X: Any, y: Any, feature_version: str) -> str:
    """Fit a logistic regression on (X, y), register it in the lakehouse's MLflow store as champion for
    ``feature_version``; returns the tracking URI (what the bench's streams are given)."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    from streaming.core.config import load_config
    from streaming.core.registry import CHAMPION_ALIAS, configure_mlflow, ensure_experiment

    config = load_config(environ={}, lakehouse=str(lakehouse))
    model = LogisticRegression(max_iter=500).fit(X, y)
    experiment = ensure_experiment(config)
    with mlflow.start_run(experiment_id=experiment, run_name="bench-fallback"):
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=config.model_name)
    client = configure_mlflow(config)
    version = str(info.registered_model_version)
    client.set_model_version_tag(config.model_name, version, "feature_version", feature_version)
    client.set_registered_model_alias(config.model_name, CHAMPION_ALIAS, version)
    return config.tracking_uri


def ensure_champion(ctx: BenchContext) -> str:
    """Train and register a champion once, in a separate lakehouse; the tracking URI to use."""
    if ctx.tracking_uri:
        return ctx.tracking_uri
    lakehouse = ctx.work / "model"
    say(f"    training a champion model in {lakehouse} (not timed)")
    clock = time.perf_counter()
    stage(model_files(ctx.files), lakehouse / "landing")
    logs = ctx.work / "logs"
    run_xray(["stream", "--once", "--layer", "bronze", "--layer", "silver"], lakehouse, MEASURED_MASTER,
             logs / "model-stream.log").check("xray stream (model lakehouse)")
    retrained = run_xray(["retrain"], lakehouse, MEASURED_MASTER, logs / "model-retrain.log")
    source = "xray retrain"
    if retrained.returncode != 0:
        source = fallback_champion(lakehouse)
    ctx.results["champion"] = {"source": source, "setup_seconds": round(time.perf_counter() - clock, 1),
                               "images": len(model_files(ctx.files))}
    ctx.tracking_uri = f"sqlite:///{lakehouse / 'mlflow' / 'mlflow.db'}"
    return ctx.tracking_uri


def register_cnn_champion(lakehouse: Path, feature_version: str, seed: int = 0) -> str:
    """Register a cnn-family network with freshly initialised weights as champion (what it costs to score
    does not depend on its weights), as ``xray retrain --family cnn`` registers one: a pyfunc loaded by
    `streaming.imaging.cnn`. Returns the tracking URI."""
    import mlflow

    from batch.training.retrain import log_cnn_pyfunc
    from streaming.core.config import load_config
    from streaming.core.registry import CHAMPION_ALIAS, configure_mlflow, ensure_experiment
    from streaming.imaging import cnn

    config = load_config(environ={}, lakehouse=str(lakehouse))
    experiment = ensure_experiment(config)
    with mlflow.start_run(experiment_id=experiment, run_name="bench-cnn"):
        info = log_cnn_pyfunc(config, cnn.CnnClassifier(cnn.init_params(seed), threshold=0.5))
    client = configure_mlflow(config)
    version = str(info.registered_model_version)
    for key, value in (("feature_version", feature_version), ("model_family", "cnn"), ("threshold", "0.5")):
        client.set_model_version_tag(config.model_name, version, key, value)
    client.set_registered_model_alias(config.model_name, CHAMPION_ALIAS, version)
    return config.tracking_uri
