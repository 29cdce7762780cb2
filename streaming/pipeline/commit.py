"""The driver's commits of a fused micro-batch after bronze's: silver's split, dedupe and tables, then gold's
predictions from the scores the executors returned (`streaming.gold.inline`)."""

from __future__ import annotations

import contextlib

import pyarrow as pa

from streaming.core import profiling
from streaming.gold import inline
from streaming.gold.inline import BatchChampion
from streaming.gold.scoring import GOLD_WRITE_LOCK
from streaming.lakehouse.catalog import SILVER_METADATA
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent
from streaming.lakehouse.forgetlist import Forgotten
from streaming.silver import batch as silver


def commit_silver_and_gold(lakehouse: Lakehouse, inspected: pa.Table, batch_id: int, txn_app: str,
                           forgotten: Forgotten, chosen: BatchChampion | None) -> list[BatchEvent]:
    """Silver's split, dedupe and commits, then (``chosen``: gold inline) gold's commit of the new images'
    predictions, the executors' scores. Both under gold's lock: the stream's catch-up cannot score the new
    images between the two commits, so only a replay of a batch silver already held checks gold for them."""
    silver_event = BatchEvent(silver.QUERY_NAME, batch_id)
    with GOLD_WRITE_LOCK if chosen is not None else contextlib.nullcontext():
        with profiling.timed("silver (split, dedupe, rows)"):
            committed = lakehouse.txn_commit_version(SILVER_METADATA.name, (txn_app, batch_id))
            new_images = silver.write_silver(lakehouse, inspected, batch_id, txn_app, silver_event,
                                             forgotten=forgotten.patients, commit_version=committed)
        events = [silver_event.finish()]
        if chosen is None:
            return events
        with profiling.timed("gold (predictions from the executors' scores)"):
            gold_event = inline.write_scored(lakehouse, new_images, batch_id, txn_app, chosen,
                                             replay=committed is not None)
    if gold_event is not None and gold_event.input_rows:
        events.append(gold_event)
    return events
