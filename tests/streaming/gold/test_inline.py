"""Gold in the executors' pass (streaming/gold/inline.py): executors score each new image with the champion,
the driver commits; the scores are the registered pyfunc's, image by image, for both model families."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from support import table_rows

from streaming.core.registry import ModelRef
from streaming.imaging import cnn

pytestmark = pytest.mark.engine_dependent


def _silver_then_champion(spark, config, register) -> None:
    """Images streamed while no model is champion (silver only), then a champion registered by ``register``
    (lakehouse root, silver features, labels)."""
    from imagefiles import stage_labelled_dataset

    from streaming.pipeline.service import run_stream

    stage_labelled_dataset(config.landing_dir, per_class=4, split="train", seed=11)
    run_stream(spark, config, once=True)
    assert table_rows(config, "gold_pneumonia_predictions") == []
    labels = {r["image_id"]: r["label"] for r in table_rows(config, "silver_xray_metadata", ["image_id", "label"])}
    features = table_rows(config, "silver_image_features", ["image_id", "features"])
    register(config.root, np.asarray([r["features"] for r in features], dtype=np.float32),
             np.asarray([labels[r["image_id"]] for r in features]))


def _stream_new_images(spark, config, monkeypatch) -> tuple[set[str], list[str]]:
    """New images streamed with a champion: (the ids silver held before, the ids the driver's process
    scored). Executors run in Spark's Python workers, which the spy does not reach."""
    from imagefiles import stage_labelled_dataset

    from streaming.gold import scoring
    from streaming.pipeline.service import run_stream

    waiting = {r["image_id"] for r in table_rows(config, "silver_image_features", ["image_id"])}
    on_driver: list[str] = []
    original = scoring.model_scores

    def spy(rows, model):
        on_driver.extend(rows.column("image_id").to_pylist())
        return original(rows, model)

    monkeypatch.setattr(scoring, "model_scores", spy)
    # The model loaded already, as in a stream that has run a batch: the first batch after a start does not
    # wait for the stream's warm-up to load it (`inline.batch_champion`), it is scored on the driver.
    scoring.warm_up(config).join()
    stage_labelled_dataset(config.landing_dir, per_class=3, split="val", seed=12)
    run_stream(spark, config, once=True)
    return waiting, on_driver


def _gold_and_silver(config) -> tuple[dict[str, dict], list[dict]]:
    gold = {}
    for row in table_rows(config, "gold_pneumonia_predictions"):
        assert row["image_id"] not in gold, "an image scored twice"
        gold[row["image_id"]] = row
    return gold, table_rows(config, "silver_image_features", ["image_id", "features", "frame"])


def test_executors_score_as_the_sklearn_pyfunc_predicts(spark, config, monkeypatch):
    import mlflow.pyfunc

    from batch.bench.champion import register_champion
    from streaming.core.registry import configure_mlflow
    from streaming.imaging.features import FEATURE_VERSION

    _silver_then_champion(spark, config, lambda root, X, y: register_champion(root, X, y, FEATURE_VERSION))
    waiting, on_driver = _stream_new_images(spark, config, monkeypatch)
    gold, silver = _gold_and_silver(config)
    assert set(gold) == {r["image_id"] for r in silver} and len(silver) == 14
    # The stream's catch-up scored the images that waited for a champion on the driver; the batch's new
    # images were scored by the executors.
    assert sorted(on_driver) == sorted(waiting) and len(waiting) == 8
    configure_mlflow(config)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{config.model_name}@champion")
    X = np.asarray([r["features"] for r in silver], dtype=np.float32)
    labels, probabilities = pyfunc.predict(X), pyfunc.get_raw_model().predict_proba(X)[:, 1]
    for row, label, probability in zip(silver, labels, probabilities, strict=True):
        predicted = gold[row["image_id"]]
        assert predicted["predicted_label"] == ("NORMAL", "PNEUMONIA")[int(label)]
        # float32 features: a batch of another size may sum in another order (BLAS), ~1e-8 apart
        assert predicted["probability_pneumonia"] == pytest.approx(float(probability), abs=1e-6)
        assert predicted["model_family"] == "sklearn"


@pytest.mark.skipif(not cnn.available(), reason=cnn.missing_reason() or "")
def test_executors_score_as_the_cnn_pyfunc_predicts(spark, config, monkeypatch):
    import mlflow.pyfunc

    from batch.bench.champion import register_cnn_champion
    from streaming.core.registry import configure_mlflow
    from streaming.imaging.features import FEATURE_VERSION, frames_array

    _silver_then_champion(spark, config, lambda root, X, y: register_cnn_champion(root, FEATURE_VERSION, seed=2))
    waiting, on_driver = _stream_new_images(spark, config, monkeypatch)
    gold, silver = _gold_and_silver(config)
    assert set(gold) == {r["image_id"] for r in silver} and len(silver) == 14
    assert sorted(on_driver) == sorted(waiting) and len(waiting) == 8
    configure_mlflow(config)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{config.model_name}@champion")
    frames = frames_array([r["frame"] for r in silver])
    probabilities, labels = pyfunc.predict(frames, params={"output": "probability"}), pyfunc.predict(frames)
    for row, label, probability in zip(silver, labels, probabilities, strict=True):
        predicted = gold[row["image_id"]]
        assert predicted["probability_pneumonia"] == pytest.approx(float(probability), abs=1e-6)
        assert predicted["predicted_label"] == ("NORMAL", "PNEUMONIA")[int(label)]
        assert predicted["model_family"] == "cnn"


