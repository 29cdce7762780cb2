"""Features of changed copies of the labelled images, computed on executors from bronze's bytes for one
retrain: augmented copies of every image (training side) and the perturbations of the validation images
(`batch.training.generalisation`). Silver keeps one feature vector per image; these are recomputed per
retrain because they depend on the seed and on which images validate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, FloatType, StringType, StructField, StructType

from streaming.imaging.augment import AUGMENTED_COPIES, PERTURBATIONS
from streaming.imaging.features import FEATURE_LENGTH
from streaming.lakehouse.catalog import BRONZE_IMAGES
from streaming.lakehouse.engine import Lakehouse

__all__ = ["ChangedFeatures", "changed_features"]

_VECTORS = ArrayType(ArrayType(FloatType()))
_SCHEMA = StructType([StructField("image_id", StringType()), StructField("augmented", _VECTORS),
                      StructField("perturbed", _VECTORS)])


@dataclass
class ChangedFeatures:
    """``augmented``: (images, AUGMENTED_COPIES, features), a row's own features where its bytes are gone;
    ``perturbed``: (validation images with bytes, perturbations, features) for ``perturbed_rows``."""

    augmented: np.ndarray
    perturbed: np.ndarray
    perturbed_rows: np.ndarray
    missing: int


def _compute(max_pixels: int, seed: int):  # a closure Spark ships to executors
    def compute(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from streaming.imaging.augment import augmented_features, perturbed_features
        from streaming.imaging.images import decoded_gray, expected_format

        for batch in batches:
            rows = []
            for row in batch.to_pylist():
                gray = decoded_gray(row["content"], max_pixels, expected_format(row["file_name"] or ""))
                if gray is None:
                    continue
                rows.append({"image_id": row["image_id"],
                             "augmented": augmented_features(gray, row["image_id"], seed).tolist(),
                             "perturbed": perturbed_features(gray).tolist() if row["perturb"] else None})
            yield pa.RecordBatch.from_pylist(rows, schema=_arrow_schema())
    return compute


def _arrow_schema() -> pa.Schema:
    vectors = pa.list_(pa.list_(pa.float32()))
    return pa.schema([("image_id", pa.string()), ("augmented", vectors), ("perturbed", vectors)])


def changed_features(lakehouse: Lakehouse, image_ids: list[str], X: np.ndarray, validation_rows: np.ndarray,
                     seed: int) -> ChangedFeatures:
    """Augmented copies of every image in ``image_ids`` and perturbations of the ``validation_rows``, from
    one bronze copy of each image, decoded as silver decodes it."""
    spark = lakehouse.spark
    validation = set(int(i) for i in validation_rows)
    wanted = spark.createDataFrame([(image_id, i in validation) for i, image_id in enumerate(image_ids)],
                                   StructType([StructField("image_id", StringType()),
                                               StructField("perturb", BooleanType())]))
    bronze = (lakehouse.read(BRONZE_IMAGES.name).where(F.col("content").isNotNull())
              .select(F.col("content_sha256").alias("image_id"), "content", "file_name"))
    # Filtered after reading (delta-rs drops rows when it filters string columns without statistics).
    joined = bronze.join(F.broadcast(wanted), "image_id").dropDuplicates(["image_id"])
    computed = joined.mapInArrow(_compute(lakehouse.config.max_image_pixels, seed), _SCHEMA).toArrow()
    by_id = {image_id: index for index, image_id in enumerate(computed.column("image_id").to_pylist())}
    augmented_column, perturbed_column = computed.column("augmented"), computed.column("perturbed")
    augmented = np.repeat(X[:, None, :], AUGMENTED_COPIES, axis=1).astype(np.float32)
    perturbed, perturbed_rows = [], []
    for row, image_id in enumerate(image_ids):
        index = by_id.get(image_id)
        if index is None:
            continue
        augmented[row] = np.asarray(augmented_column[index].as_py(), dtype=np.float32)
        if row in validation and perturbed_column[index].is_valid:
            perturbed.append(np.asarray(perturbed_column[index].as_py(), dtype=np.float32))
            perturbed_rows.append(row)
    shape = (0, len(PERTURBATIONS), FEATURE_LENGTH)
    return ChangedFeatures(augmented, np.stack(perturbed) if perturbed else np.zeros(shape, np.float32),
                           np.asarray(perturbed_rows, dtype=int), len(image_ids) - len(by_id))
