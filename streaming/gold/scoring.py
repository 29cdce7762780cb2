"""Gold: silver features → ``gold_pneumonia_predictions``, scored by the model with alias ``champion``.

Gold normally runs inside bronze's micro-batch (`score_new_images`); alone it is a query over silver
features (`process_gold_batch`). The champion is looked up at every micro-batch, so a newly promoted model
serves from the next batch on without a restart. Images that reach silver while no model is champion wait
there (``xray status`` says why) and `score_unscored` scores them once one is. A champion that can no longer
be loaded (its MLflow store removed or damaged while the stream runs) leaves the batch's images pending: a
gold event says so, the ``model_unavailable`` alert is raised, and the stream's catch-up scores them once the
model loads again. Gold is only ever appended with predictions it does not hold yet, under one lock, so the
paths never write a prediction twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from streaming.core.config import XrayConfig
from streaming.core.errors import first_line
from streaming.core.names import LABELS
from streaming.core.registry import ChampionCache, ModelRef, champion
from streaming.gold import drift
from streaming.imaging import features as feature_lib
from streaming.imaging.cnn import input_column, model_family, reads_frames
from streaming.lakehouse.catalog import GOLD_PREDICTIONS, SILVER_FEATURES, SILVER_METADATA
from streaming.lakehouse.deltars import arrow_schema_of_spark
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent, record_event

log = logging.getLogger(__name__)

QUERY_NAME = "gold"
LABEL_NAMES = LABELS
_caches: dict[str, ChampionCache] = {}
# Gold is written by micro-batches and by the catch-up of unscored images: never both at once.
GOLD_WRITE_LOCK = threading.RLock()


def champion_available(config: XrayConfig) -> bool:
    """Whether a model carries the champion alias."""
    return champion(config) is not None


def _key(config: XrayConfig) -> str:
    return f"{config.tracking_uri}|{config.registry_uri}|{config.model_name}"


def _cache(config: XrayConfig) -> ChampionCache:
    key = _key(config)
    if key not in _caches:
        _caches[key] = ChampionCache(config)
    return _caches[key]


_warming: dict[str, threading.Thread] = {}


def still_warming_up(config: XrayConfig) -> bool:
    """Whether `warm_up`'s background load of a first champion is still running (a batch that asked now
    would wait for MLflow's import and the model's load)."""
    thread = _warming.get(_key(config))
    return thread is not None and thread.is_alive() and _cache(config).ref is None


def warm_up(config: XrayConfig) -> threading.Thread:
    """Load the champion in the background (MLflow's import and the model load take seconds), so the
    first micro-batch that scores does not wait for it."""

    def load() -> None:
        try:
            _cache(config).current()
        except Exception as error:  # the first batch loads it again and reports properly
            log.debug("champion warm-up failed: %s", error)

    thread = threading.Thread(target=load, name="xray-champion-warm-up", daemon=True)
    _warming[_key(config)] = thread
    thread.start()
    return thread


def prediction_id(image_id: str, ref: ModelRef) -> str:
    return hashlib.sha256(f"{image_id}|{ref.name}|{ref.version}".encode()).hexdigest()


def model_input(rows: pa.RecordBatch | pa.Table, model: Any) -> np.ndarray:
    """What the model reads from silver rows: the feature vectors (sklearn) or the frames (cnn)."""
    if reads_frames(model):
        return feature_lib.frames_array(rows.column("frame").to_pylist())
    return np.asarray(rows.column("features").to_pylist(), dtype=np.float32)


def scorable(rows: pa.Table, model: Any) -> pa.Table:
    """The rows the model can score: for the cnn family, those whose silver row keeps the frame (rows
    written before silver kept frames have none)."""
    if not reads_frames(model) or rows.num_rows == 0:
        return rows
    return rows.filter(pc.is_valid(rows.column("frame")))


def model_scores(rows: pa.RecordBatch | pa.Table, model: Any) -> tuple[np.ndarray, np.ndarray]:
    """(P(PNEUMONIA), predicted label index) of each row, in one vectorised call of the model."""
    matrix = model_input(rows, model)
    probabilities = model.predict_proba(matrix)[:, 1]
    # The label is the model's own prediction (its threshold inside): what MLflow's pyfunc returns too. The
    # network's is its probability at its threshold, computed once rather than in a second forward pass.
    labels = ((probabilities >= model.threshold).astype(int) if reads_frames(model)
              else np.asarray(model.predict(matrix)).astype(int))
    return probabilities.astype(np.float64), labels


def label_names(labels: np.ndarray) -> pa.Array:
    """Predicted label indexes → their names."""
    return pa.array(np.asarray(LABEL_NAMES, dtype=object)[labels], pa.string())


def prediction_ids(image_ids: list[str], ref: ModelRef) -> pa.Array:
    return pa.array([prediction_id(i, ref) for i in image_ids], pa.string())


def prediction_table(ids: pa.Array | pa.ChunkedArray, image_ids: pa.Array | pa.ChunkedArray,
                     probabilities: pa.Array | pa.ChunkedArray, predicted: pa.Array | pa.ChunkedArray,
                     truths: pa.Array | pa.ChunkedArray, ref: ModelRef, family: str, feature_version: str,
                     predicted_time: dt.datetime, arrow_schema: pa.Schema) -> pa.Table:
    """Gold's rows from per-image columns (prediction id, image id, P(PNEUMONIA), predicted and true
    label), in Arrow compute: no Python per row."""
    rows = len(image_ids)

    def same(value: Any) -> pa.Array:
        return pa.repeat(pa.scalar(value), rows)

    probabilities = pc.cast(probabilities, pa.float64())
    confidence = pc.if_else(pc.equal(predicted, "PNEUMONIA"), probabilities, pc.subtract(1.0, probabilities))
    columns = {
        "prediction_id": ids, "image_id": image_ids, "predicted_label": predicted,
        "probability_pneumonia": probabilities, "confidence": confidence, "true_label": truths,
        "is_correct": pc.equal(predicted, truths),  # null where the truth is unknown
        "model_name": same(ref.name), "model_version": same(ref.version), "feature_version": same(feature_version),
        "predicted_time": same(predicted_time), "prediction_date": same(predicted_time.date()),
        "model_family": same(family),
    }
    return pa.table([pc.cast(columns[f.name], f.type) for f in arrow_schema], schema=arrow_schema)


def score_batch(rows: pa.RecordBatch | pa.Table, model: Any, ref: ModelRef, feature_version: str,
                predicted_time: dt.datetime, arrow_schema: pa.Schema | None = None) -> pa.Table:
    """Silver rows (image_id, features or frame, label_name) → prediction rows, in Arrow (pure; no Spark).

    ``arrow_schema`` (the gold schema) must be given on executors, where Spark cannot parse table DDL.
    """
    arrow_schema = arrow_schema or arrow_schema_of_spark(GOLD_PREDICTIONS.schema)
    if rows.num_rows == 0:
        return arrow_schema.empty_table()
    probabilities, labels = model_scores(rows, model)
    image_ids = rows.column("image_id")
    return prediction_table(prediction_ids(image_ids.to_pylist(), ref), image_ids, pa.array(probabilities),
                            label_names(labels), rows.column("label_name"), ref, model_family(model),
                            feature_version, predicted_time, arrow_schema)


def score_features(
    features: DataFrame, model: Any, ref: ModelRef, feature_version: str, predicted_time: dt.datetime
) -> DataFrame:
    """Silver rows (image_id, the model's input column, label_name) → prediction rows, scored on executors
    (large reads such as ``xray rescore``); the cnn family scores the rows that keep a frame. Only the
    column the model reads is selected (`cnn.input_column`): a sklearn model never reads the frames."""

    arrow_schema = arrow_schema_of_spark(GOLD_PREDICTIONS.schema)
    if reads_frames(model):
        from pyspark.sql import functions as F

        features = features.where(F.col("frame").isNotNull())

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield from score_batch(batch, model, ref, feature_version, predicted_time, arrow_schema).to_batches()

    return features.select("image_id", input_column(model), "label_name").mapInArrow(score, GOLD_PREDICTIONS.schema)


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


def unpredicted(lakehouse: Lakehouse, predictions: pa.Table) -> pa.Table:
    """Predictions whose id is not in gold yet (a catch-up or an earlier run may have written some)."""
    if predictions.num_rows == 0:
        return predictions
    ids = pc.unique(predictions.column("image_id"))
    existing = lakehouse.read_arrow(GOLD_PREDICTIONS.name, columns=["prediction_id"],
                                    filters=[("image_id", "in", ids.to_pylist())])
    if existing.num_rows == 0:
        return predictions
    seen = pc.cast(existing.column("prediction_id").combine_chunks(), pa.string())  # a MERGE: string_view
    return predictions.filter(pc.invert(pc.is_in(predictions.column("prediction_id"), value_set=seen)))


def write_predictions(lakehouse: Lakehouse, rows: pa.Table, batch_id: int, txn_app: str | None,
                      current: tuple[ModelRef, Any, dict[str, str]] | None = None, record: bool = True,
                      watch_drift: bool = False) -> BatchEvent:
    """Score feature rows (image_id, feature_version, features, label_name) with the champion and append
    the predictions gold does not hold yet, in transaction (``txn_app``, ``batch_id``; None: no
    transaction, the check for existing predictions alone keeps it idempotent); log the event (unless
    ``record``: the caller then writes it with its own). ``watch_drift``: the scored rows (with silver's
    measures) join the drift window and the event carries its comparison (`streaming.gold.drift`).

    Raises when the champion alias disappeared, so the batch is retried rather than lost.
    """
    event = BatchEvent(QUERY_NAME, batch_id)
    event.input_rows = rows.num_rows
    if event.input_rows == 0:
        return event
    current = current or _cache(lakehouse.config).current()
    if current is None:
        raise RuntimeError("no model has the 'champion' alias any more; gold batch will be retried")
    ref, model, tags = current
    model_features = tags.get("feature_version") or ""
    if model_features:
        rows = rows.filter(pc.equal(rows.column("feature_version"), model_features))
    of_version = rows.num_rows
    rows = scorable(rows, model)
    with GOLD_WRITE_LOCK:  # the check for existing predictions and the append are one step
        scored = score_batch(rows, model, ref, model_features, dt.datetime.now(dt.timezone.utc))
        predictions = unpredicted(lakehouse, scored)
        event.output_rows = predictions.num_rows
        lakehouse.append_arrow(GOLD_PREDICTIONS.name, predictions, txn=(txn_app, batch_id) if txn_app else None)
    if watch_drift:
        watch_drift_window(lakehouse, event, ref, tags, rows, scored)
    event.message = gold_message(ref, rows.num_rows - event.output_rows, event.input_rows - of_version,
                                 of_version - rows.num_rows)
    if record:
        record_event(lakehouse, event, writer=txn_app, idempotent=txn_app is not None)
    return event.finish()


def gold_message(ref: ModelRef, skipped: int, other_versions: int, without_frame: int) -> str:
    """A gold event's message: the model, and the images it did not write a prediction for, and why."""
    return f"model {ref.name} v{ref.version}" + (
        f"; {skipped} image(s) already scored by this model" if skipped else "") + (
        f"; {other_versions} row(s) of other feature versions not scored (recompute silver features)"
        if other_versions else "") + (
        f"; {without_frame} image(s) stored before silver kept frames not scored by the cnn family "
        "(README: Model families)" if without_frame else "")


def watch_drift_window(lakehouse: Lakehouse, event: BatchEvent, ref: ModelRef, tags: dict[str, str], rows: pa.Table,
                 scored: pa.Table) -> None:
    """Add the scored images to the drift window; the event carries what it says (never fails a batch)."""
    try:
        result = drift.observe(lakehouse.config, ref, tags, rows, scored)
    except Exception as error:  # drift is a measure: scoring goes on without it
        log.warning("drift: not measured for gold batch %d (%s)", event.batch_id,
                    first_line(error))
        return
    if result is not None:
        event.predicted_prevalence, event.drift_psi = result.predicted_prevalence, result.drift_psi
        event.drift = result.as_dict() if result.psi or result.prevalence_psi is not None else None


def champion_for_batch(config: XrayConfig) -> tuple[tuple[ModelRef, Any, dict[str, str]] | None, str | None]:
    """(the champion to score with, None) or (None, why it cannot be loaded); (None, None): no model has
    been champion yet. A champion this process served that is gone from the registry (the MLflow store
    removed or damaged) cannot be loaded: not the same as a lakehouse still waiting for its first model."""
    cache = _cache(config)
    try:
        current = cache.current()
    except Exception as error:  # the store's own error (a damaged database, a lost artifact)
        return None, f"the champion model could not be loaded ({type(error).__name__}: {first_line(error)[:200]})"
    if current is None and cache.ref is not None:
        return None, (f"champion model {cache.ref.name} v{cache.ref.version} is no longer readable in the MLflow "
                      "registry (its store was removed or damaged)")
    return current, None


_pending: set[str] = set()  # lakehouses (tables folder) with images left pending in this process


def pending(config: XrayConfig) -> bool:
    """Whether images were left pending (model unavailable) since the last catch-up (`score_unscored`)."""
    return str(config.tables_dir) in _pending


def pending_event(config: XrayConfig, batch_id: int, images: int, problem: str) -> BatchEvent:
    _pending.add(str(config.tables_dir))
    event = BatchEvent(QUERY_NAME, batch_id)
    event.input_rows, event.model_unavailable = images, problem
    event.message = (f"pending: {problem}; {images} image(s) wait in silver and are scored once the model can be "
                     "loaded again")
    return event.finish()


def score_new_images(lakehouse: Lakehouse, new_images: pa.Table, batch_id: int, txn_app: str,
                     record: bool = True,
                     chosen: tuple[tuple[ModelRef, Any, dict[str, str]] | None, str | None] | None = None
                     ) -> BatchEvent | None:
    """Gold inside a silver batch: score the batch's new images (inspected rows) when a champion exists;
    they join the drift window. While no model was ever champion: None (scored later by `score_unscored`).
    A champion that cannot be loaded: an event saying the images are pending (never a silent gap); the
    stream's catch-up scores them once the model loads again. ``chosen``: `champion_for_batch`'s answer
    when the caller asked it at the start of the batch."""
    current, problem = chosen or champion_for_batch(lakehouse.config)
    if problem is not None and new_images.num_rows:
        event = pending_event(lakehouse.config, batch_id, new_images.num_rows, problem)
        if record:
            record_event(lakehouse, event, writer=txn_app, idempotent=True)
        return event
    if current is None:
        return None
    rows = pa.table({
        "image_id": new_images.column("content_sha256"),
        "feature_version": pa.array([feature_lib.FEATURE_VERSION] * new_images.num_rows, pa.string()),
        "features": new_images.column("features"),
        "frame": new_images.column("frame"),
        "label_name": new_images.column("label_name"),
        **{name: new_images.column(name) for name in drift.MEASURES},
    })
    return write_predictions(lakehouse, rows, batch_id, txn_app, current, record, watch_drift=True)


def score_unscored(lakehouse: Lakehouse, chunk_rows: int = 20_000) -> int:
    """Score every silver image that has no prediction at all yet (images that reached silver while no
    champion existed). Idempotent; returns the number of predictions written."""
    if not champion_available(lakehouse.config):
        return 0
    key = str(lakehouse.config.tables_dir)
    was_pending = key in _pending
    _pending.discard(key)  # images left pending while this pass runs are seen by the next one
    try:
        current = _cache(lakehouse.config).current()
        if current is None:
            return 0
        with GOLD_WRITE_LOCK:
            have = set(lakehouse.read_arrow(GOLD_PREDICTIONS.name, columns=["image_id"]).column("image_id").to_pylist())
            ids = lakehouse.read_arrow(SILVER_FEATURES.name, columns=["image_id"]).column("image_id").to_pylist()
            missing = sorted(set(ids) - have)
        written = 0
        for start in range(0, len(missing), chunk_rows):
            chunk = missing[start:start + chunk_rows]
            rows = lakehouse.read_arrow(SILVER_FEATURES.name,
                                        columns=["image_id", "feature_version", input_column(current[1])],
                                        filters=[("image_id", "in", chunk)])
            event = write_predictions(lakehouse, attach_labels(rows, lakehouse), -1, None, current)
            written += event.output_rows
    except BaseException:
        if was_pending:
            _pending.add(key)
        raise
    return written


def process_gold_batch(lakehouse: Lakehouse, batch: DataFrame, batch_id: int) -> BatchEvent:
    """One micro-batch of gold reading silver features (``xray stream --layer gold``): score them with the
    current champion and write the predictions gold does not hold yet."""
    # A micro-batch of features is small (a few KB a row): it comes to the driver once and is scored there,
    # with only the column the champion reads.
    current = _cache(lakehouse.config).current()
    rows = batch.select("image_id", "feature_version", input_column(current[1]) if current else "features").toArrow()
    return write_predictions(lakehouse, attach_labels(rows, lakehouse), batch_id, QUERY_NAME, current)
