"""Gold: silver features → ``gold_pneumonia_predictions``, scored by the model with alias ``champion``.

The champion is looked up at every micro-batch, so a newly promoted model serves from the next batch on
without a restart. Without a champion the gold query is not started: rows wait in silver (the gold
checkpoint does not move) and ``xray status`` says why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from .config import XrayConfig
from .deltars import arrow_schema_of_spark
from .events import BatchEvent, record_event
from .lakehouse import Lakehouse
from .registry import ChampionCache, ModelRef, champion
from .tables import GOLD_PREDICTIONS, SILVER_METADATA

QUERY_NAME = "gold"
LABEL_NAMES = ("NORMAL", "PNEUMONIA")
_caches: dict[str, ChampionCache] = {}


def champion_available(config: XrayConfig) -> bool:
    """Whether a model carries the champion alias."""
    return champion(config) is not None


def _cache(config: XrayConfig) -> ChampionCache:
    key = f"{config.tracking_uri}|{config.registry_uri}|{config.model_name}"
    if key not in _caches:
        _caches[key] = ChampionCache(config)
    return _caches[key]


def prediction_id(image_id: str, ref: ModelRef) -> str:
    return hashlib.sha256(f"{image_id}|{ref.name}|{ref.version}".encode()).hexdigest()


def score_batch(rows: pa.RecordBatch | pa.Table, model: Any, ref: ModelRef, feature_version: str,
                predicted_time: dt.datetime, arrow_schema: pa.Schema | None = None) -> pa.Table:
    """Feature rows (image_id, features, label_name) → prediction rows, in Arrow (pure; no Spark).

    ``arrow_schema`` (the gold schema) must be given on executors, where Spark cannot parse table DDL.
    """
    arrow_schema = arrow_schema or arrow_schema_of_spark(GOLD_PREDICTIONS.schema)
    if rows.num_rows == 0:
        return arrow_schema.empty_table()
    threshold = float(getattr(model, "threshold", 0.5))
    image_ids = rows.column("image_id").to_pylist()
    matrix = np.asarray(rows.column("features").to_pylist(), dtype=np.float32)
    probabilities = model.predict_proba(matrix)[:, 1]
    truths = rows.column("label_name").to_pylist()
    predictions = []
    for image_id, probability, truth in zip(image_ids, probabilities, truths, strict=True):
        predicted = LABEL_NAMES[int(probability >= threshold)]
        predictions.append({
            "prediction_id": prediction_id(image_id, ref),
            "image_id": image_id,
            "predicted_label": predicted,
            "probability_pneumonia": float(probability),
            "confidence": float(probability if predicted == "PNEUMONIA" else 1.0 - probability),
            "true_label": truth,
            "is_correct": None if truth is None else predicted == truth,
            "model_name": ref.name,
            "model_version": ref.version,
            "feature_version": feature_version,
            "predicted_time": predicted_time,
            "prediction_date": predicted_time.date(),
        })
    return pa.Table.from_pylist(predictions, schema=arrow_schema)


def score_features(
    features: DataFrame, model: Any, ref: ModelRef, feature_version: str, predicted_time: dt.datetime
) -> DataFrame:
    """Feature rows (image_id, features, label_name) → prediction rows, scored on executors (large reads
    such as ``xray rescore``)."""

    arrow_schema = arrow_schema_of_spark(GOLD_PREDICTIONS.schema)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield from score_batch(batch, model, ref, feature_version, predicted_time, arrow_schema).to_batches()

    return features.select("image_id", "features", "label_name").mapInArrow(score, GOLD_PREDICTIONS.schema)


def attach_labels(rows: pa.Table, lakehouse: Lakehouse) -> pa.Table:
    """Add ``label_name`` from silver metadata for the batch's images (an Arrow join on the driver)."""
    ids = rows.column("image_id").to_pylist()
    labels = lakehouse.read_arrow(
        SILVER_METADATA.name, columns=["image_id", "label_name"], filters=[("image_id", "in", ids)]
    ) if ids else pa.table({"image_id": pa.array([], pa.string()), "label_name": pa.array([], pa.string())})
    # Arrow's join cannot carry list columns, so the labels are looked up by id instead.
    known = dict(zip(labels.column("image_id").to_pylist(), labels.column("label_name").to_pylist(), strict=True))
    return rows.append_column("label_name", pa.array([known.get(i) for i in ids], pa.string()))


def with_true_labels(features: DataFrame, labels: DataFrame) -> DataFrame:
    """Attach the known label of each image (``labels``: image_id, label_name)."""
    return features.join(labels.select("image_id", "label_name"), "image_id", "left")


def silver_labels(lakehouse: Lakehouse) -> DataFrame:
    """Image labels from silver metadata, read on the driver (two small columns) as a local DataFrame."""
    labels = lakehouse.read_arrow(SILVER_METADATA.name, columns=["image_id", "label_name"])
    return lakehouse.spark.createDataFrame(labels, schema="image_id string, label_name string")


def process_gold_batch(lakehouse: Lakehouse, batch: DataFrame, batch_id: int) -> BatchEvent:
    """One gold micro-batch: score new silver features with the current champion and write predictions."""
    event = BatchEvent(QUERY_NAME, batch_id)
    current = _cache(lakehouse.config).current()
    if current is None:
        # The alias was removed while the stream ran: fail the batch so it is retried, not lost.
        raise RuntimeError("no model has the 'champion' alias any more; gold batch will be retried")
    ref, model, tags = current
    model_features = tags.get("feature_version") or ""
    # A micro-batch of features is small (a few KB a row): it comes to the driver once and is scored there,
    # sparing the Spark jobs that dominated gold's time per batch.
    rows = batch.select("image_id", "feature_version", "features").toArrow()
    event.input_rows = rows.num_rows
    if event.input_rows == 0:
        return event
    if model_features:
        rows = rows.filter(pc.equal(rows.column("feature_version"), model_features))
    predictions = score_batch(attach_labels(rows, lakehouse), model, ref, model_features,
                              dt.datetime.now(dt.timezone.utc))
    event.output_rows = predictions.num_rows
    lakehouse.append_arrow(GOLD_PREDICTIONS.name, predictions, txn=(QUERY_NAME, batch_id))
    skipped = event.input_rows - event.output_rows
    event.message = f"model {ref.name} v{ref.version}" + (
        f"; {skipped} row(s) of other feature versions not scored (recompute silver features)" if skipped else "")
    record_event(lakehouse, event)
    return event
