"""Table maintenance: compact small files, checkpoint and trim the Delta log, vacuum replaced files after the
retention period, and remove the files killed attempts left behind. With delta-rs alone (no Spark), or,
given a session with the native engine, with Delta Lake's own OPTIMIZE and VACUUM LITE (its commits then
checkpoint and trim the log themselves, every 10 commits).

Safe while a stream writes (see README: Maintenance):

- compaction commits rewrite files with ``dataChange=false`` and carry no application transaction; a
  concurrent append is a blind append, which delta-rs's conflict checker lets through (and our streaming
  source skips such commits, so no row is read twice);
- vacuum runs in delta-rs's LITE mode: it deletes only files a remove action (tombstone) names, never a
  file the log does not know. The files a running batch has written but not yet committed are such files,
  which a FULL vacuum with a short retention would delete (delta-rs #3645);
- orphans (files neither the snapshot nor a tombstone names) are deleted only once older than
  ``orphan_min_age_hours``, longer than any batch takes between writing a file and committing it;
- one pass at a time per lakehouse (`maintenance_lock`): two concurrent compactions would double rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from streaming.core.config import XrayConfig
from streaming.core.errors import first_line
from streaming.core.locks import held_lock
from streaming.lakehouse.catalog import ALL_TABLES

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RETENTION_HOURS",
    "MAINTENANCE_QUERY",
    "MaintenanceReport",
    "TableMaintenance",
    "compaction_bins",
    "maintain_tables",
    "maintenance_lock",
    "record_maintenance",
    "table_files",
]

DEFAULT_RETENTION_HOURS = 168  # Delta's default delta.deletedFileRetentionDuration (7 days)
# A table is compacted once it holds this many files below the target size: fewer are not worth a rewrite.
COMPACT_MIN_FILES = 10
COMPACT_TARGET_BYTES = 128 * 1024 * 1024
CHECKPOINT_MIN_COMMITS = 10  # JSON commits after the last checkpoint before maintenance writes one
LOG_DIR = "_delta_log"
MAINTENANCE_LOCK = "maintenance.lock"


@dataclass
class TableMaintenance:
    """What maintenance did to one table (``dry_run``: what it would do). Data files are the Parquet files
    in the table folder (referenced or not); log files are the entries of ``_delta_log``."""

    table: str
    files_before: int = 0
    bytes_before: int = 0
    files_after: int = 0
    bytes_after: int = 0
    log_files_before: int = 0
    log_files_after: int = 0
    compacted: int = 0  # small files rewritten into larger ones
    compact_outputs: int = 0  # the larger files compaction wrote
    compact_bytes: int = 0  # bytes of the small files it rewrote (about what it writes again)
    vacuumed: int = 0  # replaced files deleted after the retention period
    orphans: int = 0  # never-committed files deleted
    deleted_bytes: int = 0  # of the vacuumed files and orphans (what a dry run would free)
    checkpoint: bool = False
    seconds: float = 0.0
    error: str | None = None
    estimated: bool = False  # a dry run that would compact: the size after is an estimate

    @property
    def bytes_freed(self) -> int:
        """Bytes deleted (vacuumed and orphan files): what the disk gets back. Compaction adds the larger
        files at once and deletes nothing: the files it replaced wait for a vacuum after the retention."""
        return self.deleted_bytes


@dataclass
class MaintenanceReport:
    """One maintenance pass over the lakehouse's tables."""

    tables: list[TableMaintenance] = field(default_factory=list)
    retention_hours: int = DEFAULT_RETENTION_HOURS
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def files_before(self) -> int:
        return sum(t.files_before for t in self.tables)

    @property
    def files_after(self) -> int:
        return sum(t.files_after for t in self.tables)

    @property
    def bytes_freed(self) -> int:
        return sum(t.bytes_freed for t in self.tables)

    @property
    def errors(self) -> list[TableMaintenance]:
        return [t for t in self.tables if t.error]

    def summary(self) -> str:
        """One line: what the pass did (for logs and the ``pipeline_events`` message)."""
        verb = "would free" if self.dry_run else "freed"
        parts = [f"{len(self.tables)} table(s)", f"data files {self.files_before} -> {self.files_after}",
                 f"{verb} {self.bytes_freed / 1e6:.1f} MB",
                 f"compacted {sum(t.compacted for t in self.tables)} into {sum(t.compact_outputs for t in self.tables)}",
                 f"vacuumed {sum(t.vacuumed for t in self.tables)}",
                 f"orphans {sum(t.orphans for t in self.tables)}",
                 f"retention {self.retention_hours} h", f"{self.seconds:.1f} s"]
        if self.errors:
            parts.append(f"failed: {', '.join(t.table for t in self.errors)}")
        return ", ".join(parts)


