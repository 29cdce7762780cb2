"""Bronze: the Auto Loader role. Landing files → ``bronze_xray_images``, exactly once.

The project's own landing source (`streaming.landing_source`) lists the landing folder (recursive, image
extensions only, hidden/temporary names ignored, files admitted oldest first) and logs what it found. Paths
are the filesystem paths they are, from listing to table. The listing carries no bytes: executors read each
file in Python, so a file too large for ``max_file_bytes`` is recorded without content instead of failing
the query, a file deleted between listing and reading is skipped and logged, and an entry that must not be
opened (a symlink leading out of landing, a FIFO, a device) is recorded without content and quarantined.
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
from pyspark.sql.types import LongType, StringType, StructField, StructType

from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError
from streaming.core.paths import parse_xray_path
from streaming.core.pseudonym import path_ref, short_ref
from streaming.imaging.images import read_file
from streaming.lakehouse.catalog import BRONZE_IMAGES, SILVER_METADATA
from streaming.lakehouse.deltars import (
    DeltaRsCommitMessage,
    ParquetFileWriter,
    WrittenFile,
    arrow_schema_of_spark,
    commit_files,
    remove_files,
    remove_orphans,
    txn_file_prefix,
)
from streaming.lakehouse.engine import DELTA_RS_FORMAT, Lakehouse, translate_errors
from streaming.lakehouse.events import BatchEvent, landing_backlog, record_events
from streaming.quality.expectations import Expectation, apply_expectations, flag_expectations
from streaming.silver.batch import INSPECTED_SCHEMA, inspect_record, inspected_batch

log = logging.getLogger(__name__)

QUERY_NAME = "bronze"
BRONZE_EXPECTATIONS = (
    Expectation(
        "file_still_exists", "content_status <> 'missing'", "drop",
        # The reason never names the file: the path is raw patient data, only bronze keeps it.
        "concat('file was deleted between listing and reading (path_ref ', left(path_ref, 12), ')')",
    ),
)
# Bronze counts its one rule from the commit (rows listed - rows written), sparing a pass over the bytes.
BRONZE_EXPECTATION_COUNT = {"table": BRONZE_IMAGES.name, "rule": "file_still_exists", "action": "drop"}


def landing_stream(spark: SparkSession, config: XrayConfig) -> DataFrame:
    """The landing folder as a stream of entries (path, modificationTime, length, status, target), from the
    project's own source (`streaming.landing_source`): exact paths, nothing outside landing opened."""
    from streaming.landing.source import LANDING_FORMAT

    config.landing_dir.mkdir(parents=True, exist_ok=True)
    after = modified_after_time(config)
    options = {
        "landing": str(config.landing_dir),
        "log": str(landing_log_dir(config)),
        "allowedRoots": json.dumps([str(Path(r).expanduser().resolve()) for r in config.landing_allowed_roots]),
        "modifiedAfterMs": "" if after is None else str(int(after.timestamp() * 1000)),
        # Two tasks a core: a slow file does not hold the whole batch back.
        "numPartitions": str(max(1, spark.sparkContext.defaultParallelism * 2)),
        "cleanSource": config.clean_source,
        "archiveDir": str(config.archive_dir),
    }
    # One admission limit at a time; bytes win when both are configured.
    if config.max_bytes_per_trigger:
        options["maxBytesPerTrigger"] = str(config.max_bytes_per_trigger)
    else:
        options["maxFilesPerTrigger"] = str(config.max_files_per_trigger)
    return spark.readStream.format(LANDING_FORMAT).options(**options).load()


def landing_log_dir(config: XrayConfig) -> Path:
    """Where the landing source keeps what it found, planned and cleaned (beside Spark's checkpoint)."""
    return config.checkpoint_path(QUERY_NAME) / "landing"


def landing_roots(config: XrayConfig) -> tuple[str, ...]:
    """Landing and the allowed roots, resolved: the only places a landing file may be read from."""
    return (os.path.realpath(config.landing_dir),
            *(os.path.realpath(Path(r).expanduser()) for r in config.landing_allowed_roots))


def bronze_record(record: dict, max_file_bytes: int, batch_id: int, ingest_time: dt.datetime, key: str,
                  roots: tuple[str, ...] = ()) -> dict:
    """One landing entry (path, modificationTime, length, status, target) → its bronze row, the file read
    whole when it may be opened. Executors.

    ``key`` is the lakehouse's secret: the row's ``path_ref`` (keyed hash of the path) is what every later
    layer carries instead of the path, which names the patient.
    """
    path = record["path"]
    read = read_file(path, record.get("length"), max_file_bytes, record.get("status") or "file",
                     record.get("target"), roots)
    info = parse_xray_path(path)
    return {
        "path": path,
        "file_name": os.path.basename(path),
        "path_ref": path_ref(path, key),
        "size_bytes": record.get("length") if read.content is None else len(read.content),
        "modification_time": record.get("modificationTime"),
        "content": read.content,
        "content_sha256": read.sha256,
        "content_status": read.status,
        "label": info.label,
        "split": info.split,
        "ingest_time": ingest_time,
        "batch_id": batch_id,
    }


