"""Silver: bronze rows → ``silver_xray_metadata`` + ``silver_image_features``, bad files → ``silver_quarantine``.

Decoding, quality measures and features run on executors in one Arrow pass per row; the expectations below
then split the batch. Each valid image appears once in silver whatever the number of copies dropped: a
content already in silver (or earlier in the same batch) is counted as a duplicate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streaming.core.config import XrayConfig
from streaming.core.paths import parse_xray_path
from streaming.core.pseudonym import path_ref
from streaming.imaging import features
from streaming.imaging.images import EXPECTED_FORMAT_BY_EXTENSION, hash_patient, inspect_image
from streaming.lakehouse.catalog import (
    BRONZE_IMAGES,
    SILVER_FEATURES,
    SILVER_METADATA,
    SILVER_QUARANTINE,
    TABLES_BY_NAME,
)
from streaming.lakehouse.deltars import arrow_schema_of_spark
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent, record_event
from streaming.landing.scan import NEVER_OPENED
from streaming.quality.expectations import Expectation, flag_expectations, split_flagged

QUERY_NAME = "silver"
LABEL_CODES = {"NORMAL": 0, "PNEUMONIA": 1}

# `path` and `file_name` travel from executors to the driver in memory only (first-copy order); no table
# but bronze and no event is ever written from them: silver carries `path_ref` (see streaming/pseudonym.py).
INSPECTED_SCHEMA = StructType(
    [
        StructField("path", StringType()),
        StructField("file_name", StringType()),
        StructField("path_ref", StringType()),
        StructField("size_bytes", LongType()),
        StructField("content_status", StringType()),
        StructField("content_sha256", StringType()),
        StructField("label_name", StringType()),
        StructField("split", StringType()),
        StructField("source_batch_id", LongType()),
        StructField("modification_time", TimestampType()),
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


# Listing statuses of entries that are not regular files (see `streaming.landing.NEVER_OPENED`).
NOT_REGULAR = tuple(status for status in NEVER_OPENED if status != "outside_landing")


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def silver_expectations(config: XrayConfig) -> tuple[Expectation, ...]:
    """The rules of the silver tables, in the order a failing file is blamed."""
    return (
        Expectation("file_still_exists", "content_status <> 'missing'", "drop",
                    "'file was deleted before it was read'"),
        Expectation("inside_landing", "content_status <> 'outside_landing'", "quarantine",
                    "'symbolic link leading outside the landing folder: its target was not opened (allow a "
                    "folder with landing_allowed_roots)'"),
        Expectation("regular_file", f"content_status NOT IN ({_quoted(NOT_REGULAR)})", "quarantine",
                    "concat('not a regular file (', content_status, '): it was not opened')"),
        Expectation("file_size_limit", "content_status <> 'too_large'", "quarantine",
                    f"concat('file of ', size_bytes, ' bytes exceeds max_file_bytes ({config.max_file_bytes})')"),
        Expectation("file_readable", "content_status = 'ok' OR content_status = 'too_large'", "quarantine",
                    "concat('file could not be read (', content_status, ')')"),
        Expectation("not_empty", "size_bytes > 0", "quarantine", "'zero-byte file'"),
        Expectation("is_image", "detected_format IS NOT NULL OR content_status <> 'ok'", "quarantine",
                    "concat('not an image: the content is ', content_kind)"),
        Expectation("format_matches_name", "detected_format = expected_format", "quarantine",
                    # No file name in the reason: it may name the patient (the row has path_ref).
                    "concat(detected_format, ' content disguised as ', coalesce(expected_format, 'an image'))"),
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


def inspect_record(record: dict, salt: str, max_pixels: int) -> dict:
    """One bronze row (a dict with its content) → its inspected row (no bytes). Never raises for a bad file."""
    content = record["content"]
    info = parse_xray_path(record["path"] or "")
    name = record["file_name"] or ""
    extension = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    inspected = inspect_image(content, max_pixels) if content is not None else None
    return {
        "path": record["path"],
        "file_name": name,
        # Bronze's own ref when the row comes from the bronze table; the same keyed hash otherwise.
        "path_ref": record.get("path_ref") or path_ref(record["path"], salt),
        "size_bytes": record["size_bytes"],
        "content_status": record["content_status"],
        "content_sha256": record["content_sha256"],
        "label_name": info.label,
        "split": info.split,
        "source_batch_id": record["batch_id"],
        "modification_time": record.get("modification_time"),
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
        "features": inspected.features if inspected is not None else None,  # numpy: see `inspected_batch`
        "patient_id": hash_patient(info.patient_key, salt),
        "pneumonia_type": info.pneumonia_type,
    }


def inspected_batch(rows: list[dict], schema: pa.Schema) -> pa.RecordBatch:
    """Inspected rows (features as numpy arrays) → an Arrow batch; the vectors are copied in one piece
    rather than converted float by float."""
    vectors = [row.pop("features", None) for row in rows]
    batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    lengths = [0 if v is None else len(v) for v in vectors]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate([v for v in vectors if v is not None]) if any(lengths) else np.zeros(0)
    index = schema.get_field_index("features")
    list_type = schema.field(index).type
    column = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(values.astype(np.float32), list_type.value_type),
        type=list_type, mask=pa.array([v is None for v in vectors], pa.bool_()))
    return batch.set_column(index, schema.field(index), column)


def inspect_bronze_rows(bronze: DataFrame, config: XrayConfig) -> DataFrame:
    """Bronze rows → one inspected row each (no bytes): decode, measures, features, parsed path, hashed patient.

    Runs on executors; never raises for a bad file.
    """
    salt = config.patient_salt()
    max_pixels = config.max_image_pixels
    arrow_schema = arrow_schema_of_spark(INSPECTED_SCHEMA)

    def inspect_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = [inspect_record(record, salt, max_pixels) for record in batch.to_pylist()]
            yield inspected_batch(rows, arrow_schema)

    return bronze.select(*BRONZE_IMAGES.column_names).mapInArrow(inspect_batches, INSPECTED_SCHEMA)


# The driver's part of a silver micro-batch works on Arrow tables: a batch's inspected rows are small (no
# image bytes), and a local Spark DataFrame would cost several Spark jobs per batch for the same work.

def _as_table(table: str, batch: pa.Table, sources: dict[str, str], constants: dict) -> pa.Table:
    """A declared table's rows from a batch: each column is the batch's column of the same name (or the
    one ``sources`` names), or one value from ``constants`` on every row."""
    schema = arrow_schema_of_spark(TABLES_BY_NAME[table].schema)
    columns = [pa.array([constants[f.name]] * batch.num_rows, f.type) if f.name in constants
               else batch.column(sources.get(f.name, f.name)) for f in schema]
    return pa.table(columns, names=schema.names).cast(schema)


def first_copies(valid: pa.Table, known_image_ids: set[str]) -> pa.Table:
    """Valid rows whose content is new: not in ``known_image_ids`` and the first copy (by bronze batch,
    then path) within the batch."""
    keys = sorted(range(valid.num_rows), key=lambda i: (valid.column("source_batch_id")[i].as_py() or 0,
                                                          valid.column("path")[i].as_py() or ""))
    shas = valid.column("content_sha256").to_pylist()
    seen = set(known_image_ids)
    keep = []
    for index in keys:
        if shas[index] not in seen:
            seen.add(shas[index])
            keep.append(index)
    return valid.take(pa.array(sorted(keep), pa.int64()))


def to_metadata_rows(valid: pa.Table, silver_batch_id: int, processed_time: dt.datetime) -> pa.Table:
    """Inspected valid rows → ``silver_xray_metadata`` rows."""
    codes = pa.array([LABEL_CODES.get(n) if n else None for n in valid.column("label_name").to_pylist()],
                     pa.int32())
    return _as_table(
        SILVER_METADATA.name, valid.append_column("label", codes),
        {"image_id": "content_sha256", "image_format": "detected_format", "file_size": "size_bytes"},
        {"processed_time": processed_time, "silver_batch_id": silver_batch_id},
    )


def to_feature_rows(valid: pa.Table, silver_batch_id: int, processed_time: dt.datetime) -> pa.Table:
    """Inspected valid rows → ``silver_image_features`` rows."""
    return _as_table(SILVER_FEATURES.name, valid, {"image_id": "content_sha256"}, {
        "feature_version": features.FEATURE_VERSION, "processed_time": processed_time,
        "silver_batch_id": silver_batch_id})


def to_quarantine_rows(quarantined: pa.Table, silver_batch_id: int, processed_time: dt.datetime) -> pa.Table:
    """Rows that failed a quarantine rule → ``silver_quarantine`` rows (with the bronze reference)."""
    return _as_table(SILVER_QUARANTINE.name, quarantined, {"label": "label_name"},
                     {"silver_batch_id": silver_batch_id, "quarantined_time": processed_time})


def _not_yet_quarantined(lakehouse: Lakehouse, quarantined: pa.Table) -> pa.Table:
    """Quarantine candidates without a row for the same file (path_ref) and content already (re-reading
    bronze)."""
    refs = quarantined.column("path_ref").to_pylist()
    if not refs:
        return quarantined
    known = lakehouse.read_arrow(SILVER_QUARANTINE.name, columns=["path_ref", "content_sha256"],
                                 filters=[("path_ref", "in", sorted({r for r in refs if r}))])
    seen = set(zip(known.column("path_ref").to_pylist(), known.column("content_sha256").to_pylist(), strict=True))
    shas = quarantined.column("content_sha256").to_pylist()
    keep = [i for i, key in enumerate(zip(refs, shas, strict=True)) if key not in seen]
    return quarantined.take(pa.array(keep, pa.int64()))


def write_silver(lakehouse: Lakehouse, flagged: pa.Table, batch_id: int, txn_app: str,
                 event: BatchEvent, reprocessing: bool = False) -> pa.Table:
    """The driver's part of a silver micro-batch: split the inspected rows (flagged by
    `flag_expectations` with `silver_expectations`), dedupe, write the three tables. Returns the new
    images (their inspected rows) for gold.

    Every write carries the transaction (``txn_app``, ``batch_id``), so a replay writes nothing twice.
    Duplicates are judged against silver as it was before this batch (the table version before this
    batch's metadata commit, when a crash left it committed), so a replay judges alike. ``reprocessing``
    (silver re-reading bronze) also skips files already quarantined.
    """
    config = lakehouse.config
    processed_time = dt.datetime.now(dt.timezone.utc)
    result = split_flagged(flagged, silver_expectations(config), SILVER_METADATA.name)
    event.input_rows = flagged.num_rows
    event.expectations = result.counts
    quarantined = _not_yet_quarantined(lakehouse, result.quarantined) if reprocessing else result.quarantined
    event.quarantined_rows = quarantined.num_rows
    txn = (txn_app, batch_id)
    shas = sorted({s for s in result.valid.column("content_sha256").to_pylist() if s})
    known: set[str] = set()
    if shas:
        committed = lakehouse.txn_commit_version(SILVER_METADATA.name, txn)
        before = lakehouse.read_arrow(SILVER_METADATA.name, columns=["image_id"], filters=[("image_id", "in", shas)],
                                      version=None if committed is None else committed - 1)
        known = set(before.column("image_id").to_pylist())
    new_images = first_copies(result.valid, known)
    event.output_rows = new_images.num_rows
    event.duplicate_rows = (event.input_rows - result.dropped - result.quarantined_count - event.output_rows)
    # Metadata first: a reader that sees an image's features always finds its metadata.
    lakehouse.append_arrow(SILVER_METADATA.name, to_metadata_rows(new_images, batch_id, processed_time), txn)
    lakehouse.append_arrow(SILVER_FEATURES.name, to_feature_rows(new_images, batch_id, processed_time), txn)
    lakehouse.append_arrow(SILVER_QUARANTINE.name, to_quarantine_rows(quarantined, batch_id, processed_time), txn)
    return new_images


def process_silver_batch(lakehouse: Lakehouse, bronze_batch: DataFrame, batch_id: int,
                         gold_inline: bool = False) -> BatchEvent:
    """One micro-batch of silver re-reading bronze (``xray stream --layer silver``): inspect on executors
    (rules flagged in the same pass), then `write_silver` on the driver; gold too when ``gold_inline``."""
    event = BatchEvent(QUERY_NAME, batch_id)
    expectations = silver_expectations(lakehouse.config)
    flagged = flag_expectations(inspect_bronze_rows(bronze_batch, lakehouse.config), expectations,
                               SILVER_METADATA.name).toArrow()
    if flagged.num_rows == 0:
        return event  # e.g. the empty snapshot of a new bronze table: nothing to log
    new_images = write_silver(lakehouse, flagged, batch_id, QUERY_NAME, event, reprocessing=True)
    record_event(lakehouse, event)
    if gold_inline:
        from streaming.gold import scoring as gold

        gold.score_new_images(lakehouse, new_images, batch_id, QUERY_NAME)
    return event