def table_files(path: str) -> tuple[int, int, int]:
    """(data files, their bytes, _delta_log entries) of a table folder, from a listing."""
    files = size = 0
    for folder, subfolders, names in os.walk(path):
        subfolders[:] = [d for d in subfolders if not d.startswith(("_", "."))]
        for name in names:
            if name.endswith(".parquet"):
                files += 1
                size += _size(os.path.join(folder, name))
    try:
        log_files = len(os.listdir(os.path.join(path, LOG_DIR)))
    except FileNotFoundError:
        log_files = 0
    return files, size, log_files


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:  # removed meanwhile (a concurrent vacuum)
        return 0


def maintenance_lock(root: Path, wait_seconds: float = 0.0) -> contextlib.AbstractContextManager[None]:
    """Hold ``<root>/_locks/maintenance.lock`` (an flock: released when the process dies) while the block
    runs, waiting up to ``wait_seconds`` for a pass that holds it; `LakehouseBusyError` after that.

    One pass at a time per lakehouse: delta-rs 1.6 lets two compactions of the same snapshot both commit,
    and the second one adds the rows a second time (its conflict check misses the files the first removed).
    """
    return held_lock(
        root / "_locks" / MAINTENANCE_LOCK,
        lambda holder: (f"a maintenance pass on {root} is running ({holder}); it does the same work: let it "
                        "finish, or run xray maintain again later"),
        wait_seconds, lambda holder: log.info("maintenance: waiting for the pass of %s", holder))


def maintain_tables(config: XrayConfig, tables: Sequence[str] | None = None,
                    retention_hours: int | None = None, dry_run: bool = False,
                    orphan_min_age_hours: float | None = None,
                    should_stop: Callable[[], bool] | None = None, wait_seconds: float = 0.0,
                    spark: Any = None) -> MaintenanceReport:
    """Maintain each existing table (all declared ones, or ``tables``); see the module docstring.

    A table that fails is reported with its error and the others are still maintained. ``should_stop``
    is asked before each table (a stream stopping ends the pass between tables). Holds the maintenance
    lock (`maintenance_lock`, waiting up to ``wait_seconds`` for another pass; a dry run takes none).
    ``spark``: a session whose lakehouse uses the native engine; compaction and vacuum are then Delta
    Lake's own (``OPTIMIZE``, ``VACUUM ... LITE``).
    """
    if dry_run:
        return _maintain_tables(config, tables, retention_hours, dry_run, orphan_min_age_hours, should_stop, spark)
    with maintenance_lock(config.root, wait_seconds):
        return _maintain_tables(config, tables, retention_hours, dry_run, orphan_min_age_hours, should_stop, spark)


