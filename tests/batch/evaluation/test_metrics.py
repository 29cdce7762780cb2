"""``xray metrics`` on real Spark, Delta and MLflow: synthetic silver tables, a real retrain, then metrics."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from deltalake import DeltaTable
from populated import populated_lakehouse, synthetic_silver

from streaming.core.errors import NoChampionModelError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table_rows(config, name: str) -> list[dict]:
    return DeltaTable(str(config.table_path(name))).to_pyarrow_table().to_pylist()


def expected_summary(metadata: list[dict]) -> dict[tuple[str, str], tuple[int, int]]:
    cells: dict[tuple[str, str], tuple[set, set]] = {}
    for row in metadata:
        key = (row["split"] or "unknown", row["label_name"] or "unknown")
        images, patients = cells.setdefault(key, (set(), set()))
        images.add(row["image_id"])
        if row["patient_id"]:
            patients.add(row["patient_id"])
    return {key: (len(images), len(patients)) for key, (images, patients) in cells.items()}


@pytest.fixture(scope="module")
def populated(spark, tmp_path_factory):
    return populated_lakehouse(spark, tmp_path_factory)


def test_metrics_rows_per_split(populated):
    config, result = populated["config"], populated["result"]
    version = populated["trained"].version.version
    rows = table_rows(config, "gold_model_performance")
    assert result.rows_written == len(rows) == 4
    by_split = {r["split"]: r for r in rows}
    assert set(by_split) == {"train", "test", "unknown", "feedback"}
    # feedback: the images readers confirmed (tests/populated.py FEEDBACK: 8 images, 1 disputed).
    sizes = {"train": 14 * 2 * 2, "test": 5 * 2 * 2, "unknown": 3, "feedback": 7}
    for split, row in by_split.items():
        assert row["model_name"] == config.model_name and row["model_version"] == version
        assert row["sample_count"] == sizes[split]
        for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"):
            assert row[key] is None or 0.0 <= row[key] <= 1.0, (split, key, row[key])
        matrix = json.loads(row["confusion_matrix"])
        assert np.asarray(matrix).shape == (2, 2) and sum(map(sum, matrix)) == row["sample_count"]
        assert 0.0 < row["threshold"] < 1.0
        assert row["evaluated_time"] is not None
    # The class difference is strong: the held-out test split is learnt, not guessed.
    assert by_split["test"]["roc_auc"] > 0.8 and by_split["test"]["accuracy"] > 0.7

    # What the run printed (captured when the shared lakehouse was built, whichever test built it first).
    printed = populated["metrics_output"]
    assert f"wrote {len(rows)} row(s) to gold_model_performance" in printed
    assert f"report: {result.report_path}" in printed and "test (" in printed


def test_the_champions_agreement_with_the_readers(populated):
    """The feedback row: the champion's labels of the confirmed images against the readers' majority."""
    from streaming.core.registry import load_model
    from streaming.gold.feedback import agreement, decide_labels

    config, champion = populated["config"], populated["trained"].version
    (row,) = [r for r in table_rows(config, "gold_model_performance") if r["split"] == "feedback"]
    confirmed = decide_labels(populated["feedback"]).confirmed
    features = {r["image_id"]: r["features"] for r in table_rows(config, "silver_image_features")
                if r["image_id"] in confirmed}
    ids = sorted(features)
    predicted = load_model(config, champion).predict(np.asarray([features[i] for i in ids], dtype=np.float32))
    expected = agreement([("NORMAL", "PNEUMONIA")[int(p)] for p in predicted], [confirmed[i] for i in ids])
    assert row["model_version"] == champion.version and row["sample_count"] == expected["images"] == len(confirmed)
    assert row["accuracy"] == pytest.approx(expected["agreement"])


def test_dataset_summary_matches_silver(populated):
    config, metadata = populated["config"], populated["metadata"]
    rows = table_rows(config, "gold_dataset_summary")
    cells = {(r["split"], r["label_name"]): (r["images"], r["patients"]) for r in rows if r["split"] != "all"}
    assert cells == expected_summary(metadata)
    assert ("unknown", "unknown") in cells and ("unknown", "PNEUMONIA") in cells
    (total,) = [r for r in rows if r["split"] == "all"]
    assert total["label_name"] == "all"
    assert total["images"] == len(metadata)
    assert total["patients"] == len({r["patient_id"] for r in metadata if r["patient_id"]})
    assert total["quarantined"] == 3 and total["duplicates"] == 3


def test_report_files(populated):
    report = populated["result"].report_path
    assert report == populated["config"].reports_dir / "index.html"
    page = report.read_text()
    images = set(re.findall(r'<img src="([^"]+)"', page))
    assert images == {"roc_curve.png", "confusion_matrix.png", "class_balance.png", "predictions_over_time.png"}
    for name in images:
        data = (report.parent / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
    assert f"version <b>{populated['trained'].version.version}</b>" in page
    assert "not_an_image" in page and "image_too_small" in page
    assert "http://" not in page and "https://" not in page


def test_all_versions_appends_history(populated, spark):
    from batch.evaluation.metrics import run_metrics

    config = populated["config"]
    before = len(table_rows(config, "gold_model_performance"))
    result = run_metrics(spark, config, all_versions=True, write_report=False)
    assert result.report_path is None and result.skipped_versions == []
    rows = table_rows(config, "gold_model_performance")
    assert len(rows) == before + result.rows_written == before + 4
    assert len({r["evaluated_time"] for r in rows}) == 2


def test_no_champion_still_refreshes_summary(spark, lakehouse):
    from batch.evaluation.metrics import run_metrics

    metadata = synthetic_silver(lakehouse, with_features=False)
    with pytest.raises(NoChampionModelError, match="xray retrain"):
        run_metrics(spark, lakehouse.config)
    rows = table_rows(lakehouse.config, "gold_dataset_summary")
    assert {(r["split"], r["label_name"]): (r["images"], r["patients"]) for r in rows if r["split"] != "all"} \
        == expected_summary(metadata)
    assert not (lakehouse.config.reports_dir / "index.html").exists()
