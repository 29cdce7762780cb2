"""`xray demo` end to end on the embedded default (synthetic images, offline)."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable

from batch.demo import run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end(spark, config, monkeypatch, capsys):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config.root / "no-kaggle"))

    summary = run_demo(spark, config, per_class=12)

    counts = summary["counts"]
    images = 12 * 2 * 2  # per class x classes x splits (train, test)
    assert counts["bronze_xray_images"] == images + 3
    assert counts["silver_xray_metadata"] == counts["gold_pneumonia_predictions"] == images
    assert counts["silver_quarantine"] == 3
    rules = set(DeltaTable(str(config.table_path("silver_quarantine"))).to_pyarrow_table(
        columns=["rule"]).column("rule").to_pylist())
    assert rules == {"decodes", "is_image", "not_empty"}
    assert counts["gold_model_performance"] >= 2
    assert summary["report"] and (config.reports_dir / "index.html").exists()
    output = capsys.readouterr().out
    assert "Report:" in output and "MLflow UI:" in output