def _maintain_tables(config: XrayConfig, tables: Sequence[str] | None, retention_hours: int | None,
                     dry_run: bool, orphan_min_age_hours: float | None,
                     should_stop: Callable[[], bool] | None, spark: Any) -> MaintenanceReport:
    from deltalake import DeltaTable

    started = time.monotonic()
    retention = config.vacuum_retention_hours if retention_hours is None else retention_hours
    min_age = config.orphan_min_age_hours if orphan_min_age_hours is None else orphan_min_age_hours
    if retention < DEFAULT_RETENTION_HOURS:
        log.warning("maintenance: vacuum retention %d h is below %d h: time travel, a replay after a crash and "
                    "a separate silver or gold stream lagging longer than that may miss files",
                    retention, DEFAULT_RETENTION_HOURS)
    report = MaintenanceReport(retention_hours=retention, dry_run=dry_run)
    for name in tables or [spec.name for spec in ALL_TABLES]:
        path = str(config.table_path(name))
        if should_stop is not None and should_stop():
            break
        if not DeltaTable.is_deltatable(path):
            continue
        result = TableMaintenance(name)
        clock = time.monotonic()
        result.files_before, result.bytes_before, result.log_files_before = table_files(path)
        result.files_after, result.bytes_after, result.log_files_after = (
            result.files_before, result.bytes_before, result.log_files_before)
        try:
            if spark is not None:
                _maintain_native(spark, path, result, retention, min_age, dry_run)
            else:
                _maintain(path, result, retention, min_age, dry_run)
        except Exception as error:  # one table's failure must not stop the others
            result.error = first_line(error)
            log.warning("maintenance: table %s: %s", name, result.error)
        if not dry_run:  # a dry run's "after" is the plan's (`_predict`): what the pass would leave
            result.files_after, result.bytes_after, result.log_files_after = table_files(path)
        result.seconds = time.monotonic() - clock
        # DEBUG: `xray maintain` prints the table and the stream logs the pass's summary; INFO would say it twice.
        log.debug("maintenance: %s: data files %d -> %d, %.1f MB -> %.1f MB, log files %d -> %d, compacted %d "
                  "into %d, vacuumed %d, orphans %d%s", name, result.files_before, result.files_after,
                  result.bytes_before / 1e6, result.bytes_after / 1e6, result.log_files_before,
                  result.log_files_after, result.compacted, result.compact_outputs, result.vacuumed, result.orphans,
                  " (dry run)" if dry_run else "")
        report.tables.append(result)
    report.seconds = time.monotonic() - started
    return report


def _maintain(path: str, result: TableMaintenance, retention: int, min_age_hours: float, dry_run: bool) -> None:
    """One table's pass; on a dry run, the same plan without its actions, and what it would leave."""
    from deltalake import DeltaTable

    table = DeltaTable(path)
    bins = compaction_bins(table)
    rewritten = [file for group in bins for file in group]
    compacting = len(rewritten) >= COMPACT_MIN_FILES
    if compacting:
        result.compacted, result.compact_outputs = len(rewritten), len(bins)
        result.compact_bytes = sum(size for _, size in rewritten)
        if not dry_run:
            metrics = table.optimize.compact(target_size=COMPACT_TARGET_BYTES)
            result.compacted = int(metrics.get("numFilesRemoved", 0))
            result.compact_outputs = int(metrics.get("numFilesAdded", 0))
            table = DeltaTable(path)
    version = table.version() + (1 if compacting and dry_run else 0)
    if dry_run:
        result.checkpoint = _checkpoint_due(path, version)
    else:
        result.checkpoint = _checkpoint(table, path)
        table.cleanup_metadata()  # commits older than delta.logRetentionDuration (default 30 days)
    enforce = retention >= _table_retention_hours(table)
    # delta-rs lists a tombstone's file again after it is gone (until the tombstone expires), and a vacuum
    # commits twice (VACUUM START/END) even then: only the files still there count, and none, no vacuum.
    expired = [f for f in table.vacuum(retention, dry_run=True, enforce_retention_duration=enforce, full=False)
               if os.path.exists(os.path.join(path, f))]
    if dry_run and compacting and retention == 0:
        expired += [f for f, _ in rewritten]  # tombstoned now: a vacuum at 0 h deletes them in the same pass
    result.deleted_bytes = sum(_size(os.path.join(path, f)) for f in expired)
    if expired and not dry_run:
        table.vacuum(retention, dry_run=False, enforce_retention_duration=enforce, full=False)
    result.vacuumed = len(expired)
    orphans = _remove_orphans(table, path, min_age_hours, dry_run)
    result.orphans = len(orphans)
    result.deleted_bytes += sum(size for _, size in orphans)
    if dry_run:
        _predict(result, compacting, bool(expired), path)


