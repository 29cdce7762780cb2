"""Bronze: the Auto Loader role. Landing files → ``bronze_xray_images``, exactly once.

Spark's file stream source lists the landing folder (recursive, image extensions only, hidden/temporary
names ignored, files admitted oldest first) and checkpoints which files it has seen. The listing carries no
bytes: executors read each file in Python, so a file too large for ``max_file_bytes`` is recorded without
content instead of failing the query, and a file deleted between listing and reading is skipped and logged.
"""

from __future__ import annotations

import datetime as dt
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
                if record["length"] is None:  # a zero-byte file the scan skipped: stat it here
                    try:
                        stat = os.stat(local_path(path))
                        record["length"] = stat.st_size
                        record["modificationTime"] = dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc)
                    except OSError:
                        pass
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


def unlisted_paths(admitted: list[str], listed: list[str]) -> list[str]:
    """Admitted paths the scan did not return: zero-byte files (Spark's scan skips them) or deleted ones."""
    listed_local = {local_path(p) for p in listed}
    return [f"file:{local_path(p)}" for p in admitted if local_path(p) not in listed_local]


def process_bronze_batch(lakehouse: Lakehouse, listing: DataFrame, batch_id: int) -> BatchEvent:
    """One bronze micro-batch: read the listed files on executors, write them to bronze, log the event.

    The listing (paths, sizes, times: small) comes to the driver; the bytes never do.
    """
    config, spark = lakehouse.config, lakehouse.spark
    event = BatchEvent(QUERY_NAME, batch_id)
    files = listing.select("path", "modificationTime", "length").toArrow()
    paths = files.column("path").to_pylist()
    unlisted = unlisted_paths(admitted_files(config.checkpoint_path(QUERY_NAME), batch_id), paths)
    if unlisted:
        extra = pa.table({
            "path": unlisted,
            "modificationTime": pa.array([None] * len(unlisted), files.schema.field("modificationTime").type),
            "length": pa.array([None] * len(unlisted), pa.int64()),
        })
        files = pa.concat_tables([files, extra.cast(files.schema)])
    event.input_rows = files.num_rows
    if event.input_rows == 0:
        return event
    gone = [p for p in files.column("path").to_pylist() if not os.path.exists(local_path(p))]
    parallelism = max(1, min(event.input_rows, spark.sparkContext.defaultParallelism * 2))
    listed = spark.createDataFrame(files).repartition(parallelism)
    rows = read_landing_files(listed, config.max_file_bytes, batch_id)
    result = apply_expectations(rows, BRONZE_EXPECTATIONS, BRONZE_IMAGES.name, count=False)
    txn = (QUERY_NAME, batch_id)
    lakehouse.append(result.valid, BRONZE_IMAGES.name, txn=txn)
    written = lakehouse.committed_rows(BRONZE_IMAGES.name, txn)
    event.output_rows = written if written is not None else event.input_rows - len(gone)
    skipped = event.input_rows - event.output_rows
    event.expectations = [{**BRONZE_EXPECTATION_COUNT, "failed": skipped}]
    if skipped:
        event.message = f"skipped {skipped} file(s) deleted before they were read: " + ", ".join(
            gone[:5]) + (" ..." if len(gone) > 5 else "")
    times = [t for t in files.column("modificationTime").to_pylist() if t is not None]
    newest = max(times) if times else None
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=dt.timezone.utc)
    event.backlog_files, event.backlog_bytes = landing_backlog(config.landing_dir, newest)
    record_event(lakehouse, event)
    return event
