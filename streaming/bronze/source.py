"""Bronze's source: the landing folder as a stream (the project's landing source with the lakehouse's
settings), what the scan had to skip, and ``clean_source`` once a batch is committed."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError
from streaming.core.pseudonym import path_ref, short_ref

__all__ = ["QUERY_NAME", "clean_landing", "landing_log_dir", "landing_roots", "landing_stream",
           "modified_after_time", "report_landing_problems", "report_replaced"]

log = logging.getLogger(__name__)

QUERY_NAME = "bronze"


def landing_stream(spark: SparkSession, config: XrayConfig) -> DataFrame:
    """The landing folder as a stream of entries (path, modificationTime, length, status, target), from the
    project's own source (`streaming.landing.source`): exact paths, nothing outside landing opened."""
    from streaming.landing.source import LANDING_FORMAT

    config.landing_dir.mkdir(parents=True, exist_ok=True)
    after = modified_after_time(config)
    options = {
        "landing": str(config.landing_dir),
        "log": str(landing_log_dir(config)),
        "allowedRoots": json.dumps([str(Path(r).expanduser().resolve()) for r in config.landing_allowed_roots]),
        "modifiedAfterMs": "" if after is None else str(int(after.timestamp() * 1000)),
        # One task a core: every task pays a fixed cost (its Python workers' start, seconds on a loaded
        # machine: `xray bench --only profile`) that a second wave of tasks pays again; the source splits
        # a batch's files by size, so the tasks end together.
        "numPartitions": str(max(1, spark.sparkContext.defaultParallelism)),
        "cleanSource": config.clean_source,
        "allowOverwrites": str(config.allow_overwrites).lower(),
        "settleSeconds": str(config.landing_settle_seconds),
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


def report_landing_problems(config: XrayConfig) -> list[str]:
    """What the landing scan had to skip (unreadable folders, folder links inside landing, names that are
    not UTF-8): one WARNING line per problem and process, naming the folder by a keyed reference (`xray
    status` shows the folder itself); returns a note for the batch's event, or nothing."""
    from streaming.landing.log import read_problems

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


_reported_problems: set[tuple[str, str]] = set()


def report_replaced(config: XrayConfig, sequence_numbers: list[int | None], refs: list[str | None]) -> list[str]:
    """The batch's entries (landing log numbers, path refs alike) that replace a file ingested before under
    the same name (``allow_overwrites``): one INFO line naming them by path_ref, and a note for the batch's
    event; nothing when there are none. The earlier bronze row stays: silver and gold take the new content."""
    from streaming.landing.log import read_replaced

    batch = {seq for seq in sequence_numbers if seq is not None and seq >= 0}
    replaced = read_replaced(landing_log_dir(config)) if batch else {}
    hits = [short_ref(ref) for seq, ref in zip(sequence_numbers, refs, strict=True) if seq in replaced and ref]
    if not hits:
        return []
    shown = ", ".join(hits[:5]) + (" ..." if len(hits) > 5 else "")
    log.info("landing: %d file(s) replaced under the same name ingested again (path_ref %s)", len(hits), shown)
    return [f"re-ingested {len(hits)} file(s) replaced in landing under the same name (path_ref): {shown}"]


def clean_landing(config: XrayConfig, paths: list[str], sequence_numbers: list[int | None],
                  mode: str | None = None) -> None:
    """``clean_source`` (or ``mode``, "archive" or "delete"): move a batch's entries (path, landing log
    number) out of landing (to the same relative path under the archive folder) or delete them, and log
    them as cleaned so that the same name dropped again is a new file."""
    from streaming.landing.log import LandingLog
    from streaming.landing.source import clean

    for path in paths:
        clean(path, config.landing_dir, mode or config.clean_source, config.archive_dir)
    LandingLog.record_cleaned(landing_log_dir(config), [s for s in sequence_numbers if s is not None and s >= 0])