def _predict(result: TableMaintenance, compacting: bool, vacuuming: bool, path: str) -> None:
    """What the pass would leave (dry run): compaction adds its files and deletes none; vacuum and the orphan
    clean-up delete theirs; the log gains the compaction's commit, a checkpoint (and ``_last_checkpoint``
    the first time) and the vacuum's two commits."""
    result.files_after = result.files_before + result.compact_outputs - result.vacuumed - result.orphans
    # The rewritten rows take about the bytes they took: an estimate (compression differs a little).
    result.bytes_after = result.bytes_before + result.compact_bytes - result.deleted_bytes
    result.estimated = compacting
    first_checkpoint = not os.path.exists(os.path.join(path, LOG_DIR, "_last_checkpoint"))
    result.log_files_after = (result.log_files_before + (1 if compacting else 0) + (2 if vacuuming else 0)
                              + ((2 if first_checkpoint else 1) if result.checkpoint else 0))


def _maintain_native(spark: Any, path: str, result: TableMaintenance, retention: int, min_age_hours: float,
                     dry_run: bool) -> None:
    """The same with Delta Lake's own commands. VACUUM in LITE mode for the reason given above (it deletes
    only what a tombstone names); the orphans are then ours to remove, as with delta-rs."""
    from delta.tables import DeltaTable as SparkDeltaTable
    from deltalake import DeltaTable

    small = [file for group in compaction_bins(DeltaTable(path)) for file in group]  # delta-rs's plan
    if len(small) >= COMPACT_MIN_FILES:
        if dry_run:
            result.compacted = len(small)
        else:
            metrics = SparkDeltaTable.forPath(spark, path).optimize().executeCompaction().collect()
            result.compacted = int(metrics[0]["metrics"]["numFilesRemoved"]) if metrics else 0
    quoted = path.replace("`", "``")
    # Delta refuses a retention below the table's own unless this check is off (delta-rs: enforce=False).
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    enforce = retention >= _table_retention_hours(DeltaTable(path))
    previous = spark.conf.get(check, "true")
    spark.conf.set(check, str(enforce).lower())
    try:
        listed = spark.sql(f"VACUUM delta.`{quoted}` LITE RETAIN {retention} HOURS DRY RUN").collect()
        expired = [p for p in (row[0].removeprefix("file:") for row in listed) if os.path.exists(p)]
        result.deleted_bytes = sum(_size(p) for p in expired)
        if expired and not dry_run:
            spark.sql(f"VACUUM delta.`{quoted}` LITE RETAIN {retention} HOURS").collect()
    finally:
        spark.conf.set(check, previous)
    result.vacuumed = len(expired)
    orphans = _remove_orphans(DeltaTable(path), path, min_age_hours, dry_run)
    result.orphans = len(orphans)
    result.deleted_bytes += sum(size for _, size in orphans)


def compaction_bins(table) -> list[list[tuple[str, int]]]:  # deltalake.DeltaTable
    """The files delta-rs's compaction (``optimize.compact``) rewrites together, one larger file per group:
    its own plan (delta-rs ``build_compaction_plan``), per partition, files of at most the target size,
    largest first, each into the first group it fits in; a group of one file is left alone. The pass
    compacts when these hold COMPACT_MIN_FILES files, and a dry run predicts from the same groups."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    partitions = [name for name in actions.column_names if name.startswith("partition.")]
    by_partition: dict[tuple, list[tuple[str, int]]] = {}
    for row in actions.select(["path", "size_bytes", *partitions]).to_pylist():
        if row["size_bytes"] <= COMPACT_TARGET_BYTES:
            key = tuple(str(row[name]) for name in partitions)
            by_partition.setdefault(key, []).append((row["path"], int(row["size_bytes"])))
    groups: list[list[tuple[str, int]]] = []
    for files in by_partition.values():
        bins: list[list[tuple[str, int]]] = [[]]
        sizes = [0]
        for file in sorted(files, key=lambda f: -f[1]):
            index = next((i for i, size in enumerate(sizes) if size + file[1] <= COMPACT_TARGET_BYTES), None)
            if index is None:
                bins.append([])
                sizes.append(0)
                index = len(bins) - 1
            bins[index].append(file)
            sizes[index] += file[1]
        groups += [group for group in bins if len(group) > 1]
    return groups


def _checkpoint_due(path: str, version: int) -> bool:
    """Whether `_checkpoint` would write one at ``version``."""
    try:
        with open(os.path.join(path, LOG_DIR, "_last_checkpoint")) as handle:
            last = int(json.load(handle)["version"])
    except (FileNotFoundError, ValueError, KeyError):
        last = -1
    return version - last >= CHECKPOINT_MIN_COMMITS


def _checkpoint(table, path: str) -> bool:  # deltalake.DeltaTable
    """Checkpoint the current version once CHECKPOINT_MIN_COMMITS commits followed the last checkpoint:
    readers then start from it instead of replaying every JSON commit, and `cleanup_metadata` may drop
    the commits before it. (delta-rs also writes one every 100 commits by itself.) A table with a few
    commits is left alone: its checkpoint would only add two files."""
    if not _checkpoint_due(path, table.version()):
        return False
    table.create_checkpoint()
    return True


def _table_retention_hours(table) -> float:  # deltalake.DeltaTable
    """The table's delta.deletedFileRetentionDuration in hours (``interval 7 days``), else 168."""
    value = (table.metadata().configuration or {}).get("delta.deletedFileRetentionDuration", "")
    match = re.fullmatch(r"\s*interval\s+(\d+)\s+(hour|day|week)s?\s*", value or "", re.IGNORECASE)
    if not match:
        return DEFAULT_RETENTION_HOURS
    return int(match.group(1)) * {"hour": 1, "day": 24, "week": 168}[match.group(2).lower()]


