"""Bronze: the Auto Loader role. Landing files → ``bronze_xray_images``, exactly once.

Spark's file stream source lists the landing folder (recursive, image extensions only, hidden/temporary
names ignored, files admitted oldest first) and checkpoints which files it has seen. The listing carries no
bytes: executors read each file in Python, so a file too large for ``max_file_bytes`` is recorded without
content instead of failing the query, and a file deleted between listing and reading is skipped and logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType, TimestampType

from .config import XrayConfig
from .deltars import (
    DeltaRsCommitMessage,
    ParquetFileWriter,
    WrittenFile,
    arrow_schema_of_spark,
    commit_files,
    local_path,
    remove_files,
    remove_orphans,
    txn_file_prefix,
)
from .errors import ConfigError
from .events import BatchEvent, landing_backlog, record_events
from .images import read_file
from .lakehouse import DELTA_RS_FORMAT, Lakehouse, translate_errors
from .paths import parse_xray_path
from .quality import Expectation, apply_expectations, flag_expectations
from .silver import INSPECTED_SCHEMA, inspect_record, inspected_batch
from .tables import BRONZE_IMAGES, SILVER_METADATA

log = logging.getLogger(__name__)

QUERY_NAME = "bronze"
# Hadoop glob: case-insensitive image extensions.
IMAGE_GLOB = "*.{[jJ][pP][gG],[jJ][pP][eE][gG],[pP][nN][gG]}"
LANDING_LISTING_SCHEMA = StructType(
    [
        StructField("path", StringType()),
        StructField("modificationTime", TimestampType()),
        StructField("length", LongType()),
        StructField("content", BinaryType()),
    ]
)

BRONZE_EXPECTATIONS = (
    Expectation(
        "file_still_exists", "content_status <> 'missing'", "drop",
        "concat('file was deleted between listing and reading: ', path)",
    ),
)
# Bronze counts its one rule from the commit (rows listed - rows written), sparing a pass over the bytes.
BRONZE_EXPECTATION_COUNT = {"table": BRONZE_IMAGES.name, "rule": "file_still_exists", "action": "drop"}


def landing_stream(spark: SparkSession, config: XrayConfig) -> DataFrame:
    """The landing folder as a stream of (path, modificationTime, length), Auto Loader-style."""
    config.landing_dir.mkdir(parents=True, exist_ok=True)
    reader = (
        spark.readStream.format("binaryFile")
        .schema(LANDING_LISTING_SCHEMA)
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", IMAGE_GLOB)
        .option("maxFileAge", config.max_file_age)
    )
    # Spark allows one admission limit at a time; bytes win when both are configured.
    if config.max_bytes_per_trigger:
        reader = reader.option("maxBytesPerTrigger", str(config.max_bytes_per_trigger))
    else:
        reader = reader.option("maxFilesPerTrigger", str(config.max_files_per_trigger))
    if config.clean_source != "off":
        reader = reader.option("cleanSource", config.clean_source)
        if config.clean_source == "archive":
            config.archive_dir.mkdir(parents=True, exist_ok=True)
            reader = reader.option("sourceArchiveDir", str(config.archive_dir))
    # Selecting no content keeps the JVM from reading any file bytes.
    listing = reader.load(str(config.landing_dir)).select("path", "modificationTime", "length")
    if config.modified_after:
        # modifiedAfter is batch-only in Spark's file source: filter the listing instead.
        listing = listing.where(F.col("modificationTime") > F.to_timestamp(F.lit(config.modified_after)))
    return listing


def bronze_record(record: dict, max_file_bytes: int, batch_id: int, ingest_time: dt.datetime) -> dict:
    """One listing row (path, modificationTime, length) → its bronze row, the file read whole. Executors."""
    path = record["path"]
    if record["length"] is None:  # a zero-byte file the scan skipped: stat it here
        try:
            stat = os.stat(local_path(path))
            record["length"] = stat.st_size
            record["modificationTime"] = dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc)
        except OSError:
            pass
    read = read_file(path, record["length"], max_file_bytes)
    info = parse_xray_path(path)
    return {
        "path": path,
        "file_name": path.rsplit("/", 1)[-1],
        "size_bytes": record["length"],
        "modification_time": record["modificationTime"],
        "content": read.content,
        "content_sha256": read.sha256,
        "content_status": read.status,
        "label": info.label,
        "split": info.split,
        "ingest_time": ingest_time,
        "batch_id": batch_id,
    }


def read_landing_files(listing: DataFrame, max_file_bytes: int, batch_id: int) -> DataFrame:
    """Listing rows → bronze rows: bytes, checksum, path labels. Runs on executors (Arrow batches)."""
    schema = BRONZE_IMAGES.schema
    arrow_schema = arrow_schema_of_spark(schema)
    ingest_time = dt.datetime.now(dt.timezone.utc)

    def read_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = [bronze_record(r, max_file_bytes, batch_id, ingest_time) for r in batch.to_pylist()]
            yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)

    return listing.mapInArrow(read_batches, schema)


# What executors hand back from a fused batch: the inspected row of every file (no bytes), and one extra
# row per task naming the bronze Parquet files it wrote, which the driver commits in one transaction.
WRITTEN_FILES_COLUMN = "bronze_files"
RECORDED_SCHEMA = StructType([*INSPECTED_SCHEMA.fields, StructField(WRITTEN_FILES_COLUMN, StringType())])


def record_and_inspect(listing: DataFrame, config: XrayConfig, batch_id: int, bronze_path: str,
                       inspect: bool) -> DataFrame:
    """Listing rows → bronze Parquet files written by the executors (not committed yet) and one inspected
    row per file (decode, measures, features when ``inspect``), in one pass that reads each file once.

    A file deleted between listing and reading (bronze's rule ``file_still_exists``) is not written.
    """
    bronze_schema = arrow_schema_of_spark(BRONZE_IMAGES.schema)
    recorded_schema = arrow_schema_of_spark(RECORDED_SCHEMA)
    ingest_time = dt.datetime.now(dt.timezone.utc)
    max_file_bytes, max_pixels, salt = config.max_file_bytes, config.max_image_pixels, config.patient_salt()
    names = [f.name for f in INSPECTED_SCHEMA.fields]

    def record_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        writer = ParquetFileWriter(bronze_path, bronze_schema, {}, prefix=txn_file_prefix(QUERY_NAME, batch_id))
        try:
            for batch in batches:
                records = [bronze_record(r, max_file_bytes, batch_id, ingest_time) for r in batch.to_pylist()]
                kept = [r for r in records if r["content_status"] != "missing"]
                if kept:
                    writer.write(pa.RecordBatch.from_pylist(kept, schema=bronze_schema))
                inspected = [
                    inspect_record(r, salt, max_pixels) if inspect else {
                        **{n: None for n in names}, "path": r["path"], "file_name": r["file_name"],
                        "size_bytes": r["size_bytes"], "content_status": r["content_status"],
                        "content_sha256": r["content_sha256"], "source_batch_id": batch_id}
                    for r in records
                ]
                yield inspected_batch(inspected, recorded_schema)
            files = [asdict(f) for f in writer.finish().files]
        except BaseException:
            writer._close()
            remove_files(bronze_path, writer.files)
            raise
        yield pa.RecordBatch.from_pylist([{WRITTEN_FILES_COLUMN: json.dumps(files)}], schema=recorded_schema)

    return listing.mapInArrow(record_batches, RECORDED_SCHEMA)


def admitted_entries(checkpoint: Path, batch_id: int) -> list[dict] | None:
    """Entries (path, timestamp in ms, batchId) the file source admitted into a batch, from its checkpoint
    log (``sources/0``); None when the log holds no file for the batch.

    The source writes the batch's entry before the batch runs, and it names every file, including the
    zero-byte files Spark's scan silently drops. Every tenth batch is compacted into ``<id>.compact``.
    """
    folder = checkpoint / "sources" / "0"
    for candidate in (folder / str(batch_id), folder / f"{batch_id}.compact"):
        if candidate.is_file():
            lines = candidate.read_text().splitlines()[1:]  # first line: log format version
            entries = (json.loads(line) for line in lines if line.strip())
            return [entry for entry in entries if entry.get("batchId") == batch_id]
    return None


def admitted_files(checkpoint: Path, batch_id: int) -> list[str]:
    """Paths the file source admitted into a batch (see `admitted_entries`)."""
    return [entry["path"] for entry in admitted_entries(checkpoint, batch_id) or []]


def unlisted_paths(admitted: list[str], listed: list[str]) -> list[str]:
    """Admitted paths the scan did not return: zero-byte files (Spark's scan skips them) or deleted ones."""
    listed_local = {local_path(p) for p in listed}
    return [f"file:{local_path(p)}" for p in admitted if local_path(p) not in listed_local]


def modified_after_time(config: XrayConfig) -> dt.datetime | None:
    """``modified_after`` as a UTC time (an ISO timestamp without zone is UTC, like the Spark session)."""
    if not config.modified_after:
        return None
    try:
        moment = dt.datetime.fromisoformat(config.modified_after)
    except ValueError:
        raise ConfigError(f"modified_after must be an ISO timestamp such as 2024-05-01T00:00:00, "
                          f"not {config.modified_after!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def batch_files(lakehouse: Lakehouse, listing: DataFrame, batch_id: int) -> pa.Table:
    """The batch's files (path, modificationTime, length; length may be null) on the driver.

    Taken from the source's own log, which spares a Spark job per batch and keeps the zero-byte files;
    sizes come from a stat here (null for a file already gone: the executor then records it missing).
    Without a log entry (never expected), the listing DataFrame is collected instead.
    """
    config = lakehouse.config
    entries = admitted_entries(config.checkpoint_path(QUERY_NAME), batch_id)
    if entries is None:
        return _collected_listing(lakehouse, listing, batch_id)
    times = [dt.datetime.fromtimestamp(e["timestamp"] / 1000, dt.timezone.utc) for e in entries]
    files = pa.table({
        "path": pa.array([_listed_form(e["path"]) for e in entries], pa.string()),
        "modificationTime": pa.array(times, pa.timestamp("us", tz="UTC")),
        "length": pa.array([_size(e["path"]) for e in entries], pa.int64()),
    })
    after = modified_after_time(config)
    if after is not None:
        files = files.filter(pc.greater(files.column("modificationTime"), pa.scalar(after, pa.timestamp("us", "UTC"))))
    return files


def _listed_form(uri: str) -> str:
    """A path of the source log (``file:///x%20y``) as Spark's listing writes it (``file:/x y``); other
    schemes are kept as they are."""
    return f"file:{local_path(uri)}" if uri.startswith("file:") else uri


def _size(path: str) -> int | None:
    try:
        return os.stat(local_path(path)).st_size
    except OSError:
        return None


def _collected_listing(lakehouse: Lakehouse, listing: DataFrame, batch_id: int) -> pa.Table:
    """The batch's listing collected from Spark, with the zero-byte files its scan skipped added back."""
    files = listing.select("path", "modificationTime", "length").toArrow()
    paths = files.column("path").to_pylist()
    unlisted = unlisted_paths(admitted_files(lakehouse.config.checkpoint_path(QUERY_NAME), batch_id), paths)
    if unlisted:
        extra = pa.table({
            "path": unlisted,
            "modificationTime": pa.array([None] * len(unlisted), files.schema.field("modificationTime").type),
            "length": pa.array([None] * len(unlisted), pa.int64()),
        })
        files = pa.concat_tables([files, extra.cast(files.schema)])
    return files


def _record_with_delta_rs(lakehouse: Lakehouse, listed: DataFrame, batch_id: int, silver_inline: bool
                          ) -> tuple[pa.Table, bool]:
    """Executors write bronze files and inspect; the driver commits the files. (inspected rows, committed)"""
    from .silver import silver_expectations

    config = lakehouse.config
    # Files an attempt killed between writing and committing left behind (found by their prefix).
    removed = remove_orphans(lakehouse.path(BRONZE_IMAGES.name), QUERY_NAME, batch_id)
    if removed:
        log.info("bronze batch %d: removed %d file(s) left by an interrupted attempt", batch_id, len(removed))
    recorded = record_and_inspect(listed, config, batch_id, lakehouse.path(BRONZE_IMAGES.name), silver_inline)
    if silver_inline:
        recorded = flag_expectations(recorded, silver_expectations(config), SILVER_METADATA.name)
    rows = recorded.toArrow()
    markers = pc.is_valid(rows.column(WRITTEN_FILES_COLUMN))
    files = [WrittenFile(**f) for text in rows.filter(markers).column(WRITTEN_FILES_COLUMN).to_pylist()
             for f in json.loads(text)]
    with translate_errors():
        committed = commit_files(lakehouse.path(BRONZE_IMAGES.name), BRONZE_IMAGES.schema,
                                 [DeltaRsCommitMessage(files=files)], "append", QUERY_NAME, batch_id)
    return rows.filter(pc.invert(markers)).drop_columns([WRITTEN_FILES_COLUMN]), committed


def _record_with_spark(lakehouse: Lakehouse, listed: DataFrame, batch_id: int, silver_inline: bool) -> pa.Table:
    """The same through Spark's writer (native ``delta`` format): the read rows are cached, bronze is
    written from the cache and the inspection reads it again (no image bytes reach the driver)."""
    from .silver import inspect_bronze_rows, silver_expectations

    config = lakehouse.config
    rows = read_landing_files(listed, config.max_file_bytes, batch_id).persist()
    try:
        result = apply_expectations(rows, BRONZE_EXPECTATIONS, BRONZE_IMAGES.name, count=False)
        lakehouse.append(result.valid, BRONZE_IMAGES.name, txn=(QUERY_NAME, batch_id))
        if silver_inline:
            inspected = flag_expectations(inspect_bronze_rows(rows, config), silver_expectations(config),
                                          SILVER_METADATA.name)
        else:
            inspected = rows.select("path", "content_status")
        return inspected.toArrow()
    finally:
        rows.unpersist()


def process_bronze_batch(lakehouse: Lakehouse, listing: DataFrame, batch_id: int, silver_inline: bool = False,
                         gold_inline: bool = False) -> BatchEvent:
    """One bronze micro-batch: read the listed files on executors into bronze and, when ``silver_inline``,
    decode and inspect them in the same pass and write silver (and gold, when ``gold_inline``) from the
    driver: one Spark job from landing files to predictions, and the image bytes never reach the driver.

    Every table's write carries the transaction (bronze, batch id), so a replayed batch writes nothing twice.
    """
    config, spark = lakehouse.config, lakehouse.spark
    event = BatchEvent(QUERY_NAME, batch_id)
    clock = time.perf_counter()
    files = batch_files(lakehouse, listing, batch_id)
    phases = {"listing": time.perf_counter() - clock}
    event.input_rows = files.num_rows
    if event.input_rows == 0:
        return event
    parallelism = max(1, min(event.input_rows, spark.sparkContext.defaultParallelism * 2))
    # Largest files first: the round-robin repartition then deals every task a like share of the bytes.
    by_size = files.take(pc.sort_indices(files, sort_keys=[("length", "descending")]))
    listed = spark.createDataFrame(by_size).repartition(parallelism)
    if lakehouse.format == DELTA_RS_FORMAT:
        inspected, _ = _record_with_delta_rs(lakehouse, listed, batch_id, silver_inline)
    else:
        inspected = _record_with_spark(lakehouse, listed, batch_id, silver_inline)
    phases["read+inspect+bronze commit"] = time.perf_counter() - clock - sum(phases.values())
    missing = pc.equal(inspected.column("content_status"), "missing")
    gone = inspected.filter(missing).column("path").to_pylist()
    event.output_rows = event.input_rows - len(gone)
    event.expectations = [{**BRONZE_EXPECTATION_COUNT, "failed": len(gone)}]
    if gone:
        event.message = f"skipped {len(gone)} file(s) deleted before they were read: " + ", ".join(
            gone[:5]) + (" ..." if len(gone) > 5 else "")
    times = [t for t in files.column("modificationTime").to_pylist() if t is not None]
    newest = max(times) if times else None
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=dt.timezone.utc)
    event.backlog_files, event.backlog_bytes = landing_backlog(config.landing_dir, newest)
    events = [event.finish()]
    if silver_inline:
        from . import silver

        silver_event = BatchEvent(silver.QUERY_NAME, batch_id)
        new_images = silver.write_silver(lakehouse, inspected.filter(pc.invert(missing)), batch_id, QUERY_NAME,
                                         silver_event)
        events.append(silver_event.finish())
        phases["silver"] = time.perf_counter() - clock - sum(phases.values())
        if gold_inline:
            from . import gold

            gold_event = gold.score_new_images(lakehouse, new_images, batch_id, QUERY_NAME, record=False)
            if gold_event is not None and gold_event.input_rows:
                events.append(gold_event)
            phases["gold"] = time.perf_counter() - clock - sum(phases.values())
    # One commit for the batch's events, last: a replay that finds it knows every layer wrote.
    record_events(lakehouse, events, (f"{QUERY_NAME}:events", batch_id))
    phases["events"] = time.perf_counter() - clock - sum(phases.values())
    log.debug("bronze batch %d phases: %s", batch_id, ", ".join(f"{k} {v:.3f} s" for k, v in phases.items()))
    return event
