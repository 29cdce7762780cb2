"""Bronze: the Auto Loader role. Landing files → ``bronze_xray_images``, exactly once.

Spark's file stream source lists the landing folder (recursive, image extensions only, hidden/temporary
names ignored, files admitted oldest first) and checkpoints which files it has seen. The listing carries no
bytes: executors read each file in Python, so a file too large for ``max_file_bytes`` is recorded without
content instead of failing the query, and a file deleted between listing and reading is skipped and logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType, TimestampType

from .config import XrayConfig
from .deltars import arrow_schema_of_spark, local_path
from .events import BatchEvent, landing_backlog, record_event
from .images import read_file
from .lakehouse import Lakehouse
from .paths import parse_xray_path
from .quality import Expectation, apply_expectations
from .tables import BRONZE_IMAGES

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


def read_landing_files(listing: DataFrame, max_file_bytes: int, batch_id: int) -> DataFrame:
    """Listing rows → bronze rows: bytes, checksum, path labels. Runs on executors (Arrow batches)."""
    schema = BRONZE_IMAGES.schema
    arrow_schema = arrow_schema_of_spark(schema)
    ingest_time = dt.datetime.now(dt.timezone.utc)

    def read_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = []
            for record in batch.to_pylist():
                path = record["path"]
                read = read_file(path, record["length"], max_file_bytes)
                info = parse_xray_path(path)
                rows.append({
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
                })
            yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)

    return listing.mapInArrow(read_batches, schema)


def admitted_files(checkpoint: Path, batch_id: int) -> list[str]:
    """Paths the file source admitted into a batch, from its checkpoint log (``sources/0``).

    Spark's file scan silently drops zero-byte files, so the listing alone would lose them; the source log
    names every file of the batch. Every tenth batch is compacted into ``<id>.compact`` with all entries.
    """
    folder = checkpoint / "sources" / "0"
    for candidate in (folder / str(batch_id), folder / f"{batch_id}.compact"):
        if candidate.is_file():
            lines = candidate.read_text().splitlines()[1:]  # first line: log format version
            entries = (json.loads(line) for line in lines if line.strip())
            return [entry["path"] for entry in entries if entry.get("batchId") == batch_id]
    return []


def unlisted_rows(spark: SparkSession, admitted: list[str], listed: list[str], batch_id: int) -> DataFrame | None:
    """Bronze rows for admitted files the scan did not return: zero-byte files (or files since deleted)."""
    listed_local = {local_path(p) for p in listed}
    ingest_time = dt.datetime.now(dt.timezone.utc)
    rows = []
    for path in admitted:
        local = local_path(path)
        if local in listed_local:
            continue
        try:
            stat = os.stat(local)
            size, modified, status = stat.st_size, dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc), "ok"
        except FileNotFoundError:
            size, modified, status = None, None, "missing"
        content = b"" if status == "ok" and size == 0 else None
        if status == "ok" and size:
            continue  # listed under another spelling of the path
        info = parse_xray_path(local)
        rows.append((f"file:{local}", os.path.basename(local), size, modified, content,
                     hashlib.sha256(b"").hexdigest() if content is not None else None, status, info.label,
                     info.split, ingest_time, batch_id))
    return spark.createDataFrame(rows, BRONZE_IMAGES.schema) if rows else None


def process_bronze_batch(lakehouse: Lakehouse, listing: DataFrame, batch_id: int) -> BatchEvent:
    """One bronze micro-batch: read the listed files, write them to bronze, log the event."""
    config = lakehouse.config
    event = BatchEvent(QUERY_NAME, batch_id)
    rows = read_landing_files(listing, config.max_file_bytes, batch_id)
    admitted = admitted_files(config.checkpoint_path(QUERY_NAME), batch_id)
    if admitted:
        listed = [r["path"] for r in listing.select("path").collect()]
        extra = unlisted_rows(lakehouse.spark, admitted, listed, batch_id)
        if extra is not None:
            rows = rows.unionByName(extra)
    rows = rows.persist()
    try:
        result = apply_expectations(rows, BRONZE_EXPECTATIONS, BRONZE_IMAGES.name)
        stats = rows.agg(
            F.count(F.lit(1)).alias("n"), F.max(F.col("modification_time").cast("double")).alias("newest")
        ).first()
        event.input_rows = int(stats["n"])
        event.expectations = result.counts
        event.output_rows = event.input_rows - result.dropped
        if event.output_rows:
            lakehouse.append(result.valid, BRONZE_IMAGES.name, txn=(QUERY_NAME, batch_id))
        if result.dropped:
            missing = [r["path"] for r in rows.where("content_status = 'missing'").select("path").collect()]
            event.message = f"skipped {len(missing)} file(s) deleted before they were read: " + ", ".join(
                missing[:5]) + (" ..." if len(missing) > 5 else "")
        newest = stats["newest"]
        if newest is not None:
            newest = dt.datetime.fromtimestamp(newest, dt.timezone.utc)
        event.backlog_files, event.backlog_bytes = landing_backlog(config.landing_dir, newest)
    finally:
        rows.unpersist()
    record_event(lakehouse, event)
    return event