def _remove_orphans(table, path: str, min_age_hours: float, dry_run: bool
                    ) -> list[tuple[str, int]]:
    """Delete the Parquet files of the table folder that neither the snapshot nor a tombstone names and
    that are older than ``min_age_hours``: files of an attempt killed between writing and committing.

    Never anything under ``_delta_log`` (or another ``_``/``.`` folder), never a file that is not Parquet.
    A younger unreferenced file may belong to a batch still running, which commits it later. Returns
    (path relative to the table, bytes) of each file removed (to be removed on a dry run).
    """
    referenced = set(pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist())
    # The tombstoned files still present: LITE vacuum's dry run at retention 0 lists exactly them.
    referenced.update(table.vacuum(0, dry_run=True, enforce_retention_duration=False, full=False))
    deadline = time.time() - min_age_hours * 3600
    removed = []
    for folder, subfolders, names in os.walk(path):
        subfolders[:] = [d for d in subfolders if not d.startswith(("_", "."))]
        for name in names:
            full = os.path.join(folder, name)
            relative = os.path.relpath(full, path)
            if not name.endswith(".parquet") or relative in referenced:
                continue
            try:
                stat = os.stat(full)
                if stat.st_mtime >= deadline:
                    continue
                if not dry_run:
                    os.remove(full)
            except FileNotFoundError:
                continue
            removed.append((relative, stat.st_size))
    if removed:
        log.info("maintenance: %s: %s %d never-committed file(s) older than %.2f h", os.path.basename(path),
                 "would remove" if dry_run else "removed", len(removed), min_age_hours)
    return removed


MAINTENANCE_QUERY = "maintenance"  # the `query` of its pipeline_events rows (batch_id -1: no micro-batch)


def record_maintenance(config: XrayConfig, report: MaintenanceReport) -> bool:
    """Append one ``pipeline_events`` row for a maintenance pass (not idempotent: each pass is one row).

    input_rows and output_rows are the data files before and after; the message is `summary`. Written
    with delta-rs (`streaming.lakehouse.direct`): no Spark session is needed. Returns False when there is
    no ``pipeline_events`` table yet (no stream ever ran).
    """
    from deltalake import DeltaTable

    from streaming.lakehouse.catalog import PIPELINE_EVENTS
    from streaming.lakehouse.direct import append_rows
    from streaming.lakehouse.events import BatchEvent

    if not DeltaTable.is_deltatable(str(config.table_path(PIPELINE_EVENTS.name))):
        return False
    event = BatchEvent(MAINTENANCE_QUERY, -1, input_rows=report.files_before, output_rows=report.files_after,
                       message=report.summary(), duration_ms=int(report.seconds * 1000))
    append_rows(config, PIPELINE_EVENTS.name, [event.as_row()])
    return True
