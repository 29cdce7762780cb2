"""The executors' side of the one-pass micro-batch (`streaming.pipeline.fused`): each task reads its slice
of the batch's landing files once, writes bronze's Parquet files itself (uncommitted), inspects the bytes for
silver and, with a champion, scores them (`streaming.gold.inline`), and hands back small rows: one inspected
row per file (no bytes) and one marker row per task naming the files it wrote, which the driver commits in
one transaction. A task that fails removes its files; a killed one leaves orphans the next attempt removes.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

from streaming.bronze.labels import outside_label_folders
from streaming.bronze.read import bronze_batch, bronze_record, listing_slices
from streaming.bronze.refuse import REFUSED, refused_records
from streaming.bronze.source import QUERY_NAME, landing_roots
from streaming.core import profiling
from streaming.core.config import XrayConfig
from streaming.core.profiling import Phases
from streaming.gold.inline import SCORE_FIELDS, ExecutorScorer
from streaming.lakehouse.catalog import BRONZE_IMAGES
from streaming.lakehouse.deltars import (
    ParquetFileWriter,
    arrow_schema_of_spark,
    remove_files,
    txn_file_prefix,
)
from streaming.lakehouse.forgetlist import Forgotten
from streaming.silver.inspect import INSPECTED_SCHEMA, inspect_record, inspected_batch

__all__ = ["EXECUTOR_PROFILES", "MODIFIED_COLUMN", "OUTSIDE_COLUMN", "RECORDED_SCHEMA", "SEQ_COLUMN", "WRITTEN_FILES_COLUMN",
           "as_landing_entries", "record_and_inspect"]


# What executors hand back from a fused batch: the inspected row of every file (no bytes), and one extra
# row per task naming the bronze Parquet files it wrote, which the driver commits in one transaction.
WRITTEN_FILES_COLUMN = "bronze_files"
MODIFIED_COLUMN = "modification_time"
SEQ_COLUMN = "landing_seq"  # the entry's number in the landing log, for clean_source
OUTSIDE_COLUMN = "outside_label_folder"  # the file's folders in landing give no label (said once per batch)
# Profiling on (`streaming.core.profiling`): each task's phase sums, by batch, until the batch is written.
EXECUTOR_PROFILES: dict[int, list[dict]] = {}
# With a champion, executors score the inspected rows in the same pass (`streaming.gold.inline`).
RECORDED_SCHEMA = StructType([*INSPECTED_SCHEMA.fields, *SCORE_FIELDS, StructField(SEQ_COLUMN, LongType()),
                              StructField(OUTSIDE_COLUMN, BooleanType()),
                              StructField(WRITTEN_FILES_COLUMN, StringType())])


def record_and_inspect(listing: DataFrame, config: XrayConfig, batch_id: int, bronze_path: str,
                       inspect: bool, forgotten: Forgotten | None = None,
                       scorer: ExecutorScorer | None = None) -> DataFrame:
    """Listing rows → bronze Parquet files written by the executors (not committed yet) and one inspected
    row per file (decode, measures, features when ``inspect``), in one pass that reads each file once.

    A file deleted between listing and reading (bronze's rule ``file_still_exists``) is not written, nor is
    a file the forget list refuses (``forgotten``: its patient, or its erased bytes): its inspected row says
    ``refused``. ``scorer``: the champion scores the inspected rows in the same pass.
    """
    recorder = _Recorder(config, batch_id, bronze_path, inspect, forgotten or Forgotten(), scorer)
    return as_landing_entries(listing).mapInArrow(recorder.record_batches, RECORDED_SCHEMA)


class _Recorder:
    """What an executor task does with its listed files (`record_and_inspect`); built on the driver, so
    every setting (profiling included) travels to the executors with it and no worker reads the config."""

    def __init__(self, config: XrayConfig, batch_id: int, bronze_path: str, inspect: bool,
                 forgotten: Forgotten, scorer: ExecutorScorer | None):
        self.batch_id, self.bronze_path, self.inspect, self.forgotten = batch_id, bronze_path, inspect, forgotten
        self.scorer = scorer if inspect else None
        self.bronze_schema, self.recorded_schema = _arrow_schemas()
        self.ingest_time = dt.datetime.now(dt.timezone.utc)
        self.max_file_bytes, self.max_pixels = config.max_file_bytes, config.max_image_pixels
        self.salt, self.roots, self.landing = config.patient_salt(), landing_roots(config), config.landing_dir
        self.profile = profiling.enabled()  # read on the driver

    def inspected_rows(self, records: list[dict], seqs: list[int], phases: Phases | None) -> list[dict]:
        # Whether each file is outside a label folder: judged here, sparing the driver a pass per image.
        outside = outside_label_folders(self.landing, [r["path"] for r in records])
        outside = set(outside)
        marks = [{SEQ_COLUMN: seq, OUTSIDE_COLUMN: i in outside} for i, seq in enumerate(seqs)]
        if self.inspect:
            return [{**inspect_record(r, self.salt, self.max_pixels, phases), **mark}
                    for r, mark in zip(records, marks, strict=True)]
        empty = dict.fromkeys(f.name for f in INSPECTED_SCHEMA.fields)
        return [{**empty, "path": r["path"], "file_name": r["file_name"], "path_ref": r["path_ref"],
                 "size_bytes": r["size_bytes"], "content_status": r["content_status"],
                 "content_sha256": r["content_sha256"], "source_batch_id": self.batch_id,
                 MODIFIED_COLUMN: r["modification_time"], **mark}
                for r, mark in zip(records, marks, strict=True)]

    def record_batch(self, batch: pa.RecordBatch, writer: ParquetFileWriter, phases: Phases | None) -> pa.RecordBatch:
        """One Arrow batch of listed files: bronze rows written (refused files not), inspected rows out."""
        mark = _marker(phases)
        since = time.perf_counter()
        listed, seqs = batch.to_pylist(), batch.column("seq").to_pylist()
        mark("arrow in/out", since)
        records = [bronze_record(r, self.max_file_bytes, self.batch_id, self.ingest_time, self.salt, self.roots,
                                 phases) for r in listed]
        since = time.perf_counter()
        refused = refused_records(records, self.forgotten, self.salt)
        kept = [r for r, no in zip(records, refused, strict=True) if r["content_status"] != "missing" and not no]
        since = mark("bronze row", since)
        if kept:
            writer.write(bronze_batch(kept, self.bronze_schema))
        mark("bronze write", since)
        inspected = self.inspected_rows(records, seqs, phases)
        since = time.perf_counter()
        for row, no in zip(inspected, refused, strict=True):
            if no:
                row["content_status"] = REFUSED
        out = inspected_batch(inspected, self.recorded_schema)
        since = mark("arrow in/out", since)
        if self.scorer is not None:
            out = self.scorer.score(out)
            mark("gold scoring", since)
        return out

    def record_batches(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """The task: every batch recorded and inspected, then one marker row naming the bronze files written
        (and, profiling, the task's phases)."""
        phases = Phases() if self.profile else None
        mark = _marker(phases)
        started, started_at = time.perf_counter(), time.time()
        prefix = txn_file_prefix(QUERY_NAME, self.batch_id)
        writer = ParquetFileWriter(self.bronze_path, self.bronze_schema, {}, prefix=prefix)
        try:
            since = time.perf_counter()
            for batch in batches:
                mark("Spark: input from the JVM", since)
                # Spark hands over a task's whole listing at once: a bounded slice of it at a time keeps
                # the bytes a task holds the same whatever the admission limit.
                for part in listing_slices(batch):
                    out = self.record_batch(part, writer, phases)
                    since = time.perf_counter()
                    yield out
                    since = mark("Spark: output to the JVM", since)
            since = mark("Spark: input from the JVM", since)
            files = [asdict(f) for f in writer.finish().files]
            mark("bronze write", since)
        except BaseException:
            writer._close()
            remove_files(self.bronze_path, writer.files)
            raise
        marker = {"files": files}
        if phases is not None:  # the task's phases, and its whole time in this generator to check they add up
            marker["profile"] = {"phases": phases.seconds, "task_seconds": time.perf_counter() - started,
                                 "started_at": started_at, "ended_at": time.time()}
        yield pa.RecordBatch.from_pylist([{WRITTEN_FILES_COLUMN: json.dumps(marker)}], schema=self.recorded_schema)


@functools.cache
def _arrow_schemas() -> tuple[pa.Schema, pa.Schema]:
    """Bronze's and the recorded rows' Arrow schemas, converted once (every batch's plan needs them)."""
    return arrow_schema_of_spark(BRONZE_IMAGES.schema), arrow_schema_of_spark(RECORDED_SCHEMA)


def _marker(phases: Phases | None) -> Callable[[str, float], float]:
    """``mark(phase, since)``: charge the time since ``since`` to ``phase`` and return now (profiling on);
    a no-op when profiling is off."""
    return phases.add if phases is not None else (lambda _name, since: since)


def as_landing_entries(listing: DataFrame) -> DataFrame:
    """The batch's landing entries with every column of the landing source (a listing without ``status``
    is taken as regular files, e.g. one built by a test or a tool)."""
    columns = set(listing.columns)
    status = F.col("status") if "status" in columns else F.lit("file")
    target = F.col("target") if "target" in columns else F.lit(None).cast("string")
    seq = F.col("seq") if "seq" in columns else F.lit(-1).cast("long")
    return listing.select("path", "modificationTime", "length", status.alias("status"), target.alias("target"),
                          seq.alias("seq"))
