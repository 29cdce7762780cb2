"""Silver: bronze rows → ``silver_xray_metadata`` + ``silver_image_features``, bad files → ``silver_quarantine``.

Decoding, quality measures and features run on executors in one Arrow pass per row; the expectations below
then split the batch. Each valid image appears once in silver whatever the number of copies dropped: a
content already in silver (or earlier in the same batch) is counted as a duplicate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from . import features
from .config import XrayConfig
from .deltars import arrow_schema_of_spark
from .events import BatchEvent, record_event
from .images import EXPECTED_FORMAT_BY_EXTENSION, hash_patient, inspect_image
from .lakehouse import Lakehouse
from .paths import parse_xray_path
from .quality import Expectation, apply_expectations
from .tables import BRONZE_IMAGES, SILVER_FEATURES, SILVER_METADATA, SILVER_QUARANTINE

QUERY_NAME = "silver"
LABEL_CODES = {"NORMAL": 0, "PNEUMONIA": 1}

INSPECTED_SCHEMA = StructType(
    [
        StructField("path", StringType()),
        StructField("file_name", StringType()),
        StructField("size_bytes", LongType()),
        StructField("content_status", StringType()),
        StructField("content_sha256", StringType()),
        StructField("label_name", StringType()),
        StructField("split", StringType()),
        StructField("source_batch_id", LongType()),
        StructField("expected_format", StringType()),
        StructField("detected_format", StringType()),
        StructField("content_kind", StringType()),
        StructField("width", IntegerType()),
        StructField("height", IntegerType()),
        StructField("mode", StringType()),
        StructField("pixel_count", LongType()),
        StructField("decode_error", StringType()),
        StructField("mean_intensity", DoubleType()),
        StructField("std_intensity", DoubleType()),
        StructField("dynamic_range", DoubleType()),
        StructField("features", ArrayType(FloatType())),
        StructField("patient_id", StringType()),
        StructField("pneumonia_type", StringType()),
    ]
)


def silver_expectations(config: XrayConfig) -> tuple[Expectation, ...]:
    """The rules of the silver tables, in the order a failing file is blamed."""
    return (
        Expectation("file_still_exists", "content_status <> 'missing'", "drop",
                    "'file was deleted before it was read'"),
        Expectation("file_size_limit", "content_status <> 'too_large'", "quarantine",
                    f"concat('file of ', size_bytes, ' bytes exceeds max_file_bytes ({config.max_file_bytes})')"),
        Expectation("file_readable", "content_status = 'ok' OR content_status = 'too_large'", "quarantine",
                    "concat('file could not be read (', content_status, ')')"),
        Expectation("not_empty", "size_bytes > 0", "quarantine", "'zero-byte file'"),
        Expectation("is_image", "detected_format IS NOT NULL OR content_status <> 'ok'", "quarantine",
                    "concat('not an image: the content is ', content_kind)"),
        Expectation("format_matches_name", "detected_format = expected_format", "quarantine",
                    "concat(detected_format, ' content disguised as ', "
                    "coalesce(expected_format, 'an image'), ' (', file_name, ')')"),
        Expectation("decodes", "decode_error IS NULL", "quarantine", "decode_error"),
        Expectation("pixel_limit", f"pixel_count <= {config.max_image_pixels}", "quarantine",
                    f"concat('decompression bomb guard: ', pixel_count, ' pixels exceed max_image_pixels "
                    f"({config.max_image_pixels})')"),
        Expectation("min_dimensions", f"least(width, height) >= {config.min_image_side}", "quarantine",
                    f"concat('too small to be a chest X-ray: ', width, 'x', height, ' px (minimum "
                    f"{config.min_image_side} px a side)')"),
        Expectation("not_blank", f"std_intensity >= {config.min_pixel_std}", "quarantine",
                    "concat('blank or constant image (gray level std ', round(std_intensity, 2), ')')"),
        Expectation("label_known", "label_name IS NOT NULL", "warn", "'no NORMAL/PNEUMONIA folder in the path'"),
        Expectation("patient_known", "patient_id IS NOT NULL", "warn", "'no patient identifier in the file name'"),
    )


def inspect_bronze_rows(bronze: DataFrame, config: XrayConfig) -> DataFrame:
    """Bronze rows → one inspected row each (no bytes): decode, measures, features, parsed path, hashed patient.

    Runs on executors; never raises for a bad file.
    """
    salt = config.patient_salt()
    max_pixels = config.max_image_pixels
    arrow_schema = arrow_schema_of_spark(INSPECTED_SCHEMA)

    def inspect_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = []
            for record in batch.to_pylist():
                content = record["content"]
                info = parse_xray_path(record["path"] or "")
                name = record["file_name"] or ""
                extension = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
                inspected = inspect_image(content, max_pixels) if content is not None else None
                rows.append({
                    "path": record["path"],
                    "file_name": name,
                    "size_bytes": record["size_bytes"],
                    "content_status": record["content_status"],
                    "content_sha256": record["content_sha256"],
                    "label_name": info.label,
                    "split": info.split,
                    "source_batch_id": record["batch_id"],
                    "expected_format": EXPECTED_FORMAT_BY_EXTENSION.get(extension),
                    "detected_format": inspected.detected_format if inspected else None,
                    "content_kind": inspected.content_kind if inspected else None,
                    "width": inspected.width if inspected else None,
                    "height": inspected.height if inspected else None,
                    "mode": inspected.mode if inspected else None,
                    "pixel_count": inspected.pixel_count if inspected else None,
                    "decode_error": inspected.decode_error if inspected else None,
                    "mean_intensity": inspected.mean_intensity if inspected else None,
                    "std_intensity": inspected.std_intensity if inspected else None,
                    "dynamic_range": inspected.dynamic_range if inspected else None,
                    "features": (inspected.features.tolist()
                                 if inspected is not None and inspected.features is not None else None),
                    "patient_id": hash_patient(info.patient_key, salt),
                    "pneumonia_type": info.pneumonia_type,
                })
            yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)

    return bronze.select(*BRONZE_IMAGES.column_names).mapInArrow(inspect_batches, INSPECTED_SCHEMA)


def to_metadata_rows(valid: DataFrame, silver_batch_id: int, processed_time: dt.datetime) -> DataFrame:
    """Inspected valid rows → ``silver_xray_metadata`` columns."""
    label_code = F.create_map(*[item for k, v in LABEL_CODES.items() for item in (F.lit(k), F.lit(v))])
    return valid.select(
        F.col("content_sha256").alias("image_id"),
        label_code[F.col("label_name")].cast("int").alias("label"),
        "label_name",
        "split",
        "patient_id",
        "pneumonia_type",
        "width",
        "height",
        "mode",
        F.col("detected_format").alias("image_format"),
        "mean_intensity",
        "std_intensity",
        "dynamic_range",
        F.col("path").alias("file_path"),
        F.col("size_bytes").alias("file_size"),
        F.lit(processed_time).alias("processed_time"),
        "source_batch_id",
        F.lit(silver_batch_id).cast("long").alias("silver_batch_id"),
    )


def to_feature_rows(valid: DataFrame, silver_batch_id: int, processed_time: dt.datetime) -> DataFrame:
    """Inspected valid rows → ``silver_image_features`` columns."""
    return valid.select(
        F.col("content_sha256").alias("image_id"),
        F.lit(features.FEATURE_VERSION).alias("feature_version"),
        "features",
        F.lit(processed_time).alias("processed_time"),
        F.lit(silver_batch_id).cast("long").alias("silver_batch_id"),
    )


def to_quarantine_rows(quarantined: DataFrame, silver_batch_id: int, processed_time: dt.datetime) -> DataFrame:
    """Rows that failed a quarantine rule → ``silver_quarantine`` columns (with the bronze reference)."""
    return quarantined.select(
        "rule",
        "reason",
        F.col("path").alias("file_path"),
        "file_name",
        "size_bytes",
        "content_sha256",
        F.col("label_name").alias("label"),
        "split",
        "source_batch_id",
        F.lit(silver_batch_id).cast("long").alias("silver_batch_id"),
        F.lit(processed_time).alias("quarantined_time"),
    )


def first_copies(valid: DataFrame, known_image_ids: DataFrame) -> DataFrame:
    """Valid rows whose content is new: not in ``known_image_ids`` and the first copy within the batch."""
    first_in_batch = Window.partitionBy("content_sha256").orderBy("source_batch_id", "path")
    return (
        valid.withColumn("_copy", F.row_number().over(first_in_batch))
        .where("_copy = 1")
        .drop("_copy")
        .join(known_image_ids.withColumnRenamed("image_id", "content_sha256"), "content_sha256", "left_anti")
    )


def process_silver_batch(lakehouse: Lakehouse, bronze_batch: DataFrame, batch_id: int) -> BatchEvent:
    """One silver micro-batch: inspect on executors, then on the driver's small results apply the
    expectations, dedupe, and write the three tables and the event.

    Every write carries the transaction (silver query, batch id), so a replay after a crash writes nothing
    twice; duplicates are judged against rows of earlier silver batches only, so a replay judges alike.
    """
    config, spark = lakehouse.config, lakehouse.spark
    event = BatchEvent(QUERY_NAME, batch_id)
    processed_time = dt.datetime.now(dt.timezone.utc)
    # The one distributed pass: decoding and features on executors; what comes back holds no image bytes.
    inspected_rows = inspect_bronze_rows(bronze_batch, config).toArrow()
    event.input_rows = inspected_rows.num_rows
    if event.input_rows == 0:
        return event  # e.g. the empty snapshot of a new bronze table: nothing to log
    inspected = spark.createDataFrame(inspected_rows, schema=INSPECTED_SCHEMA)
    result = apply_expectations(inspected, silver_expectations(config), SILVER_METADATA.name)
    event.expectations = result.counts
    event.quarantined_rows = result.quarantined_count
    known_ids = lakehouse.read_arrow(
        SILVER_METADATA.name, columns=["image_id"], filters=[("silver_batch_id", "<", batch_id)]
    )
    known = spark.createDataFrame(known_ids, schema="image_id string")
    new_images = first_copies(result.valid, known)
    metadata = to_metadata_rows(new_images, batch_id, processed_time).toArrow()
    event.output_rows = metadata.num_rows
    event.duplicate_rows = event.input_rows - result.dropped - event.quarantined_rows - event.output_rows
    txn = (QUERY_NAME, batch_id)
    # Metadata first: a gold batch that sees the features always finds their metadata.
    lakehouse.append_arrow(SILVER_METADATA.name, metadata, txn)
    if event.output_rows:
        features_rows = to_feature_rows(new_images, batch_id, processed_time).toArrow()
        lakehouse.append_arrow(SILVER_FEATURES.name, features_rows, txn)
    if event.quarantined_rows:
        quarantine = to_quarantine_rows(result.quarantined, batch_id, processed_time).toArrow()
        lakehouse.append_arrow(SILVER_QUARANTINE.name, quarantine, txn)
    record_event(lakehouse, event)
    return event
