"""One table's maintenance pass, with delta-rs alone or with Delta Lake's own commands through Spark:
compact small files (delta-rs's own bin plan), checkpoint and trim the log, LITE vacuum of tombstoned
files, and the never-committed files of killed attempts. `streaming.lakehouse.maintenance` runs these
passes over the lakehouse under its lock and reports them; why each step is safe beside a running stream
is said there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

log = logging.getLogger(__name__)

__all__ = [
    "COMPACT_MIN_FILES",
    "COMPACT_TARGET_BYTES",
    "DEFAULT_RETENTION_HOURS",
    "TableMaintenance",
    "compaction_bins",
    "maintain_with_delta_rs",
    "maintain_with_spark",
    "table_files",
]

DEFAULT_RETENTION_HOURS = 168  # Delta's default delta.deletedFileRetentionDuration (7 days)
# A table is compacted once it holds this many files below the target size: fewer are not worth a rewrite.
COMPACT_MIN_FILES = 10
COMPACT_TARGET_BYTES = 128 * 1024 * 1024
CHECKPOINT_MIN_COMMITS = 10  # JSON commits after the last checkpoint before maintenance writes one
LOG_DIR = "_delta_log"


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


def maintain_with_delta_rs(path: str, result: TableMaintenance, retention: int, min_age_hours: float, dry_run: bool) -> None:
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


def maintain_with_spark(spark: Any, path: str, result: TableMaintenance, retention: int, min_age_hours: float,
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