def read_landing_files(listing: DataFrame, max_file_bytes: int, batch_id: int, key: str,
                       roots: tuple[str, ...] = ()) -> DataFrame:
    """Landing entries → bronze rows: bytes, checksum, path labels. Runs on executors (Arrow batches)."""
    schema = BRONZE_IMAGES.schema
    arrow_schema = arrow_schema_of_spark(schema)
    ingest_time = dt.datetime.now(dt.timezone.utc)

    def read_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = [bronze_record(r, max_file_bytes, batch_id, ingest_time, key, roots) for r in batch.to_pylist()]
            yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)

    return listing.mapInArrow(read_batches, schema)


# What executors hand back from a fused batch: the inspected row of every file (no bytes), and one extra
# row per task naming the bronze Parquet files it wrote, which the driver commits in one transaction.
WRITTEN_FILES_COLUMN = "bronze_files"
MODIFIED_COLUMN = "modification_time"
SEQ_COLUMN = "landing_seq"  # the entry's number in the landing log, for clean_source
RECORDED_SCHEMA = StructType([*INSPECTED_SCHEMA.fields, StructField(SEQ_COLUMN, LongType()),
                              StructField(WRITTEN_FILES_COLUMN, StringType())])


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
    roots = landing_roots(config)
    names = [f.name for f in INSPECTED_SCHEMA.fields]

    def record_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        writer = ParquetFileWriter(bronze_path, bronze_schema, {}, prefix=txn_file_prefix(QUERY_NAME, batch_id))
        try:
            for batch in batches:
                records = [bronze_record(r, max_file_bytes, batch_id, ingest_time, salt, roots)
                           for r in batch.to_pylist()]
                kept = [r for r in records if r["content_status"] != "missing"]
                if kept:
                    writer.write(pa.RecordBatch.from_pylist(kept, schema=bronze_schema))
                inspected = [
                    {**(inspect_record(r, salt, max_pixels) if inspect else {
                        **{n: None for n in names}, "path": r["path"], "file_name": r["file_name"],
                        "path_ref": r["path_ref"], "size_bytes": r["size_bytes"], "content_status": r["content_status"],
                        "content_sha256": r["content_sha256"], "source_batch_id": batch_id,
                        MODIFIED_COLUMN: r["modification_time"]}), SEQ_COLUMN: seq}
                    for r, seq in zip(records, batch.column("seq").to_pylist(), strict=True)
                ]
                yield inspected_batch(inspected, recorded_schema)
            files = [asdict(f) for f in writer.finish().files]
        except BaseException:
            writer._close()
            remove_files(bronze_path, writer.files)
            raise
        yield pa.RecordBatch.from_pylist([{WRITTEN_FILES_COLUMN: json.dumps(files)}], schema=recorded_schema)

    return _as_landing_entries(listing).mapInArrow(record_batches, RECORDED_SCHEMA)


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


def _record_with_delta_rs(lakehouse: Lakehouse, listed: DataFrame, batch_id: int, silver_inline: bool
                          ) -> tuple[pa.Table, bool]:
    """Executors write bronze files and inspect; the driver commits the files. (inspected rows, committed)"""
    from streaming.silver.batch import silver_expectations

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
    from streaming.silver.batch import inspect_bronze_rows, silver_expectations

    config = lakehouse.config
    rows = read_landing_files(listed, config.max_file_bytes, batch_id, config.patient_salt(),
                              landing_roots(config)).persist()
    try:
        result = apply_expectations(rows, BRONZE_EXPECTATIONS, BRONZE_IMAGES.name, count=False)
        lakehouse.append(result.valid, BRONZE_IMAGES.name, txn=(QUERY_NAME, batch_id))
        if silver_inline:
            inspected = flag_expectations(inspect_bronze_rows(rows, config), silver_expectations(config),
                                          SILVER_METADATA.name)
        else:
            inspected = rows.select("path", "path_ref", "content_status", MODIFIED_COLUMN)
        table = inspected.toArrow()
    finally:
        rows.unpersist()
    # Bronze rows do not carry the landing log's numbers: take them from the (small) listing.
    numbers = dict(zip(*listed.select("path", "seq").toArrow().to_pydict().values(), strict=True))
    return table.append_column(SEQ_COLUMN, pa.array([numbers.get(p) for p in table.column("path").to_pylist()],
                                                    pa.int64()))


def _as_landing_entries(listing: DataFrame) -> DataFrame:
    """The batch's landing entries with every column of the landing source (a listing without ``status``
    is taken as regular files, e.g. one built by a test or a tool)."""
    columns = set(listing.columns)
    status = F.col("status") if "status" in columns else F.lit("file")
    target = F.col("target") if "target" in columns else F.lit(None).cast("string")
    seq = F.col("seq") if "seq" in columns else F.lit(-1).cast("long")
    return listing.select("path", "modificationTime", "length", status.alias("status"), target.alias("target"),
                          seq.alias("seq"))


_reported_problems: set[tuple[str, str]] = set()


