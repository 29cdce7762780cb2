"""``xray maintain``: one maintenance pass over the tables (`streaming.lakehouse.maintenance`), printed as a
table, recorded as one ``pipeline_events`` row, with the size of each streaming checkpoint.

Runs beside a stream (it takes no lock: everything it does is safe against concurrent appends, see the
maintenance module) and needs no Spark session (delta-rs does the work and writes the row). An erasure an
interrupted `xray forget` left is finished first (`streaming.ops.forget`; not on a dry run).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError
from streaming.lakehouse.catalog import TABLES_BY_NAME
from streaming.lakehouse.maintenance import MaintenanceReport, maintain_tables, record_maintenance
from streaming.ops.forget import finish_pending_erasures
from streaming.ops.text import format_table

__all__ = ["checkpoint_sizes", "maintain_command", "render_report"]

WAIT_SECONDS = 600.0  # for a pass already running (the stream's own, a scheduled one) before giving up


def checkpoint_sizes(config: XrayConfig) -> list[tuple[str, int, int]]:
    """(query, files, bytes) of each streaming checkpoint folder under ``<root>/checkpoints``."""
    root = config.checkpoints_dir
    if not root.is_dir():
        return []
    sizes = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = size = 0
        for parent, _, names in os.walk(folder):
            for name in names:
                files += 1
                try:
                    size += (Path(parent) / name).stat().st_size
                except FileNotFoundError:  # Spark replaced it meanwhile
                    continue
        sizes.append((folder.name, files, size))
    return sizes


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f}"


def render_report(report: MaintenanceReport, checkpoints: Sequence[tuple[str, int, int]]) -> str:
    """The text ``xray maintain`` prints: one row per table, a total line, the checkpoint sizes."""
    title = ("xray maintain (dry run: nothing changed; what the pass would do)" if report.dry_run
             else "xray maintain")
    lines = [f"{title}: vacuum retention {report.retention_hours} h", ""]
    rows = [(t.table, f"{t.files_before} -> {t.files_after}",
             f"{_mb(t.bytes_before)} -> {'<=' if t.estimated else ''}{_mb(t.bytes_after)}",
             f"{t.log_files_before} -> {t.log_files_after}",
             f"{t.compacted} -> {t.compact_outputs}" if t.compacted else 0, t.vacuumed, t.orphans,
             f"failed: {t.error}" if t.error else "") for t in report.tables]
    if rows:
        lines += format_table(("table", "data files", "MB", "log files", "compacted", "vacuumed", "orphans", ""),
                              rows, (False, True, True, True, True, True, True, False))
    else:
        lines.append("  no table exists yet")
    lines += ["", *_totals(report)]
    if checkpoints:
        lines += ["", "STREAM CHECKPOINTS (offsets and commits keep the last 100 batches)"]
        lines += format_table(("query", "files", "MB"), [(q, n, _mb(b)) for q, n, b in checkpoints],
                              (False, True, True))
    return "\n".join(lines)


def _totals(report: MaintenanceReport) -> list[str]:
    """What the disk gets back (files deleted) and what compaction adds, said apart: compaction deletes
    nothing, so a pass that compacts grows the folder until a vacuum after the retention."""
    dry = report.dry_run
    deleted = sum(t.vacuumed + t.orphans for t in report.tables)
    lines = [f"{'would free' if dry else 'freed'} {report.bytes_freed / 1e6:.1f} MB ({deleted} file(s) deleted) "
             f"in {report.seconds:.1f} s; data files {report.files_before} -> {report.files_after}"]
    compacted = [t for t in report.tables if t.compacted]
    if compacted:
        rewritten, written = sum(t.compacted for t in compacted), sum(t.compact_outputs for t in compacted)
        size = sum(t.compact_bytes for t in compacted) / 1e6
        # At 0 h the pass's own vacuum deletes the replaced files; otherwise they wait for the retention.
        lines.append(f"compaction {'would rewrite' if dry else 'rewrote'} {rewritten} small file(s) ({size:.1f} MB) "
                     f"into {written}" + (f"; the replaced files stay for time travel until a vacuum after "
                                          f"{report.retention_hours} h" if report.retention_hours > 0 else ""))
    if dry and any(t.estimated for t in report.tables):
        lines.append("<=: compaction's files hold the same rows as the files they replace, in at most their size")
    return lines


def maintain_command(config: XrayConfig, tables: Sequence[str] | None = None,
                     retention_hours: int | None = None, dry_run: bool = False, spark: Any = None
                     ) -> MaintenanceReport:
    """Run one pass, print it, and record it in ``pipeline_events`` (not on a dry run). Without ``spark``
    delta-rs does the work (no Spark session); with a native-engine session, Delta Lake's OPTIMIZE/VACUUM.

    Waits up to WAIT_SECONDS for a pass already running (then `LakehouseBusyError`); raises `ConfigError`
    for an unknown table name.
    """
    unknown = sorted(set(tables or ()) - set(TABLES_BY_NAME))
    if unknown:
        raise ConfigError(f"unknown table {', '.join(unknown)}; choose from {', '.join(TABLES_BY_NAME)}")
    if not dry_run:
        finish_pending_erasures(config)  # an interrupted `xray forget` first: its vacuum is part of it
    report = maintain_tables(config, tables=list(tables) if tables else None, retention_hours=retention_hours,
                             dry_run=dry_run, wait_seconds=WAIT_SECONDS, spark=spark)
    print(render_report(report, checkpoint_sizes(config)))
    if not dry_run and report.tables:
        record_maintenance(config, report)
    return report
