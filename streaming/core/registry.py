"""The MLflow model registry: where trained models are registered and which one serves (alias ``champion``).

Default store: SQLite under the lakehouse (``<root>/mlflow/mlflow.db``, artifacts beside it); any tracking or
registry URI by config, Databricks Unity Catalog included (``databricks-uc``).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import first_line

log = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
_lock = threading.Lock()


@dataclass(frozen=True)
class ModelRef:
    """A registered model version."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def configure_mlflow(config: XrayConfig) -> Any:
    """Point MLflow at the configured stores and return a client. Creates the local store when needed."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import mlflow
    from mlflow.tracking import MlflowClient

    if not config.mlflow_tracking_uri:
        (config.root / "mlflow").mkdir(parents=True, exist_ok=True)
    with _lock:
        mlflow.set_tracking_uri(config.tracking_uri)
        mlflow.set_registry_uri(config.registry_uri)
    return MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.registry_uri)


def ensure_experiment(config: XrayConfig) -> str:
    """The experiment id of the project's runs; its artifacts stay under the lakehouse by default."""
    import mlflow

    client = configure_mlflow(config)
    experiment = client.get_experiment_by_name(config.mlflow_experiment)
    if experiment is not None:
        return experiment.experiment_id
    location = None if config.mlflow_tracking_uri else config.mlflow_artifacts_dir.as_uri()
    experiment_id = client.create_experiment(config.mlflow_experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def local_store_exists(config: XrayConfig) -> bool:
    """Whether the default SQLite store has been created (by a first ``xray retrain``)."""
    return bool(config.mlflow_tracking_uri) or (config.root / "mlflow" / "mlflow.db").exists()


def champion(config: XrayConfig) -> ModelRef | None:
    """The version serving as champion, or None when there is none yet (or the registry is unreachable)."""
    if not local_store_exists(config):
        # Readers never create the store: only training does, so a killed stream cannot leave it half-made.
        return None
    try:
        client = configure_mlflow(config)
    except Exception as error:  # an unreachable registry must not stop the stream
        log.warning("model registry unavailable (%s); treating as no champion", first_line(error))
        return None
    try:
        version = client.get_model_version_by_alias(config.model_name, CHAMPION_ALIAS)
    except Exception:  # MLflow raises for an unknown model or alias alike
        return None
    return ModelRef(config.model_name, str(version.version))


def set_champion(config: XrayConfig, ref: ModelRef) -> None:
    """Move the ``champion`` alias to a version."""
    configure_mlflow(config).set_registered_model_alias(ref.name, CHAMPION_ALIAS, ref.version)


def load_model(config: XrayConfig, ref: ModelRef) -> Any:
    """Load a registered model of either family: a scikit-learn model (its flavor), or the object a pyfunc
    of the cnn family loads (`streaming.imaging.cnn.CnnClassifier`); both have ``predict_proba`` and
    ``predict``, and the cnn one a ``family`` attribute."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import get_model_info

    configure_mlflow(config)
    if "sklearn" in get_model_info(ref.uri).flavors:
        return mlflow.sklearn.load_model(ref.uri)
    return mlflow.pyfunc.load_model(ref.uri).get_raw_model()


def model_versions(config: XrayConfig) -> list[ModelRef]:
    """Every registered version of the configured model, oldest first."""
    if not local_store_exists(config):
        return []
    client = configure_mlflow(config)
    try:
        versions = client.search_model_versions(f"name = '{config.model_name}'")
    except Exception:  # no such model yet
        return []
    # Each version once: MLflow 3.18's search was seen listing a version twice (a test run on a fresh install).
    unique = {str(v.version): ModelRef(v.name, str(v.version)) for v in versions}
    return sorted(unique.values(), key=lambda r: int(r.version))


def version_tags(config: XrayConfig, ref: ModelRef) -> dict[str, str]:
    """Tags recorded on a model version (feature version, threshold, validation metrics)."""
    return dict(configure_mlflow(config).get_model_version(ref.name, ref.version).tags)


def log_version_json(config: XrayConfig, ref: ModelRef, name: str, payload: dict) -> None:
    """Store a JSON document with a model version: an artifact of its training run (tag ``run_id``, else
    the version's own run), named ``name``, and a version tag ``name`` pointing at it (readers ask the tag
    first: an older version without it has none). Artifacts rather than tags, whose size Unity Catalog
    limits."""
    import json
    import tempfile
    from pathlib import Path

    client = configure_mlflow(config)
    version = client.get_model_version(ref.name, ref.version)
    run_id = dict(version.tags).get("run_id") or version.run_id
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.json"
        path.write_text(json.dumps(payload, indent=1, sort_keys=True))
        client.log_artifact(run_id, str(path))
    client.set_model_version_tag(ref.name, ref.version, name, f"{name}.json")


def version_json(config: XrayConfig, ref: ModelRef, name: str, tags: dict[str, str] | None = None) -> dict | None:
    """The JSON document `log_version_json` stored with a version, or None when it has none."""
    import json
    import tempfile
    from pathlib import Path

    tags = version_tags(config, ref) if tags is None else tags
    if name not in tags:
        return None
    client = configure_mlflow(config)
    version = client.get_model_version(ref.name, ref.version)
    run_id = dict(version.tags).get("run_id") or version.run_id
    with tempfile.TemporaryDirectory() as folder:
        local = client.download_artifacts(run_id, tags[name], folder)
        return json.loads(Path(local).read_text())


class ChampionCache:
    """Keeps the loaded champion between micro-batches; reloads only when the alias moves."""

    def __init__(self, config: XrayConfig):
        self.config = config
        self.ref: ModelRef | None = None
        self.model: Any = None
        self.tags: dict[str, str] = {}
        self._lock = threading.Lock()  # a warm-up thread and the micro-batches share the cache

    def current(self) -> tuple[ModelRef, Any, dict[str, str]] | None:
        ref = champion(self.config)
        if ref is None:
            return None
        with self._lock:
            if ref != self.ref:
                model, tags = load_model(self.config, ref), version_tags(self.config, ref)
                self.model, self.tags, self.ref = model, tags, ref
                log.info("serving model %s version %s", ref.name, ref.version)
            return self.ref, self.model, self.tags
