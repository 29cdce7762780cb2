"""Whether ``xray stream --once`` has anything to do, decided from files and Delta logs before Spark starts.

An idle ``--once`` used to start a JVM, run an empty micro-batch and end 15 s later without a word. Here it
ends in about a second with one line when every check below says there is nothing to do; when any of them
cannot tell, the stream runs as always (and says at its end whether anything was new). The checks are
those of a start: the tables' logs (`check_table_logs`) and the checkpoints against the tables
(`check_checkpoints`, whose error says to run ``xray recover``) raise as they would. Then nothing may be
pending: the bronze query's last planned batch is committed (no replay), every entry the landing log holds
is in a committed batch, every file in landing is the logged version (a new or changed file is work), and,
when gold runs in bronze's batches, every silver image has a prediction (none waits for a champion).
Erasures (`xray forget`) act on files a batch reads: with no batch, nothing is read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from streaming.core.checkpoints import newest_batch
from streaming.core.config import XrayConfig
from streaming.core.locks import stream_lock
from streaming.lakehouse.catalog import ALL_TABLES, GOLD_PREDICTIONS, SILVER_FEATURES
from streaming.lakehouse.failures import check_table_logs
from streaming.landing.log import LandingLog
from streaming.landing.scan import scan_landing
from streaming.pipeline.consistency import check_checkpoints
from streaming.pipeline.plan import plan_queries

__all__ = ["nothing_to_do"]

BRONZE = "bronze"  # the bronze query's name (`streaming.bronze.source.QUERY_NAME`)


def nothing_to_do(config: XrayConfig, layers: Sequence[str]) -> str | None:
    """The line ``xray stream --once`` prints instead of starting Spark, or None when it may have work."""
    plan = plan_queries(layers)
    if list(plan) != [BRONZE]:
        return None  # silver or gold alone read Delta streams: Spark's sources decide
    if not all((config.table_path(spec.name) / "_delta_log").is_dir() for spec in ALL_TABLES):
        return None  # a first run (or a table to create)
    with stream_lock(config.root):  # a running stream is refused as the stream itself would be
        check_table_logs(config.tables_dir, [spec.name for spec in ALL_TABLES])
        check_checkpoints(config)
        checkpoint = config.checkpoint_path(BRONZE)
        committed = newest_batch(checkpoint / "commits")
        if committed is None or newest_batch(checkpoint / "offsets") != committed:
            return None  # never ran, or a batch to replay
        files = _landing_files(config, checkpoint, committed)
        if files is None:
            return None
        if "gold" in plan[BRONZE] and _unscored(config):
            return None
    waiting = ", no image waiting for a prediction" if "gold" in plan[BRONZE] else ""
    return (f"nothing new: the {files} file(s) in landing were all ingested, no batch to replay{waiting}; "
            f"drop images into {config.landing_dir}/<split>/<LABEL>/ (or unlabelled/) and run it again")


def _landing_files(config: XrayConfig, checkpoint: Path, committed: int) -> int | None:
    """How many input files landing holds when all of them are logged as they are now and every logged
    entry is in a committed batch; None otherwise (a new or changed file, an entry not yet in a batch)."""
    log_folder = checkpoint / "landing"
    end = _committed_end(checkpoint / "offsets" / str(committed))
    if end is None or not log_folder.is_dir():
        return None
    log = LandingLog(log_folder)
    if len(log.entries) != end:
        return None
    from streaming.bronze.source import landing_roots, modified_after_time

    after = modified_after_time(config)
    found, _ = scan_landing(config.landing_dir, landing_roots(config)[1:],
                            None if after is None else int(after.timestamp() * 1000))
    if not found:
        return 0
    if config.clean_source != "off":
        return None  # ingested files leave landing: one still there may be a new one
    # The source's own rule (`LandingLog.unlogged`): a new file, or another version of a logged one
    # (size, mtime in ns, inode), is work for Spark.
    if log.unlogged(found, overwrites=config.allow_overwrites):
        return None
    return len(found)


def _committed_end(offsets_file: Path) -> int | None:
    """The landing position a batch ended at: ``offsets/N`` is a version line, the batch's metadata, then
    one offset per source (ours ``{"seq": n}``)."""
    try:
        lines = offsets_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines[2:]:
        try:
            offset = json.loads(line)
        except ValueError:
            continue
        if isinstance(offset, dict) and isinstance(offset.get("seq"), int):
            return offset["seq"]
    return None


def _unscored(config: XrayConfig) -> bool:
    """Whether a silver image has no prediction (it waits for a champion, or for the catch-up)."""
    from streaming.lakehouse.tables import read_arrow

    def ids(name: str) -> set:
        table = read_arrow(config, name, columns=["image_id"])
        return set() if table is None else set(table.column("image_id").cast("string").to_pylist())

    return bool(ids(SILVER_FEATURES.name) - ids(GOLD_PREDICTIONS.name))
