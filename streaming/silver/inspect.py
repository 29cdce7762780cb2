"""Silver's inspection of bronze rows, on executors: decode, measure, compute features, parse the path,
hash the patient. Never raises for a bad file: every problem is a value the expectations judge."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
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
from streaming.core.profiling import Phases
from streaming.core.pseudonym import keyed_hash, path_ref
from streaming.imaging.dicom import DicomAttributes
from streaming.imaging.images import Inspection, expected_format, hash_patient, inspect_image
from streaming.lakehouse.catalog import BRONZE_IMAGES, DICOM_COLUMNS
from streaming.lakehouse.deltars import arrow_schema_of_spark

# The types the DICOM columns use (a DDL string needs a running Spark session to parse: not at import).
_SIMPLE_TYPES = {"string": StringType(), "int": IntegerType(), "array<double>": ArrayType(DoubleType())}

# `path` and `file_name` travel from executors to the driver in memory only (first-copy order); no table
# but bronze and no event is ever written from them: silver carries `path_ref` (see streaming/core/pseudonym.py).
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
        StructField("frame", BinaryType()),
        StructField("patient_id", StringType()),
        StructField("pneumonia_type", StringType()),
        # DICOM: what the rules judge (not kept in silver), then the columns silver keeps.
        StructField("dicom_header_error", StringType()),
        StructField("has_pixel_data", BooleanType()),
        StructField("transfer_syntax_supported", BooleanType()),
        *(StructField(name, _SIMPLE_TYPES[sql_type]) for name, sql_type, _ in DICOM_COLUMNS),
    ]
)
_DICOM_FIELDS = ("modality", "body_part", "view_position", "photometric_interpretation", "bits_stored",
                 "manufacturer", "manufacturer_model", "transfer_syntax_uid", "frame_count",
                 "burned_in_annotation", "study_year", "has_pixel_data", "transfer_syntax_supported")


def dicom_values(attributes: DicomAttributes | None, salt: str) -> dict:
    """A DICOM file's inspected columns: attributes as they are, identifiers as keyed hashes only."""
    if attributes is None:
        return {"dicom_header_error": None, "pixel_spacing_mm": None, "study_ref": None, "series_ref": None,
                "instance_ref": None, **dict.fromkeys(_DICOM_FIELDS)}
    hashed = {f"{kind}_ref": keyed_hash(salt, kind, attributes.identifiers[kind]) if kind in attributes.identifiers
              else None for kind in ("study", "series", "instance")}
    return {"dicom_header_error": attributes.header_error, "pixel_spacing_mm": attributes.pixel_spacing,
            **hashed, **{name: getattr(attributes, name) for name in _DICOM_FIELDS}}


def _patient(inspected: Inspection | None, file_patient: str | None, salt: str) -> str | None:
    """The keyed hash of the DICOM PatientID, else of the patient the file name gives."""
    dicom_patient = inspected.dicom.identifiers.get("patient") if inspected and inspected.dicom else None
    return hash_patient(dicom_patient or file_patient, salt)


def inspect_record(record: dict, salt: str, max_pixels: int, phases: Phases | None = None) -> dict:
    """One bronze row (a dict with its content) → its inspected row (no bytes). Never raises for a bad file.

    ``phases``: time the image's phases (`inspect_image`) and the rest of the row (`streaming.core.profiling`).
    """
    since = time.perf_counter() if phases is not None else 0.0
    content = record["content"]
    info = parse_xray_path(record["path"] or "")
    name = record["file_name"] or ""
    expected = expected_format(name)
    if phases is not None:
        phases.add("inspect row", since)
    inspected = inspect_image(content, max_pixels, expected, phases) if content is not None else None
    since = time.perf_counter() if phases is not None else 0.0
    row = {
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
        "expected_format": expected,
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
        "frame": inspected.frame if inspected is not None else None,
        "patient_id": _patient(inspected, info.patient_key, salt),
        "pneumonia_type": info.pneumonia_type,
        **dicom_values(inspected.dicom if inspected else None, salt),
    }
    if phases is not None:
        phases.add("inspect row", since)
    return row


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
