"""``xray rescore``: re-score gold predictions made by older models with the current champion.

Idempotent: rows are merged by image id, so running it twice changes nothing the second time, and gold
always says which model version made each prediction.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming.core.config import XrayConfig
from streaming.core.errors import NoChampionModelError
from streaming.core.progress import progress
from streaming.core.registry import ChampionCache, ModelRef
from streaming.gold.scoring import score_features, silver_labels, with_true_labels
from streaming.imaging.cnn import input_column
from streaming.lakehouse.catalog import GOLD_PREDICTIONS, SILVER_FEATURES
from streaming.lakehouse.engine import Lakehouse

log = logging.getLogger(__name__)


CHUNK_ROWS = 20_000  # rows scored and merged at a time: the progress step (and what an interruption keeps)


@dataclass
class RescoreResult:
    model_version: str
    stale_rows: int
    updated_rows: int


def rescore(spark: SparkSession, config: XrayConfig) -> RescoreResult:
    """Replace predictions of non-champion versions by the champion's (MERGE by image id)."""
    current = ChampionCache(config).current()
    if current is None:
        raise NoChampionModelError("no model has the 'champion' alias yet; run 'xray retrain' first")
    ref, model, tags = current
    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    gold = lakehouse.read(GOLD_PREDICTIONS.name)
    stale = gold.where((F.col("model_name") != ref.name) | (F.col("model_version") != ref.version)).select(
        "image_id").distinct()
    # Only what the champion reads leaves the files: a sklearn champion never pays for the frames (16 KB a row).
    features = lakehouse.read(SILVER_FEATURES.name, columns=["image_id", "feature_version", input_column(model)])
    if tags.get("feature_version"):
        features = features.where(F.col("feature_version") == tags["feature_version"])
    features = features.drop("feature_version")
    to_score = features.join(stale, "image_id").dropDuplicates(["image_id"]).persist()
    try:
        stale_count = stale.count()
        scored = to_score.count()
        if scored:
            _merge_in_chunks(lakehouse, to_score, scored, model, ref, tags.get("feature_version", ""))
    finally:
        to_score.unpersist()
    print(f"rescored {scored} prediction(s) with {ref.name} version {ref.version}"
          + (f"; {stale_count - scored} stale row(s) have no features of the champion's version"
             if stale_count > scored else ""))
    return RescoreResult(ref.version, stale_count, scored)


def _merge_in_chunks(lakehouse: Lakehouse, to_score: DataFrame, count: int, model: object, ref: ModelRef,
                     feature_version: str, chunk_rows: int = CHUNK_ROWS) -> None:
    """Score ``to_score`` and MERGE it into gold ``chunk_rows`` at a time (chunks by a hash of the image
    id), with progress in rows; each chunk is its own MERGE, so an interrupted rescore keeps what it merged
    and the next run rescores only the rest."""
    chunks = max(1, -(-count // chunk_rows))
    key = F.pmod(F.xxhash64("image_id"), F.lit(chunks))
    sizes = {0: count} if chunks == 1 else {row[0]: row[1] for row in to_score.groupBy(key).count().collect()}
    labels = silver_labels(lakehouse)
    now = dt.datetime.now(dt.timezone.utc)
    with progress(count, "rescore", unit="row") as bar:
        for chunk in sorted(sizes):
            part = to_score if chunks == 1 else to_score.where(key == chunk)
            predictions = score_features(with_true_labels(part, labels), model, ref, feature_version, now)
            lakehouse.merge_by_key(predictions, GOLD_PREDICTIONS.name, "image_id")
            bar.update(sizes[chunk])