def test_the_executors_scores_and_the_drivers_give_the_same_rows(spark):  # spark: the gold schema
    """`ExecutorScorer.score` + `scoring.prediction_table` (the fused path) against `scoring.score_batch`
    (the driver's, for a separate gold query): same predictions; a row without features is not scored."""
    from sklearn.linear_model import LogisticRegression

    from streaming.gold import scoring
    from streaming.gold.inline import ExecutorScorer
    from streaming.lakehouse.catalog import GOLD_PREDICTIONS
    from streaming.lakehouse.deltars import arrow_schema_of_spark

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    features = pa.array([*X.tolist(), None], pa.list_(pa.float32()))
    batch = pa.RecordBatch.from_pydict({"content_sha256": [f"sha{i}" for i in range(41)], "features": features,
                                        "frame": pa.nulls(41, pa.binary()),
                                        "label_name": ["NORMAL", "PNEUMONIA", None, *["NORMAL"] * 38]})
    ref, now = ModelRef("m", "3"), dt.datetime.now(dt.timezone.utc)
    scored = ExecutorScorer(ref, "sklearn", model).score(batch)
    assert scored.column("probability_pneumonia").null_count == 1 and not scored.column("prediction_id")[40].is_valid
    rows = pa.Table.from_batches([scored]).slice(0, 40)
    inline = scoring.prediction_table(rows["prediction_id"], rows["content_sha256"], rows["probability_pneumonia"],
                                      rows["predicted_label"], rows["label_name"], ref, "sklearn", "v", now,
                                      arrow_schema_of_spark(GOLD_PREDICTIONS.schema))
    driver = scoring.score_batch(rows.rename_columns(["image_id" if n == "content_sha256" else n
                                                      for n in rows.column_names]), model, ref, "v", now)
    assert inline.to_pylist() == driver.to_pylist()
    first = inline.to_pylist()[0]
    assert first["prediction_id"] == scoring.prediction_id("sha0", ref)
    assert first["is_correct"] == (first["predicted_label"] == "NORMAL")
    assert inline.to_pylist()[2]["is_correct"] is None  # no known label


def test_an_executor_that_cannot_score_leaves_the_rows_to_the_driver(caplog):
    """A model that fails on a worker (e.g. its library missing there): the rows come back unscored, said in
    the executor's log, and the driver scores them (`write_scored`) rather than failing the batch."""
    from streaming.gold.inline import ExecutorScorer

    class Broken:
        def predict_proba(self, matrix):
            raise ImportError("No module named 'jax'")

    batch = pa.RecordBatch.from_pydict({"content_sha256": ["a", "b"],
                                        "features": pa.array([[0.0, 1.0], [1.0, 0.0]], pa.list_(pa.float32())),
                                        "frame": pa.nulls(2, pa.binary()), "label_name": [None, None]})
    scored = ExecutorScorer(ModelRef("m", "1"), "sklearn", Broken()).score(batch)
    assert all(scored.column(name).null_count == 2
               for name in ("prediction_id", "probability_pneumonia", "predicted_label"))
    assert "could not score 2 image(s) (ImportError" in caplog.text


def test_a_batch_killed_between_silver_and_gold_and_replayed_scores_each_image_once(spark, config, monkeypatch):
    """The fused batch dies after silver's commit, before gold's; the stream's catch-up scores the images
    that now wait in silver; the replay of the batch (same id, same files) finds silver committed, checks
    gold, and writes no prediction twice. Another batch's replay without a catch-up writes them all."""
    from imagefiles import stage_labelled_dataset
    from pyspark.sql import functions as F

    from batch.bench.champion import register_champion
    from streaming.gold import inline, scoring
    from streaming.imaging.features import FEATURE_LENGTH, FEATURE_VERSION
    from streaming.lakehouse.engine import Lakehouse
    from streaming.pipeline.fused import process_bronze_batch

    rng = np.random.default_rng(1)
    register_champion(config.root, rng.normal(size=(20, FEATURE_LENGTH)), np.arange(20) % 2, FEATURE_VERSION)
    house = Lakehouse(spark, config)
    house.ensure_tables()

    def listing(paths):
        rows = [(str(p), p.stat().st_size, 1.0) for p in paths]
        return spark.createDataFrame(rows, "path string, length long, t double").select(
            "path", F.timestamp_seconds("t").alias("modificationTime"), "length")

    def killed(*args, **kwargs):
        raise RuntimeError("killed between silver and gold")

    def gold_ids() -> list[str]:
        return [r["image_id"] for r in table_rows(config, "gold_pneumonia_predictions", ["image_id"])]

    first = stage_labelled_dataset(config.landing_dir / "a", per_class=3, split="train", seed=21)
    second = stage_labelled_dataset(config.landing_dir / "b", per_class=2, split="train", seed=22)
    for batch_id, paths, catch_up in ((3, first, True), (4, second, False)):
        with monkeypatch.context() as patch:
            patch.setattr(inline, "write_scored", killed)
            with pytest.raises(RuntimeError, match="killed"):
                process_bronze_batch(house, listing(paths), batch_id, silver_inline=True, gold_inline=True)
        silver = {r["image_id"] for r in table_rows(config, "silver_xray_metadata", ["image_id"])}
        if catch_up:
            assert scoring.score_unscored(house) == len(silver) == len(paths)
        process_bronze_batch(house, listing(paths), batch_id, silver_inline=True, gold_inline=True)
        assert len(gold_ids()) == len(set(gold_ids())) == len(silver)
