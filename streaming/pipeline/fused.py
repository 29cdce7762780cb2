"""The one-pass micro-batch: landing files → bronze → silver → gold in one Spark job.

This is the only module that knows how the layers are fused. Executors (`streaming.pipeline.recorder`) read
each listed file once (`streaming.bronze.read`), write bronze's Parquet files themselves, inspect the bytes for
silver (`streaming.silver.inspect`) and score them with the champion (`streaming.gold.inline`) in the same
pass; the driver then commits bronze and writes silver and gold from the small results (no image bytes reach
the driver), and the batch's events in one last commit. With only bronze requested, the same pass skips the
inspection.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from streaming.bronze.labels import outside_label_folders, unlabelled_note
from streaming.bronze.read import (
    BRONZE_EXPECTATIONS,
    read_landing_files,
)
from streaming.bronze.refuse import REFUSED, refused_records
from streaming.bronze.source import (
    QUERY_NAME,
    clean_landing,
    landing_log_dir,
    landing_roots,
    report_landing_problems,
    report_replaced,
)
from streaming.core import profiling
from streaming.core.config import XrayConfig
from streaming.core.pseudonym import short_ref
from streaming.gold.inline import ExecutorScorer
from streaming.lakehouse.catalog import BRONZE_IMAGES, SILVER_METADATA
from streaming.lakehouse.deltars import (
    DeltaRsCommitMessage,
    WrittenFile,
    arrow_schema_of_spark,
    commit_files,
    remove_orphans,
)
from streaming.lakehouse.engine import Lakehouse, translate_errors
from streaming.lakehouse.enginechoice import DELTA_RS_FORMAT
from streaming.lakehouse.events import BatchEvent, record_events
from streaming.lakehouse.forgetlist import Forgotten, read_forget_list
from streaming.landing.backlog import landing_backlog
from streaming.landing.erase import erase_paths
from streaming.pipeline import alerting
from streaming.pipeline.recorder import (
    EXECUTOR_PROFILES,
    MODIFIED_COLUMN,
    OUTSIDE_COLUMN,
    SEQ_COLUMN,
    WRITTEN_FILES_COLUMN,
    as_landing_entries,
    record_and_inspect,
)
from streaming.quality.spark import apply_expectations, flag_expectations

log = logging.getLogger(__name__)

# Bronze counts its one rule from the commit (rows listed - rows written), sparing a pass over the bytes.
BRONZE_EXPECTATION_COUNT = {"table": BRONZE_IMAGES.name, "rule": BRONZE_EXPECTATIONS[0].name,
                            "action": BRONZE_EXPECTATIONS[0].action}


def _record_with_delta_rs(lakehouse: Lakehouse, listed: DataFrame, batch_id: int, silver_inline: bool,
                          forgotten: Forgotten, scorer: ExecutorScorer | None) -> tuple[pa.Table, bool]:
    """Executors write bronze files and inspect; the driver commits the files. (inspected rows, committed)"""
    from streaming.silver.expectations import silver_expectations

    config = lakehouse.config
    # Files an attempt killed between writing and committing left behind (found by their prefix).
    with profiling.timed("orphan check"):
        removed = remove_orphans(lakehouse.path(BRONZE_IMAGES.name), QUERY_NAME, batch_id)
    if removed:
        log.info("bronze batch %d: removed %d file(s) left by an interrupted attempt", batch_id, len(removed))
    job_started_at = time.time()
    with profiling.timed("Spark job (plan, executors, result to driver)"):
        recorded = record_and_inspect(listed, config, batch_id, lakehouse.path(BRONZE_IMAGES.name), silver_inline,
                                      forgotten, scorer)
        if silver_inline:
            recorded = flag_expectations(recorded, silver_expectations(config, forgotten.patients),
                                         SILVER_METADATA.name)
        plan_built_at = time.time()
        rows = recorded.toArrow()
    markers = [json.loads(text) for text in
               rows.filter(pc.is_valid(rows.column(WRITTEN_FILES_COLUMN))).column(WRITTEN_FILES_COLUMN).to_pylist()]
    files = [WrittenFile(**f) for marker in markers for f in marker["files"]]
    if profiling.enabled():
        EXECUTOR_PROFILES[batch_id] = [{**m["profile"], "job_started_at": job_started_at,
                                         "plan_built_at": plan_built_at, "job_ended_at": time.time()}
                                        for m in markers if "profile" in m]
    # A full disk at the commit names the table: delta-rs's own error carries no path.
    bronze_path = lakehouse.path(BRONZE_IMAGES.name)
    with translate_errors(BRONZE_IMAGES.name, bronze_path), profiling.timed(f"commit {BRONZE_IMAGES.name}"):
        committed = commit_files(bronze_path, BRONZE_IMAGES.schema,
                                 [DeltaRsCommitMessage(files=files)], "append", QUERY_NAME, batch_id)
    return rows.filter(pc.is_null(rows.column(WRITTEN_FILES_COLUMN))).drop_columns([WRITTEN_FILES_COLUMN]), committed


def _record_with_spark(lakehouse: Lakehouse, listed: DataFrame, batch_id: int, silver_inline: bool,
                       forgotten: Forgotten, scorer: ExecutorScorer | None) -> pa.Table:
    """The same through Spark's writer (native ``delta`` format): the read rows are cached, bronze is
    written from the cache and the inspection reads it again (no image bytes reach the driver)."""
    from streaming.silver.expectations import silver_expectations
    from streaming.silver.inspect import inspect_bronze_rows

    config = lakehouse.config
    rows = read_landing_files(listed, config.max_file_bytes, batch_id, config.patient_salt(),
                              landing_roots(config)).persist()
    try:
        refused = _refused_paths(rows, forgotten, config.patient_salt())
        kept = rows.filter(~F.col("path").isin(refused)) if refused else rows
        result = apply_expectations(kept, BRONZE_EXPECTATIONS, BRONZE_IMAGES.name, count=False)
        lakehouse.append(result.valid, BRONZE_IMAGES.name, txn=(QUERY_NAME, batch_id))
        inspected = (inspect_bronze_rows(rows, config) if silver_inline
                     else rows.select("path", "path_ref", "content_status", MODIFIED_COLUMN))
        if refused:  # marked before the rules are: a renamed copy of erased bytes names no forgotten patient
            inspected = inspected.withColumn("content_status", F.when(F.col("path").isin(refused), F.lit(REFUSED))
                                             .otherwise(F.col("content_status")))
        if silver_inline:
            if scorer is not None:
                inspected = scorer.score_dataframe(inspected)
            inspected = flag_expectations(inspected, silver_expectations(config, forgotten.patients),
                                          SILVER_METADATA.name)
        table = inspected.toArrow()
    finally:
        rows.unpersist()
    # Bronze rows do not carry the landing log's numbers: take them from the (small) listing.
    numbers = dict(zip(*listed.select("path", "seq").toArrow().to_pydict().values(), strict=True))
    return table.append_column(SEQ_COLUMN, pa.array([numbers.get(p) for p in table.column("path").to_pylist()],
                                                    pa.int64()))


def _refused_paths(rows: DataFrame, forgotten: Forgotten, key: str) -> list[str]:
    """Paths of the read rows the forget list refuses (executors look at the bytes)."""
    if not forgotten:
        return []
    schema = StructType([StructField("path", StringType())])

    def refused(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            records = batch.to_pylist()
            paths = [r["path"] for r, no in zip(records, refused_records(records, forgotten, key), strict=True) if no]
            yield pa.RecordBatch.from_pylist([{"path": p} for p in paths], schema=arrow_schema_of_spark(schema))

    selected = rows.select("path", "content", "content_status", "content_sha256")
    return [p for p in selected.mapInArrow(refused, schema).toArrow().column("path").to_pylist() if p]


def _describe_bronze(config: XrayConfig, inspected: pa.Table, missing: pa.ChunkedArray, refused: pa.ChunkedArray,
                     event: BatchEvent) -> dt.datetime | None:
    """Fill bronze's event: rows written, files gone before they were read, files of erased patients
    refused, landing problems, backlog. Returns the newest modification time the batch ingested."""
    gone = [short_ref(ref) for ref in inspected.filter(missing).column("path_ref").to_pylist()]
    refused_count = pc.sum(refused).as_py() or 0
    event.output_rows = event.input_rows - len(gone) - refused_count
    event.expectations = [{**BRONZE_EXPECTATION_COUNT, "failed": len(gone)}]
    notes = []
    if gone:
        # Path refs, never paths: events leave bronze (look a file up with bronze.path_ref LIKE 'ref%').
        notes.append(f"skipped {len(gone)} file(s) deleted before they were read (path_ref): " + ", ".join(
            gone[:5]) + (" ..." if len(gone) > 5 else ""))
    if refused_count:
        notes.append(f"refused {refused_count} file(s) of patients erased by xray forget (not stored; deleted "
                     "from landing; quarantined under patient_not_forgotten)")
    read = inspected.filter(pc.invert(pc.or_(missing, refused)))
    if OUTSIDE_COLUMN in read.column_names:  # judged by the executors
        stray_refs = read.filter(pc.fill_null(read.column(OUTSIDE_COLUMN), False)).column("path_ref").to_pylist()
    else:
        refs = read.column("path_ref").to_pylist()
        stray_refs = [refs[i] for i in outside_label_folders(config.landing_dir, read.column("path").to_pylist())]
    if stray_refs:
        notes.append(unlabelled_note(stray_refs))
        log.warning("bronze batch %d: %s", event.batch_id, notes[-1])
    notes.extend(report_replaced(config, inspected.column(SEQ_COLUMN).to_pylist(),
                                 inspected.column("path_ref").to_pylist()))
    notes.extend(report_landing_problems(config))
    event.message = "; ".join(notes) or None
    newest = pc.max(inspected.column(MODIFIED_COLUMN)).as_py()
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=dt.timezone.utc)
    event.backlog_files, event.backlog_bytes = landing_backlog(config.landing_dir, newest)
    return newest


def process_bronze_batch(lakehouse: Lakehouse, listing: DataFrame, batch_id: int, silver_inline: bool = False,
                         gold_inline: bool = False) -> BatchEvent:
    """One bronze micro-batch: read the listed files on executors into bronze and, when ``silver_inline``,
    decode and inspect them in the same pass and write silver (and gold, when ``gold_inline``) from the
    driver: one Spark job from landing files to predictions, and the image bytes never reach the driver.

    Every table's write carries the transaction (bronze, batch id), so a replay writes nothing twice.
    With profiling on (`streaming.core.profiling`) the batch's phases are written to the profile file.
    """
    if not profiling.enabled():
        return _process_bronze_batch(lakehouse, listing, batch_id, silver_inline, gold_inline)
    clock, cpu = time.perf_counter(), time.thread_time()
    with profiling.timed("other (driver)"):
        event = _process_bronze_batch(lakehouse, listing, batch_id, silver_inline, gold_inline)
    # The driver thread's CPU seconds: its serial work (Arrow, commits' Python side), unlike wall time
    # not inflated by waiting for a busy machine's cores.
    profiling.write_batch({"batch_id": batch_id, "images": event.input_rows,
                           "wall_seconds": time.perf_counter() - clock, "cpu_seconds": time.thread_time() - cpu,
                           "tasks": EXECUTOR_PROFILES.pop(batch_id, [])})
    return event


def _process_bronze_batch(lakehouse: Lakehouse, listing: DataFrame, batch_id: int, silver_inline: bool,
                          gold_inline: bool) -> BatchEvent:
    config = lakehouse.config
    event = BatchEvent(QUERY_NAME, batch_id)
    clock = time.perf_counter()
    listed = as_landing_entries(listing)  # the Spark path reads its seq column too
    # Read at every batch: an erasure (`xray forget`) is honoured from the next batch on.
    with profiling.timed("forget list read"):
        forgotten = read_forget_list(config)
    chosen = None
    if silver_inline and gold_inline:  # chosen before the pass: executors score with it
        from streaming.gold import inline

        with profiling.timed("champion (registry lookup, model shipped)"):
            chosen = inline.batch_champion(lakehouse)
    scorer = chosen.scorer if chosen is not None else None
    if lakehouse.format == DELTA_RS_FORMAT:
        inspected, _ = _record_with_delta_rs(lakehouse, listed, batch_id, silver_inline, forgotten, scorer)
    else:
        inspected = _record_with_spark(lakehouse, listed, batch_id, silver_inline, forgotten, scorer)
    phases = {"read+inspect+bronze commit": time.perf_counter() - clock}
    event.input_rows = inspected.num_rows
    if event.input_rows == 0:
        return event
    missing = pc.equal(inspected.column("content_status"), "missing")
    refused = pc.equal(inspected.column("content_status"), REFUSED)
    with profiling.timed("bronze event (landing backlog scan)"):
        newest = _describe_bronze(config, inspected, missing, refused, event)
    events = [event.finish()]
    if silver_inline:
        from streaming.pipeline.commit import commit_silver_and_gold

        events += commit_silver_and_gold(lakehouse, inspected.filter(pc.invert(missing)), batch_id, QUERY_NAME,
                                         forgotten, chosen)
        phases["silver and gold"] = time.perf_counter() - clock - sum(phases.values())
    # One commit for the batch's events, last: a replay that finds it knows every layer wrote.
    record_events(lakehouse, events, (f"{QUERY_NAME}:events", batch_id))
    phases["events"] = time.perf_counter() - clock - sum(phases.values())
    alerting.after_batch(config, events, newest)  # quarantine rate, drift: once the batch is committed
    with profiling.timed("clean landing"):
        _clean_batch(config, inspected, missing, refused)
    log.debug("bronze batch %d phases: %s", batch_id, ", ".join(f"{k} {v:.3f} s" for k, v in phases.items()))
    return event


def _clean_batch(config: XrayConfig, inspected: pa.Table, missing: pa.ChunkedArray, refused: pa.ChunkedArray) -> None:
    """After every table committed the batch (a replay finds them all committed and needs no file):
    ``clean_source`` for the files kept, and deletion, whatever ``clean_source`` says, of the files of
    erased patients (never archived: the erasure keeps their bytes off the lakehouse's disk)."""
    refused_rows = inspected.filter(refused)
    if refused_rows.num_rows:
        paths = refused_rows.column("path").to_pylist()
        clean_landing(config, paths, refused_rows.column(SEQ_COLUMN).to_pylist(), mode="delete")
        # Their raw paths name the patient: the landing log keeps their numbers, not their paths.
        erase_paths(landing_log_dir(config), set(paths).__contains__, config.landing_dir)
    if config.clean_source != "off":
        kept = inspected.filter(pc.invert(pc.or_(missing, refused)))
        clean_landing(config, kept.column("path").to_pylist(), kept.column(SEQ_COLUMN).to_pylist())


def process_silver_batch(lakehouse: Lakehouse, bronze_batch: DataFrame, batch_id: int,
                         gold_inline: bool = False) -> BatchEvent:
    """Silver re-reading bronze (`streaming.silver.batch.process_silver_batch`) and, when ``gold_inline``,
    gold scoring the batch's new images in the same micro-batch."""
    from streaming.gold import scoring as gold
    from streaming.silver import batch as silver

    event, new_images = silver.process_silver_batch(lakehouse, bronze_batch, batch_id)
    gold_event = None
    if gold_inline and new_images is not None:
        gold_event = gold.score_new_images(lakehouse, new_images, batch_id, silver.QUERY_NAME)
    alerting.after_batch(lakehouse.config, [event] + ([gold_event] if gold_event is not None else []))
    return event
