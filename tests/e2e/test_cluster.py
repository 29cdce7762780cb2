"""Databricks' path, locally: the entry points and parameters that infra/jobs.tf deploys (read from the
Terraform, so the two cannot drift), submitted to a real Spark standalone cluster (master + worker on
127.0.0.1, started and stopped by scripts/standalone_cluster.sh) with the native Delta engine the jobs pin,
checked through the tables, their commits and the registry.

Offline: the cluster uses the pyspark package's own launcher and Delta Lake's jars that ./setup.sh cached;
the images are made here with Pillow.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hcltools import job_tasks, load_infra, locals_, one, resolve, variables
from PIL import Image
from support import REPO

SCRIPT = REPO / "scripts" / "standalone_cluster.sh"
PATIENTS_PER_CLASS = 5
IMAGES_PER_PATIENT = 3  # 5 patients x 3 images x 2 classes = 30 files


def _picture(seed: int, pneumonia: bool, side: int = 192) -> bytes:
    """A noisy chest-like gradient; PNEUMONIA adds bright blobs in the lower lung fields (learnable after
    the per-image z-scoring of the features, unlike a global brightness change)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    lungs = 70 + 50 * np.cos((x - 0.5) * 3.0) * np.cos((y - 0.55) * 2.5)
    picture = lungs + rng.normal(0, 12, size=(side, side))
    if pneumonia:
        for cx in (0.3 + rng.uniform(-0.05, 0.05), 0.7 + rng.uniform(-0.05, 0.05)):
            cy = 0.68 + rng.uniform(-0.05, 0.05)
            picture += 110 * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / 0.012))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8), mode="L").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def stage_kaggle_layout(landing: Path) -> list[Path]:
    """30 labelled JPEGs in the Kaggle layout (train/NORMAL/IM-..., train/PNEUMONIA/personN_bacteria_K)."""
    paths = []
    for patient in range(PATIENTS_PER_CLASS):
        for image in range(IMAGES_PER_PATIENT):
            seed = patient * 10 + image
            normal = landing / "train" / "NORMAL" / f"IM-{patient + 1:04d}-{image + 1:04d}.jpeg"
            sick = landing / "train" / "PNEUMONIA" / f"person{patient + 1}_bacteria_{seed + 1}.jpeg"
            for path, pneumonia in ((normal, False), (sick, True)):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_picture(seed + (1000 if pneumonia else 0), pneumonia))
                paths.append(path)
    return paths


# The deployed jobs in the order they run on a new workspace (the continuous stream job picks up the first
# champion: here a second run, whose gold scores the images that came before it); ingest-kaggle needs
# Kaggle (the network).
JOB_ORDER = ("stream", "retrain", "stream", "metrics", "rescore", "maintain")


def deployed_runs(lakehouse: Path) -> list[str]:
    """Each deployed task's ``xray`` parameters, as jobs.tf gives them, with the volume root and the
    Databricks MLflow URI replaced by local ones; the continuous stream job runs ``--once``."""
    docs = load_infra()
    variables_, locals_map = variables(docs), locals_(docs)
    local = {"${local.lakehouse_root}": str(lakehouse),
             "${var.mlflow_tracking_uri}": f"sqlite:///{lakehouse}/mlflow/mlflow.db"}
    tasks = {}
    for _, _, task in job_tasks(docs):
        wheel = one(task.get("python_wheel_task"))
        if wheel is not None:
            params = [local.get(str(p)) or resolve(str(p), variables_, locals_map) for p in wheel["parameters"]]
            tasks[params[0]] = params
    runs = []
    for command in JOB_ORDER:
        params = tasks[command]
        assert params[params.index("--delta-engine") + 1] == "delta-spark", params
        runs.append(" ".join([*params, "--once"] if command == "stream" else params))
    return runs


@pytest.mark.slow
def test_the_deployed_jobs_run_on_a_standalone_cluster_with_native_delta(tmp_path):
    from streaming.lakehouse.deltajars import delta_jars

    if not delta_jars().files():
        reason = f"the native Delta engine is not available: {delta_jars().how_to_add()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from deltalake import DeltaTable
    from mlflow.tracking import MlflowClient

    lakehouse = tmp_path / "lakehouse"
    files = stage_kaggle_layout(lakehouse / "landing")
    assert len(files) == 30

    env = {k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "SPARK_", "PYSPARK_"))}
    env["TMPDIR"] = str(tmp_path)  # the script's logs and worker directory stay in the test's folder
    runs = [argument for run in deployed_runs(lakehouse) for argument in ("--run", run)]
    result = subprocess.run(
        ["bash", str(SCRIPT), "--lakehouse", str(lakehouse), "--cores", "2", "--memory", "2g",
         "--python", sys.executable, *runs],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    # Every application ran on the cluster (the script checks the master's list of finished applications).
    assert "1 worker(s) registered" in result.stdout and "Delta Lake jars:" in result.stdout
    assert result.stdout.count("FINISHED") >= len(JOB_ORDER), result.stdout

    tables = lakehouse / "tables"
    for table in ("bronze_xray_images", "silver_xray_metadata", "silver_image_features",
                  "gold_pneumonia_predictions"):
        assert DeltaTable(str(tables / table)).to_pyarrow_table().num_rows == len(files), table
    quarantine = DeltaTable(str(tables / "silver_quarantine")).to_pyarrow_table()
    assert quarantine.num_rows == 0, quarantine.to_pylist()[:3]
    # Written by Delta Lake itself (the jobs' --delta-engine delta-spark), not by delta-rs.
    for table in ("bronze_xray_images", "silver_xray_metadata", "gold_model_performance"):
        engines = {entry.get("engineInfo", "") for entry in DeltaTable(str(tables / table)).history()}
        assert engines and all("Delta-Lake/" in e for e in engines), (table, engines)
    events = DeltaTable(str(tables / "pipeline_events")).to_pyarrow_table(columns=["query"]).column("query")
    assert "maintenance" in events.to_pylist()  # the maintain job recorded its pass

    client = MlflowClient(tracking_uri=f"sqlite:///{lakehouse}/mlflow/mlflow.db")
    # One version registered (counted by number: MLflow 3.18's search was seen listing one version twice).
    versions = {str(v.version) for v in client.search_model_versions("name = 'xray_pneumonia_classifier'")}
    assert len(versions) == 1, versions
    champion = client.get_model_version_by_alias("xray_pneumonia_classifier", "champion")
    assert str(champion.version) in versions

    # Nothing of the cluster is left behind: the script stopped master and worker.
    leftover = subprocess.run(["pgrep", "-f", f"{tmp_path}/xray-standalone"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
