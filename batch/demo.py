"""``xray demo``: the whole service once, offline, on a sample — what a newcomer runs first.

Stages a sample into landing (synthetic X-ray-like images generated here, or a Kaggle download when
credentials exist and ``--source kaggle``/``auto``), streams it to bronze and silver, trains and registers a
model, scores gold, writes metrics and the report, and prints where to look.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from pyspark.sql import SparkSession

from streaming.core.config import XrayConfig
from streaming.lakehouse.catalog import ALL_TABLES
from streaming.lakehouse.engine import Lakehouse
from streaming.pipeline.service import run_stream

log = logging.getLogger(__name__)

DEFAULT_PER_CLASS = 60


def kaggle_credentials_present() -> bool:
    """Whether the kaggle client would find credentials (environment or kaggle.json)."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    return (folder / "kaggle.json").is_file()


def stage_bad_examples(landing: Path) -> list[Path]:
    """A few files a real user drops by mistake, so the demo shows quarantine at work."""
    from streaming.imaging.synthetic import make_xray_jpeg

    valid = make_xray_jpeg("NORMAL", seed=987654)
    examples = {
        "train/NORMAL/IM-9990-0001.jpeg": valid[: len(valid) // 2],  # truncated copy
        "train/NORMAL/IM-9991-0001.jpeg": b"scanner export failed\n" * 10,  # text named .jpeg
        "train/PNEUMONIA/person9992_virus_1.jpeg": b"",  # zero-byte file
    }
    written = []
    for relative, content in examples.items():
        path = landing / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(content)
        os.replace(temporary, path)
        written.append(path)
    return written


def _step(title: str) -> float:
    print(f"==> {title}", flush=True)
    return time.monotonic()


def run_demo(spark: SparkSession, config: XrayConfig, per_class: int | None = None, source: str = "auto") -> dict:
    """Run the demo end to end; returns a summary (counts, metrics, paths, seconds)."""
    from batch.evaluation.metrics import run_metrics
    from batch.training.retrain import retrain
    from streaming.imaging.synthetic import write_synthetic_dataset
    from streaming.ingest import ingest_folder, ingest_kaggle

    started = time.monotonic()
    per_class = per_class or DEFAULT_PER_CLASS
    use_kaggle = source == "kaggle" or (source == "auto" and kaggle_credentials_present())
    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    print(f"xray demo: lakehouse {config.root} (Delta engine: {lakehouse.format})")

    _step(f"staging a sample into {config.landing_dir}")
    if use_kaggle:
        ingest_kaggle(spark, config, sample_per_class=per_class, splits=("train", "test"))
    else:
        with tempfile.TemporaryDirectory(prefix="xray-demo-") as folder:
            write_synthetic_dataset(Path(folder), per_class=per_class, splits=("train", "test"), seed=0)
            ingest_folder(spark, config, folder, splits=("train", "test"))

        stage_bad_examples(config.landing_dir)

    _step("streaming landing -> bronze -> silver (xray stream --once)")
    run_stream(spark, config, layers=("bronze", "silver"), once=True)

    _step("training and registering a model (xray retrain)")
    trained = retrain(spark, config)

    _step("scoring silver features into gold (xray stream --once --layer gold)")
    run_stream(spark, config, layers=("gold",), once=True)

    _step("evaluating and writing the report (xray metrics)")
    metrics = run_metrics(spark, config)

    counts = {spec.name: lakehouse.row_count(spec.name) for spec in ALL_TABLES}
    seconds = time.monotonic() - started
    print()
    print(f"Done in {seconds:.0f} s. Tables under {config.tables_dir}:")
    for name, count in counts.items():
        print(f"  {name:<28} {count:>7} rows")
    print(f"Champion model: {trained.version.name} version {trained.version.version} "
          f"(validation accuracy {trained.validation_metrics.get('accuracy', 0):.3f})")
    report = getattr(metrics, "report_path", None)
    if report:
        print(f"Report: {report}")
    print(f"Quarantine and progress: xray status --lakehouse {config.root}")
    print(f"MLflow UI: mlflow ui --backend-store-uri {config.tracking_uri}")
    print(f"Keep streaming: xray stream --lakehouse {config.root}  (drop files into {config.landing_dir})")
    return {"seconds": seconds, "counts": counts, "model_version": trained.version.version,
            "report": str(report) if report else None}
