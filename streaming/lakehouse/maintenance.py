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
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import first_line
from streaming.core.locks import held_lock
from streaming.lakehouse.catalog import ALL_TABLES
from streaming.lakehouse.tablepass import (
    DEFAULT_RETENTION_HOURS,
    TableMaintenance,
    compaction_bins,
    maintain_with_delta_rs,
    maintain_with_spark,
    table_files,
)

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

MAINTENANCE_LOCK = "maintenance.lock"


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
                maintain_with_spark(spark, path, result, retention, min_age, dry_run)
            else:
                maintain_with_delta_rs(path, result, retention, min_age, dry_run)
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
