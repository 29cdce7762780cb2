"""The cnn model family (streaming/imaging/cnn.py, batch/training/cnn.py, cnnfamily.py, retrain's cnn path):
the network and its training on small generated frames, then `xray retrain --family cnn` end to end: gold
and the registered pyfunc give the same probabilities and labels, across families (rescore) and in the stream,
on both Delta engines.
Skipped, saying why, when the `[cnn]` extra (JAX) is not installed."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.imaging import cnn
from streaming.imaging.features import FEATURE_SIZE, frame_bytes, frames_array

needs_jax = pytest.mark.skipif(not cnn.available(), reason=cnn.missing_reason() or "")


def _frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Noisy uint8 frames; PNEUMONIA (every second one) has a bright blob in the left lung field."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    frames = rng.normal(100, 20, (n, FEATURE_SIZE, FEATURE_SIZE))
    frames[y == 1, 40:80, 20:60] += 80
    groups = [f"patient{i // 2}-{i % 2}" for i in range(n)]  # two images a patient, one class each
    return np.clip(frames, 0, 255).astype(np.uint8), y, groups


@needs_jax
def test_frames_round_trip_and_refuse_wrong_sizes():
    gray = np.linspace(0, 1, FEATURE_SIZE * FEATURE_SIZE, dtype=np.float32).reshape(FEATURE_SIZE, FEATURE_SIZE)
    frame = frame_bytes(gray)
    assert len(frame) == FEATURE_SIZE**2
    back = frames_array([frame, frame])
    assert back.shape == (2, FEATURE_SIZE, FEATURE_SIZE) and back.dtype == np.uint8
    assert np.abs(back[0] / 255.0 - gray).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="1 frame"):
        frames_array([frame, b"short"])
    with pytest.raises(ValueError, match="expected a 128x128"):
        frame_bytes(np.zeros((64, 64)))
    with pytest.raises(ValueError, match="expected frames"):
        cnn.prepare(np.zeros((2, 64, 64)))


@needs_jax
def test_the_network_reads_levels_in_any_scale_and_batches_do_not_change_a_score():
    frames, _, _ = _frames(9)
    params = cnn.init_params(3)
    scores = cnn.probabilities(params, frames)
    assert scores.shape == (9,) and np.all((scores > 0) & (scores < 1))
    # z-scored per image: 8-bit levels and [0, 1] floats are the same input; batch size changes nothing.
    np.testing.assert_allclose(cnn.probabilities(params, frames / 255.0), scores, atol=1e-5)
    np.testing.assert_allclose(cnn.probabilities(params, frames, batch=4), scores, atol=1e-5)
    np.testing.assert_allclose(cnn.probabilities(params, frames[4:5]), scores[4:5], atol=1e-5)
    assert cnn.probabilities(params, frames[:0]).shape == (0,)


@needs_jax
def test_training_learns_is_seeded_and_saves_what_it_loads(tmp_path):
    from sklearn.metrics import roc_auc_score

    from batch.training.cnn import fit_cnn

    frames, y, groups = _frames(48)
    rows = np.arange(48)
    fit = fit_cnn(frames, y, groups, rows, seed=1, max_epochs=6)
    again = fit_cnn(frames, y, groups, rows, seed=1, max_epochs=6)
    assert fit.best_epoch == again.best_epoch and fit.model.threshold == again.model.threshold
    probabilities = fit.model.predict_proba(frames)[:, 1]
    np.testing.assert_allclose(again.model.predict_proba(frames)[:, 1], probabilities, atol=1e-5)
    assert roc_auc_score(y, probabilities) > 0.95  # six steps of Adam learned to rank by the blob
    assert len(fit.history) == fit.epochs >= fit.best_epoch >= 1
    fit.model.save(str(tmp_path))
    loaded = cnn._load_pyfunc(str(tmp_path))
    assert loaded.threshold == fit.model.threshold
    np.testing.assert_array_equal(loaded.predict_proba(frames)[:, 1], probabilities)
    assert loaded.predict({"frames": frames}).tolist() == (probabilities >= loaded.threshold).astype(int).tolist()
    assert fit_cnn(frames, y, groups, rows, seed=1, max_epochs=6, max_seconds=0.0).stopped == "time budget"


@needs_jax
def test_parameters_of_another_network_are_refused(tmp_path):
    cnn.save_params({"conv0_w": np.zeros(3, np.float32)}, str(tmp_path / "p.npz"))
    with pytest.raises(ValueError, match="do not match this network"):
        cnn.load_params(str(tmp_path / "p.npz"))


def _gold(config) -> dict[str, dict]:
    from deltalake import DeltaTable

    rows = DeltaTable(str(config.table_path("gold_pneumonia_predictions"))).to_pyarrow_table().to_pylist()
    return {r["image_id"]: r for r in rows}


def _silver_frames(config) -> tuple[list[str], np.ndarray]:
    from deltalake import DeltaTable

    rows = DeltaTable(str(config.table_path("silver_image_features"))).to_pyarrow_table().to_pylist()
    rows = [r for r in rows if r["frame"] is not None]
    return [r["image_id"] for r in rows], frames_array([r["frame"] for r in rows])


@needs_jax
@pytest.mark.engine_dependent  # gold, rescore and the stream on both Delta engines (tests/conftest.py)
def test_the_cnn_family_trains_registers_and_serves_gold_as_its_pyfunc_predicts(spark, config):
    import mlflow.pyfunc
    from imagefiles import stage_labelled_dataset

    from batch.training.rescore import rescore
    from batch.training.retrain import retrain
    from streaming.core.registry import champion, configure_mlflow, version_json, version_tags
    from streaming.gold.drift import REFERENCE
    from streaming.pipeline.service import run_stream

    stage_labelled_dataset(config.landing_dir, per_class=16, seed=4)
    run_stream(spark, config, once=True)
    first = retrain(spark, config)  # sklearn: the champion gold scores with first
    assert version_tags(config, first.version)["model_family"] == "sklearn"
    run_stream(spark, config, once=True)  # gold scores the images that waited for a champion
    assert {r["model_family"] for r in _gold(config).values()} == {"sklearn"}

    cnn_config = config.with_overrides(model_family="cnn", retrain_max_minutes=5)
    result = retrain(spark, cnn_config, force_promote=True)
    metrics = result.validation_metrics
    assert result.promoted and champion(config) == result.version
    assert version_tags(config, result.version)["model_family"] == "cnn"
    assert metrics["augmented_copies"] == 2 and metrics["epochs"] >= metrics["best_epoch"] >= 1
    assert 0.0 <= metrics["perturbed_worst_specificity"] <= metrics["perturbed_mean_specificity"] <= 1.0
    assert version_json(config, result.version, REFERENCE)["images"] == 32  # drift reference of its images

    rescore(spark, config)  # across families: the sklearn predictions become the network's
    stage_labelled_dataset(config.landing_dir, per_class=3, seed=9)
    run_stream(spark, config, once=True)  # new images scored in the stream by the cnn champion
    gold = _gold(config)
    ids, frames = _silver_frames(config)
    assert len(ids) == len(gold) == 38
    assert {r["model_family"] for r in gold.values()} == {"cnn"}
    assert {r["model_version"] for r in gold.values()} == {result.version.version}

    configure_mlflow(config)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{config.model_name}@champion")
    probabilities = pyfunc.predict(frames, params={"output": "probability"})
    labels = pyfunc.predict(frames)
    for image_id, probability, label in zip(ids, probabilities, labels, strict=True):
        assert gold[image_id]["probability_pneumonia"] == pytest.approx(float(probability), abs=1e-6)
        assert gold[image_id]["predicted_label"] == ("NORMAL", "PNEUMONIA")[int(label)]

    from batch.evaluation.metrics import run_metrics

    evaluated = run_metrics(spark, config, all_versions=True, write_report=False).evaluations
    assert {e.model_version for e in evaluated} == {first.version.version, result.version.version}


@needs_jax
def test_evaluate_quality_reports_the_cnn_family_on_a_folder(tmp_path, capsys):
    import json

    from imagefiles import stage_labelled_dataset

    from batch.evaluation.evaluate_quality import main

    stage_labelled_dataset(tmp_path / "data", per_class=12, seed=2)
    assert main(["--data", str(tmp_path / "data" / "train"), "--family", "cnn", "--max-minutes", "2",
                 "--json", str(tmp_path / "out.json")]) == 0
    printed = capsys.readouterr().out
    assert "patient-grouped validation" in printed and "held-out images perturbed" in printed
    found = json.loads((tmp_path / "out.json").read_text())
    assert found["family"] == "cnn" and found["images"] == 24 and found["inference_ms_per_image"] > 0
    assert found["validation_metrics"]["epochs"] >= 1 and len(found["perturbations"]) == 10


@needs_jax
def test_bench_measures_the_scoring_cost_per_image(tmp_path):
    from types import SimpleNamespace

    from imagefiles import stage_labelled_dataset

    from batch.bench import parse_parts, report_rows
    from batch.bench.cnnscore import MIN_FRAMES, bench_cnn

    assert parse_parts("cnn") == ["cnn"]
    paths = stage_labelled_dataset(tmp_path, per_class=2)
    figures = bench_cnn(SimpleNamespace(files=[SimpleNamespace(path=p) for p in paths]), stream=False)
    assert figures["frames"] == MIN_FRAMES and figures["ms_per_image"] > 0 and figures["ms_per_image_per_core"] > 0
    assert len(figures["one_core_runs_ms_per_image"]) == len(figures["runs_ms_per_image"]) == 3
    rows = {name: (value, target) for name, value, target, _ in report_rows({"cnn": figures, "errors": {}})}
    assert rows["cnn family scoring ms/image on one core"][1] == "<= 5.0"


@needs_jax
def test_gold_scores_the_rows_that_keep_a_frame_with_the_family_recorded(spark):  # spark: the gold schema
    import datetime as dt

    import pyarrow as pa

    from streaming.core.registry import ModelRef
    from streaming.gold.scoring import scorable, score_batch

    frames, _, _ = _frames(3)
    model = cnn.CnnClassifier(cnn.init_params(0), threshold=0.5)
    rows = pa.table({"image_id": ["a", "b", "old"], "features": [[0.0], [0.0], [0.0]],
                     "frame": pa.array([frames[0].tobytes(), frames[1].tobytes(), None], pa.binary()),
                     "label_name": ["NORMAL", None, None]})
    kept = scorable(rows, model)
    assert kept.column("image_id").to_pylist() == ["a", "b"]  # a row from before frames were kept waits
    scored = score_batch(kept, model, ModelRef("m", "1"), "v", dt.datetime.now(dt.timezone.utc)).to_pylist()
    expected = model.predict_proba(frames[:2])[:, 1]
    assert [r["model_family"] for r in scored] == ["cnn", "cnn"]
    assert [r["probability_pneumonia"] for r in scored] == pytest.approx(expected.tolist(), abs=1e-9)
    assert [r["predicted_label"] for r in scored] == [("NORMAL", "PNEUMONIA")[int(p >= 0.5)] for p in expected]
    with pytest.raises(ValueError, match="1 frame"):
        score_batch(rows, model, ModelRef("m", "1"), "v", dt.datetime.now(dt.timezone.utc))


def test_without_jax_retrain_of_the_cnn_family_says_how_to_install_it(monkeypatch, config):
    import argparse

    from batch.training.cnnfamily import require_cnn
    from streaming.cli.preflight import check_retrain
    from streaming.core.errors import ConfigError

    monkeypatch.setattr(cnn, "missing_reason", lambda: "the cnn model family needs JAX: pip install x")
    with pytest.raises(ConfigError, match=r"model_family = cnn: the cnn model family needs JAX: pip install x"):
        check_retrain(argparse.Namespace(family="cnn", every=None, force_promote=False), config)
    with pytest.raises(ConfigError, match="needs JAX"):
        require_cnn()
