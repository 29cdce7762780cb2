"""Gold in the executors' pass: the champion scores each image on the executor that inspected it, and the
driver only commits the predictions.

At the start of a fused micro-batch the driver picks the champion (`BatchChampion`: the model, or why it
cannot be loaded) and ships the loaded model to the executors once per model version (a Spark broadcast:
executors never read the MLflow store, which a cluster's workers may not see). Each task scores its inspected
rows in one vectorised call per slice (`ExecutorScorer.score`) and returns three columns with them:
``prediction_id``, ``probability_pneumonia``, ``predicted_label``. The driver keeps silver's new images (after
its dedupe) and writes gold from those columns with Arrow compute (`write_scored`): no Python per image.

Exactly once: the driver holds `scoring.GOLD_WRITE_LOCK` from silver's commit to gold's (the stream's
catch-up, `scoring.score_unscored`, cannot score the new images in between), and gold's append carries the
batch's transaction; only a replay of a batch whose silver was already committed (a catch-up may have scored
its images since) reads gold for the ids it already holds.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from streaming.core.registry import ModelRef
from streaming.imaging.cnn import family_column
from streaming.lakehouse.catalog import GOLD_PREDICTIONS
from streaming.lakehouse.deltars import arrow_schema_of_spark
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent

log = logging.getLogger(__name__)

# Light at import (the fused batch's schema names these columns); scoring and the model's libraries are
# imported when a batch scores. The columns executors add to each inspected row (null where the row was not scored).
SCORE_FIELDS = (StructField("prediction_id", StringType()), StructField("probability_pneumonia", DoubleType()),
                StructField("predicted_label", StringType()))
SCORED_COLUMN = "probability_pneumonia"

_shipped: dict[str, tuple[Any, Any, Any]] = {}  # champion cache key → (SparkContext, model, broadcast)
_shipped_lock = threading.Lock()


class ExecutorScorer:
    """The champion as executors score with it: its reference, family and the model (a broadcast, read on
    the executor; or the model itself, e.g. in a test without Spark)."""

    def __init__(self, ref: ModelRef, family: str, model: Any):
        self.ref, self.family, self._model = ref, family, model

    def model(self) -> Any:
        return self._model.value if isinstance(self._model, Broadcast) else self._model

    def score(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Inspected rows → the same rows with the score columns: every row with the input the model reads
        (features; the frame for the cnn family) scored in one call, the others null."""
        from streaming.gold import scoring

        source = family_column(self.family)
        valid = pc.is_valid(batch.column(source)).to_numpy(zero_copy_only=False)
        count = batch.num_rows
        probabilities, ids = np.zeros(count), np.full(count, None, dtype=object)
        labels = np.full(count, None, dtype=object)
        if valid.any():
            rows = batch.filter(pa.array(valid))
            try:
                scored, indexes = scoring.model_scores(rows, self.model())
            except Exception as error:  # e.g. the model's library missing on this worker: the driver scores
                log.warning("gold: the executor could not score %d image(s) (%s: %s); the driver scores them",
                            rows.num_rows, type(error).__name__, str(error)[:200])
                valid[:] = False
                return self._with_columns(batch, probabilities, ids, labels, valid)
            probabilities[valid] = scored
            labels[valid] = np.asarray(scoring.LABEL_NAMES, dtype=object)[indexes]
            ids[valid] = scoring.prediction_ids(rows.column("content_sha256").to_pylist(), self.ref).to_pylist()
        return self._with_columns(batch, probabilities, ids, labels, valid)

    @staticmethod
    def _with_columns(batch: pa.RecordBatch, probabilities: np.ndarray, ids: np.ndarray, labels: np.ndarray,
                      valid: np.ndarray) -> pa.RecordBatch:
        columns = {"prediction_id": pa.array(ids, pa.string(), mask=~valid),
                   "probability_pneumonia": pa.array(probabilities, pa.float64(), mask=~valid),
                   "predicted_label": pa.array(labels, pa.string(), mask=~valid)}
        for field in SCORE_FIELDS:
            index = batch.schema.get_field_index(field.name)
            arrow_field = pa.field(field.name, columns[field.name].type)
            batch = (batch.set_column(index, arrow_field, columns[field.name]) if index >= 0
                     else batch.append_column(arrow_field, columns[field.name]))
        return batch

    def score_dataframe(self, inspected: DataFrame) -> DataFrame:
        """The same on a DataFrame of inspected rows (the native Delta engine's pass), in its own Arrow pass."""
        schema = StructType([*(f for f in inspected.schema.fields if f.name not in {s.name for s in SCORE_FIELDS}),
                             *SCORE_FIELDS])

        def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                yield self.score(batch)

        return inspected.mapInArrow(score, schema)


