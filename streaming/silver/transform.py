"""Pure Arrow transforms of a silver batch on the driver: first copies of new contents, and the rows of
each silver table (no Spark, no I/O)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from streaming.core.names import LABEL_CODES
from streaming.imaging import features
from streaming.lakehouse.catalog import (
    SILVER_FEATURES,
    SILVER_METADATA,
    SILVER_QUARANTINE,
    TABLES_BY_NAME,
)
from streaming.lakehouse.deltars import arrow_schema_of_spark


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
