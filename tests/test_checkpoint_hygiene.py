"""Keeping the bronze file source's state bounded without re-ingesting anything.

How Spark's file stream source (``FileStreamSource``) behaves, which these tests pin down:

* Every admitted file is appended to the source log (``checkpoints/bronze/sources/0``; every 10th batch is
  compacted into ``<id>.compact`` holding *all* entries: the log on disk is never purged).
* On start the source reads the whole log into its "seen files" map, then purges entries older than
  ``maxFileAge`` (config ``max_file_age``) **relative to the newest file it has seen, not to the clock**.
  From then on a listed file is new only when it is not in the map *and* is not older than that threshold,
  so a purged file still sitting in landing is not ingested again.
* On a fresh checkpoint the threshold starts at 0, so the first batch admits files of any age.
* ``maxFileAge`` is ignored when ``latestFirst`` is set together with ``maxFilesPerTrigger`` (bronze never
  sets ``latestFirst``).
* ``cleanSource`` (config ``clean_source = archive``) moves the files of batch N to
  ``<archive_dir>/<absolute landing path>`` when the *next* batch is planned, so the files of the last
  batch stay in landing until more files arrive (they are in the seen map, so they are not re-ingested).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from deltalake import DeltaTable
from imagefiles import jpeg_bytes, write, xray_like

from streaming.service import run_stream

HOUR = 3600.0


def bronze_paths(config) -> list[str]:
    table = DeltaTable(str(config.table_path("bronze_xray_images"))).to_pyarrow_table(columns=["path"])
    return sorted(table.column("path").to_pylist())


def stage(landing: Path, name: str, seed: int, age_seconds: float = 0.0) -> Path:
    """A valid image in landing whose modification time is ``age_seconds`` in the past."""
    path = write(landing / "train" / "NORMAL" / name, jpeg_bytes(xray_like(seed)))
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def run_bronze(spark, config):
    """One `xray stream --once` of the bronze layer; returns the (stopped) bronze query."""
    return run_stream(spark, config, layers=("bronze",), once=True).queries.get("bronze")


def seen_files(query) -> int | None:
    """Size of the file source's in-memory seen-files map (Spark internals; None when unreachable)."""
    try:
        return int(query._jsq.streamingQuery().sources().head().seenFiles().size())
    except Exception:  # noqa: BLE001 - internals of another Spark version: the row counts still decide
        return None


def test_max_file_age_purges_seen_files_without_reingesting(spark, config):
    config = config.with_overrides(max_file_age="1h", clean_source="off")
    landing = config.landing_dir
    old = [stage(landing, f"IM-000{i}-0001.jpeg", seed=i, age_seconds=3 * HOUR) for i in range(1, 3)]
    fresh = stage(landing, "IM-0003-0001.jpeg", seed=3)

    # A fresh checkpoint admits files of any age: the age threshold only exists once a file was seen.
    query = run_bronze(spark, config)
    ingested = bronze_paths(config)
    assert len(ingested) == 3
    size = seen_files(query)
    assert size in (None, 1), "the two 3-hour-old files are purged once the newest file is seen"

    # Restart: the log is read again and purged again; the old files are still in landing (cleanSource
    # off) and are older than newest - max_file_age, so they are not new although the map forgot them.
    query = run_bronze(spark, config)
    assert bronze_paths(config) == ingested
    assert seen_files(query) in (None, 1)
    assert all(path.exists() for path in [*old, fresh])

    # A file that arrives later is judged against the same threshold: a fresh one is ingested ...
    newer = stage(landing, "IM-0004-0001.jpeg", seed=4)
    run_bronze(spark, config)
    assert len(bronze_paths(config)) == 4
    assert any(p.endswith(newer.name) for p in bronze_paths(config))


def test_late_file_older_than_max_file_age_is_never_ingested(spark, config):
    """The price of max_file_age: a file dropped with an old modification time (``cp -p``, ``rsync -t``, an
    archive extracted with its dates) after newer files were seen is skipped for good. Staging through
    ``xray ingest-folder``/``ingest-kaggle``/``watch`` sets the modification time to now for this reason."""
    config = config.with_overrides(max_file_age="1h")
    stage(config.landing_dir, "IM-0001-0001.jpeg", seed=1)
    run_bronze(spark, config)
    assert len(bronze_paths(config)) == 1

    late = stage(config.landing_dir, "IM-0002-0001.jpeg", seed=2, age_seconds=2 * HOUR)
    run_bronze(spark, config)
    run_bronze(spark, config)
    assert len(bronze_paths(config)) == 1
    assert late.exists()

    os.utime(late)  # touched: now within the window, and never seen
    run_bronze(spark, config)
    assert len(bronze_paths(config)) == 2


def test_archived_files_leave_landing_and_are_not_reingested(spark, config):
    config = config.with_overrides(clean_source="archive", max_file_age="1h")
    landing = config.landing_dir
    first = [stage(landing, f"IM-000{i}-0001.jpeg", seed=10 + i, age_seconds=3 * HOUR) for i in range(1, 4)]
    contents = {path: path.read_bytes() for path in first}

    run_bronze(spark, config)
    assert len(bronze_paths(config)) == 3
    # Spark archives a batch's files when it plans the next batch: nothing has moved yet.
    assert all(path.exists() for path in first)

    second = stage(landing, "IM-0004-0001.jpeg", seed=14)
    run_bronze(spark, config)
    assert len(bronze_paths(config)) == 4
    for path in first:
        archived = config.archive_dir / path.relative_to("/")
        assert not path.exists(), f"{path} was not moved out of landing"
        assert archived.read_bytes() == contents[path]
    assert second.exists(), "the last batch's file is archived by the next batch"

    # Restarts with nothing new: the seen-files map is purged (first files are 3 h older than the newest),
    # the first files are gone from landing and the last one is still known: nothing is ingested again.
    for _ in range(2):
        query = run_bronze(spark, config)
        assert len(bronze_paths(config)) == 4
        assert seen_files(query) in (None, 1)
    assert not any(path.exists() for path in first)
