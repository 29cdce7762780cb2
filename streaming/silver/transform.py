"""Pure Arrow transforms of a silver batch on the driver: first copies of new contents, and the rows of
each silver table (no Spark, no I/O)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    columns = [pa.repeat(pa.scalar(constants[f.name], f.type), batch.num_rows) if f.name in constants
               else batch.column(sources.get(f.name, f.name)) for f in schema]
    return pa.table(columns, names=schema.names).cast(schema)


def first_copies(valid: pa.Table, known_image_ids: pa.Array | Iterable[str]) -> pa.Table:
    """Valid rows whose content is new: not in ``known_image_ids`` and the first copy (by bronze batch,
    then path) within the batch. Arrow compute throughout (no Python per row)."""
    if valid.num_rows == 0:
        return valid
    if not isinstance(known_image_ids, pa.Array):
        known_image_ids = pa.array(sorted(known_image_ids), pa.string())
    order = pc.sort_indices(pa.table({"batch": pc.fill_null(valid.column("source_batch_id"), 0),
                                      "path": pc.fill_null(valid.column("path"), "")}),
                            sort_keys=[("batch", "ascending"), ("path", "ascending")])
    ranked = pa.table({"sha": valid.column("content_sha256").take(order),
                       "rank": pa.array(np.arange(valid.num_rows, dtype=np.int64))})
    ranked = ranked.filter(pc.invert(pc.fill_null(pc.is_in(ranked.column("sha"), value_set=known_image_ids),
                                                  False)))
    first = ranked.group_by("sha", use_threads=False).aggregate([("rank", "min")]).column("rank_min")
    return valid.take(pa.array(np.sort(order.to_numpy()[first.to_numpy()]), pa.int64()))


def to_metadata_rows(valid: pa.Table, silver_batch_id: int, processed_time: dt.datetime) -> pa.Table:
    """Inspected valid rows → ``silver_xray_metadata`` rows."""
    names, codes = zip(*LABEL_CODES.items(), strict=True)
    position = pc.index_in(valid.column("label_name"), value_set=pa.array(names, pa.string()))
    codes = pc.take(pa.array(codes, pa.int32()), position)  # an unknown or missing label: null
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