def report_landing_problems(config: XrayConfig) -> list[str]:
    """What the landing scan had to skip (unreadable folders, folder links inside landing, names that are
    not UTF-8): one WARNING line per problem and process, naming the folder by a keyed reference (`xray
    status` shows the folder itself); returns a note for the batch's event, or nothing."""
    from streaming.landing.scan import read_problems

    problems = read_problems(landing_log_dir(config))
    if not problems:
        return []
    for problem in problems:
        key = (problem["kind"], problem["path"])
        if key not in _reported_problems:
            _reported_problems.add(key)
            log.warning("landing: skipped %s (ref %s): %s; see 'xray status'", problem["kind"].replace("_", " "),
                        short_ref(path_ref(problem["path"], config.patient_salt())), problem["detail"])
    kinds = sorted({p["kind"].replace("_", " ") for p in problems})
    return [f"landing: {len(problems)} entr{'y' if len(problems) == 1 else 'ies'} skipped ({', '.join(kinds)}; "
            "see xray status)"]


def clean_landing(config: XrayConfig, entries: pa.Table) -> None:
    """``clean_source``: move a batch's entries (path, landing log number) out of landing (to the same
    relative path under the archive folder) or delete them, and log them as cleaned so that the same name
    dropped again is a new file."""
    from streaming.landing.scan import LandingLog
    from streaming.landing.source import clean

    for path in entries.column("path").to_pylist():
        clean(path, config.landing_dir, config.clean_source, config.archive_dir)
    LandingLog.record_cleaned(landing_log_dir(config), [s for s in entries.column(SEQ_COLUMN).to_pylist()
                                                        if s is not None and s >= 0])


def process_bronze_batch(lakehouse: Lakehouse, listing: DataFrame, batch_id: int, silver_inline: bool = False,
                         gold_inline: bool = False) -> BatchEvent:
    """One bronze micro-batch: read the listed files on executors into bronze and, when ``silver_inline``,
    decode and inspect them in the same pass and write silver (and gold, when ``gold_inline``) from the
    driver: one Spark job from landing files to predictions, and the image bytes never reach the driver.

    Every table's write carries the transaction (bronze, batch id), so a replayed batch writes nothing twice.
    """
    config = lakehouse.config
    event = BatchEvent(QUERY_NAME, batch_id)
    clock = time.perf_counter()
    listed = _as_landing_entries(listing)  # the Spark path reads its seq column too
    if lakehouse.format == DELTA_RS_FORMAT:
        inspected, _ = _record_with_delta_rs(lakehouse, listed, batch_id, silver_inline)
    else:
        inspected = _record_with_spark(lakehouse, listed, batch_id, silver_inline)
    phases = {"read+inspect+bronze commit": time.perf_counter() - clock}
    event.input_rows = inspected.num_rows
    if event.input_rows == 0:
        return event
    missing = pc.equal(inspected.column("content_status"), "missing")
    gone = [short_ref(ref) for ref in inspected.filter(missing).column("path_ref").to_pylist()]
    event.output_rows = event.input_rows - len(gone)
    event.expectations = [{**BRONZE_EXPECTATION_COUNT, "failed": len(gone)}]
    notes = []
    if gone:
        # Path refs, never paths: events leave bronze (look a file up with bronze.path_ref LIKE 'ref%').
        notes.append(f"skipped {len(gone)} file(s) deleted before they were read (path_ref): " + ", ".join(
            gone[:5]) + (" ..." if len(gone) > 5 else ""))
    notes.extend(report_landing_problems(config))
    event.message = "; ".join(notes) or None
    times = [t for t in inspected.column(MODIFIED_COLUMN).to_pylist() if t is not None]
    newest = max(times) if times else None
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=dt.timezone.utc)
    event.backlog_files, event.backlog_bytes = landing_backlog(config.landing_dir, newest)
    events = [event.finish()]
    if silver_inline:
        from streaming.silver import batch as silver

        silver_event = BatchEvent(silver.QUERY_NAME, batch_id)
        new_images = silver.write_silver(lakehouse, inspected.filter(pc.invert(missing)), batch_id, QUERY_NAME,
                                         silver_event)
        events.append(silver_event.finish())
        phases["silver"] = time.perf_counter() - clock - sum(phases.values())
        if gold_inline:
            from streaming.gold import scoring as gold

            gold_event = gold.score_new_images(lakehouse, new_images, batch_id, QUERY_NAME, record=False)
            if gold_event is not None and gold_event.input_rows:
                events.append(gold_event)
            phases["gold"] = time.perf_counter() - clock - sum(phases.values())
    # One commit for the batch's events, last: a replay that finds it knows every layer wrote.
    record_events(lakehouse, events, (f"{QUERY_NAME}:events", batch_id))
    phases["events"] = time.perf_counter() - clock - sum(phases.values())
    if config.clean_source != "off":
        # After every table committed the batch: a replay finds them all committed and needs no file.
        clean_landing(config, inspected.filter(pc.invert(missing)).select(["path", SEQ_COLUMN]))
    log.debug("bronze batch %d phases: %s", batch_id, ", ".join(f"{k} {v:.3f} s" for k, v in phases.items()))
    return event