@dataclass
class BatchChampion:
    """The champion a micro-batch scores with, chosen once at its start: ``current`` (ref, model, tags) or
    None; ``problem``: why the champion cannot be loaded (its images then wait, pending); ``scorer``: what
    executors score with (None when the model reads features of another version than silver computes);
    ``deferred``: not chosen yet, since the stream's warm-up was still loading the model (the first batch
    after a start does not wait for it: gold scores it on the driver after the Spark job, as a separate
    gold query would)."""

    current: tuple[ModelRef, Any, dict[str, str]] | None
    problem: str | None
    scorer: ExecutorScorer | None
    deferred: bool = False  # chosen after the Spark job, on the driver (the model was still loading)


def batch_champion(lakehouse: Lakehouse) -> BatchChampion:
    """The champion for this batch, shipped to the executors (once per model version and Spark context)."""
    from streaming.gold import scoring
    from streaming.imaging import features as feature_lib

    if scoring.still_warming_up(lakehouse.config):
        return BatchChampion(None, None, None, deferred=True)
    current, problem = scoring.champion_for_batch(lakehouse.config)
    if current is None:
        return BatchChampion(None, problem, None)
    ref, model, tags = current
    model_features = tags.get("feature_version") or ""
    if model_features and model_features != feature_lib.FEATURE_VERSION:
        return BatchChampion(current, None, None)  # nothing inspected now is scorable: said by the driver
    return BatchChampion(current, None, ExecutorScorer(ref, scoring.model_family(model), _ship(lakehouse, model)))


def _ship(lakehouse: Lakehouse, model: Any) -> Any:
    """A broadcast of the loaded model, made once per model object (a new champion version is a new object)
    and Spark context; the previous version's broadcast is released."""
    config = lakehouse.config
    key = f"{config.tracking_uri}|{config.registry_uri}|{config.model_name}"
    context = lakehouse.spark.sparkContext
    with _shipped_lock:
        known = _shipped.get(key)
        if known is not None and known[0] is context and known[1] is model:
            return known[2]
        if known is not None and known[0] is context:
            known[2].unpersist(blocking=False)
        shipped = context.broadcast(model)
        _shipped[key] = (context, model, shipped)
        return shipped


def write_scored(lakehouse: Lakehouse, new_images: pa.Table, batch_id: int, txn_app: str, chosen: BatchChampion,
                 replay: bool) -> BatchEvent | None:
    """Gold for a fused batch's new images (silver's inspected rows after dedupe, with the executors'
    score columns): the predictions appended in the batch's transaction, the images added to the drift
    window. No champion yet: None; a champion that cannot be loaded: the pending event. Rows the executors
    did not score (no scorer for the batch) are scored here (`scoring.score_new_images`). ``replay``:
    silver held the batch before this attempt, so gold is checked for predictions already written."""
    from streaming.gold import scoring

    if chosen.scorer is None or chosen.current is None or SCORED_COLUMN not in new_images.column_names:
        return scoring.score_new_images(lakehouse, new_images, batch_id, txn_app, record=False,
                                        chosen=None if chosen.deferred else (chosen.current, chosen.problem))
    ref, _model, tags = chosen.current
    event = BatchEvent(scoring.QUERY_NAME, batch_id)
    event.input_rows = new_images.num_rows
    if event.input_rows == 0:
        return event
    scored = pc.is_valid(new_images.column(SCORED_COLUMN))
    rows = new_images.filter(scored)
    feature_version, now = tags.get("feature_version") or "", dt.datetime.now(dt.timezone.utc)
    predictions = scoring.prediction_table(
        rows.column("prediction_id"), rows.column("content_sha256"), rows.column(SCORED_COLUMN),
        rows.column("predicted_label"), rows.column("label_name"), ref, chosen.scorer.family, feature_version,
        now, arrow_schema_of_spark(GOLD_PREDICTIONS.schema))
    source = family_column(chosen.scorer.family)
    missed = new_images.filter(pc.and_(pc.invert(scored), pc.is_valid(new_images.column(source))))
    if missed.num_rows:  # an executor could not score them (its log says why): never a silent gap
        log.warning("gold batch %d: %d image(s) the executors could not score are scored on the driver",
                    batch_id, missed.num_rows)
        predictions = pa.concat_tables([predictions, scoring.score_batch(
            missed.append_column("image_id", missed.column("content_sha256")), chosen.current[1], ref,
            feature_version, now)])
        rows = pa.concat_tables([rows, missed])
    with scoring.GOLD_WRITE_LOCK:
        written = scoring.unpredicted(lakehouse, predictions) if replay else predictions
        lakehouse.append_arrow(GOLD_PREDICTIONS.name, written, txn=(txn_app, batch_id))
    event.output_rows = written.num_rows
    scoring.watch_drift_window(lakehouse, event, ref, tags, rows, predictions)
    event.message = scoring.gold_message(ref, rows.num_rows - written.num_rows, 0,
                                         new_images.num_rows - rows.num_rows)
    return event.finish()
