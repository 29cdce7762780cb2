"""Silver: bronze rows → ``silver_xray_metadata`` + ``silver_image_features``, bad files → ``silver_quarantine``.

Decoding, quality measures and features run on executors in one Arrow pass per row; the expectations below
then split the batch. Each valid image appears once in silver whatever the number of copies dropped: a
content already in silver (or earlier in the same batch) is counted as a duplicate.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from streaming.lakehouse.catalog import (
    SILVER_FEATURES,
    SILVER_METADATA,
    SILVER_QUARANTINE,
)
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent, record_event
from streaming.lakehouse.forgetlist import forgotten_patients
from streaming.quality.arrow import split_flagged
from streaming.quality.spark import flag_expectations
from streaming.silver.expectations import silver_expectations
from streaming.silver.inspect import inspect_bronze_rows
from streaming.silver.transform import first_copies, to_feature_rows, to_metadata_rows, to_quarantine_rows

QUERY_NAME = "silver"


# The driver's part of a silver micro-batch works on Arrow tables: a batch's inspected rows are small (no
# image bytes), and a local Spark DataFrame would cost several Spark jobs per batch for the same work.


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
                 event: BatchEvent, reprocessing: bool = False, forgotten: frozenset[str] = frozenset(),
                 commit_version: int | None | Literal["ask"] = "ask") -> pa.Table:
    """The driver's part of a silver micro-batch: split the inspected rows (flagged by
    `flag_expectations` with `silver_expectations`), dedupe, write the three tables. Returns the new
    images (their inspected rows) for gold.

    Every write carries the transaction (``txn_app``, ``batch_id``), so a replay writes nothing twice.
    Duplicates are judged against silver as it was before this batch (the table version before this
    batch's metadata commit, when a crash left it committed), so a replay judges alike. ``reprocessing``
    (silver re-reading bronze) also skips files already quarantined. ``forgotten``: the forget list the
    rows were flagged with. ``commit_version``: the version that committed this batch's metadata
    (`Lakehouse.txn_commit_version`, None: not committed yet) when the caller asked it already.
    """
    config = lakehouse.config
    processed_time = dt.datetime.now(dt.timezone.utc)
    result = split_flagged(flagged, silver_expectations(config, forgotten), SILVER_METADATA.name)
    event.input_rows = flagged.num_rows
    event.expectations = result.counts
    quarantined = _not_yet_quarantined(lakehouse, result.quarantined) if reprocessing else result.quarantined
    event.quarantined_rows = quarantined.num_rows
    txn = (txn_app, batch_id)
    shas = pc.drop_null(pc.unique(result.valid.column("content_sha256")))
    known = pa.array([], pa.string())
    if len(shas):
        committed = (lakehouse.txn_commit_version(SILVER_METADATA.name, txn) if commit_version == "ask"
                     else commit_version)
        # A scan of one column of silver (a vectorised filter, no Python per row), as of before this batch.
        before = lakehouse.read_arrow(SILVER_METADATA.name, columns=["image_id"],
                                      filters=[("image_id", "in", shas.to_pylist())],
                                      version=None if committed is None else committed - 1)
        known = pc.cast(before.column("image_id").combine_chunks(), pa.string())
    new_images = first_copies(result.valid, known)
    event.output_rows = new_images.num_rows
    event.duplicate_rows = (event.input_rows - result.dropped - result.quarantined_count - event.output_rows)
    # Metadata first: a reader that sees an image's features always finds its metadata.
    lakehouse.append_arrow(SILVER_METADATA.name, to_metadata_rows(new_images, batch_id, processed_time), txn)
    lakehouse.append_arrow(SILVER_FEATURES.name, to_feature_rows(new_images, batch_id, processed_time), txn)
    lakehouse.append_arrow(SILVER_QUARANTINE.name, to_quarantine_rows(quarantined, batch_id, processed_time), txn)
    return new_images


def process_silver_batch(lakehouse: Lakehouse, bronze_batch: DataFrame, batch_id: int
                         ) -> tuple[BatchEvent, pa.Table | None]:
    """One micro-batch of silver re-reading bronze (``xray stream --layer silver``): inspect on executors
    (rules flagged in the same pass), then `write_silver` on the driver. Returns the event and the new
    images (None for an empty batch), which the pipeline may score in the same batch."""
    event = BatchEvent(QUERY_NAME, batch_id)
    # Bronze refuses what arrives after an erasure; this catches what bronze held before it was erased.
    forgotten = forgotten_patients(lakehouse.config)
    expectations = silver_expectations(lakehouse.config, forgotten)
    flagged = flag_expectations(inspect_bronze_rows(bronze_batch, lakehouse.config), expectations,
                                SILVER_METADATA.name).toArrow()
    if flagged.num_rows == 0:
        return event, None  # e.g. the empty snapshot of a new bronze table: nothing to log
    new_images = write_silver(lakehouse, flagged, batch_id, QUERY_NAME, event, reprocessing=True,
                              forgotten=forgotten)
    record_event(lakehouse, event)
    return event, new_images
