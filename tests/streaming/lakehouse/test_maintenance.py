"""Table maintenance on real Delta tables written in many small commits (delta-rs, no Spark)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from streaming.lakehouse.catalog import PIPELINE_EVENTS
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent
from streaming.lakehouse.maintenance import (
    maintain_tables,
    record_maintenance,
    table_files,
)
from streaming.lakehouse.tablepass import COMPACT_MIN_FILES

COMMITS = COMPACT_MIN_FILES + 5
EVENTS = PIPELINE_EVENTS.name


@pytest.fixture
def house(spark, config) -> Lakehouse:
    """A Lakehouse (delta-rs) whose pipeline_events holds COMMITS one-row commits."""
    house = Lakehouse(spark, config)
    for batch in range(COMMITS):
        house.append_rows(EVENTS, [BatchEvent("bronze", batch, input_rows=batch).as_row()], txn=("t", batch))
    return house


def _batch_ids(path: Path) -> list[int]:
    return sorted(DeltaTable(str(path)).to_pyarrow_table(columns=["batch_id"]).column("batch_id").to_pylist())


def _referenced_files_exist(path: Path) -> bool:
    return all(os.path.exists(path / p) for p in DeltaTable(str(path)).get_add_actions(flatten=True)["path"]
               .to_pylist())


def _age(path: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


@pytest.mark.engine_dependent
def test_compaction_keeps_every_row_and_default_retention_keeps_the_replaced_files(house, config, delta_engine):
    path = config.table_path(EVENTS)
    before = table_files(str(path))
    last_append = DeltaTable(str(path)).version()
    report = maintain_tables(config, tables=[EVENTS])
    result = report.tables[0]
    assert result.compacted == COMMITS
    assert len(DeltaTable(str(path)).file_uris()) == 1
    assert _batch_ids(path) == list(range(COMMITS))
    # The replaced files were removed a moment ago: 168 h retention keeps them for time travel.
    assert result.vacuumed == 0 and result.orphans == 0
    assert table_files(str(path))[0] == before[0] + 1
    assert DeltaTable(str(path), version=last_append - 1).to_pyarrow_table().num_rows == COMMITS - 1  # time travel
    if delta_engine == "delta-spark":  # Delta Lake writes its own log checkpoints, every 10 commits
        assert list((path / "_delta_log").glob("*.checkpoint.parquet"))
    else:
        assert result.checkpoint
        assert (path / "_delta_log" / f"{DeltaTable(str(path)).version():020d}.checkpoint.parquet").exists()
    assert DeltaTable(str(path)).transaction_version("t") == COMMITS - 1  # app transactions survive


@pytest.mark.engine_dependent
def test_vacuum_at_zero_retention_frees_the_replaced_files(house, config):
    path = config.table_path(EVENTS)
    report = maintain_tables(config, tables=[EVENTS], retention_hours=0)
    result = report.tables[0]
    assert result.vacuumed == COMMITS
    assert result.files_before == COMMITS and result.files_after == 1
    assert result.bytes_after < result.bytes_before and report.bytes_freed == result.bytes_freed > 0
    assert _referenced_files_exist(path)
    assert _batch_ids(path) == list(range(COMMITS))
    again = maintain_tables(config, tables=[EVENTS], retention_hours=0).tables[0]  # nothing left to do
    assert (again.compacted, again.vacuumed, again.files_after) == (0, 0, 1)


@pytest.mark.engine_dependent
def test_below_the_threshold_nothing_is_compacted(spark, config):
    house = Lakehouse(spark, config)
    for batch in range(3):
        house.append_rows(EVENTS, [BatchEvent("bronze", batch).as_row()])
    result = maintain_tables(config, retention_hours=0).tables[0]
    assert (result.table, result.compacted, result.files_after) == (EVENTS, 0, 3)
    assert not result.checkpoint and result.log_files_after == result.log_files_before  # too few commits


def test_orphans_old_removed_young_kept_log_and_other_files_untouched(house, config):
    path = config.table_path(EVENTS)
    some_file = next(p for p in path.iterdir() if p.suffix == ".parquet")
    old, young = path / "part-txn-killed-old.parquet", path / "part-txn-killed-young.parquet"
    for planted in (old, young):
        shutil.copy(some_file, planted)
    not_parquet = path / "notes.txt"
    not_parquet.write_text("kept")
    in_log = path / "_delta_log" / "stray.parquet"
    shutil.copy(some_file, in_log)
    for planted in (old, not_parquet, in_log):
        _age(planted, 10)
    dry = maintain_tables(config, tables=[EVENTS], dry_run=True).tables[0]
    assert dry.orphans == 1 and old.exists()  # a dry run changes nothing
    # Compaction would add its one file, the orphan clean-up delete one.
    assert dry.bytes_freed == old.stat().st_size and dry.files_after == dry.files_before + 1 - 1
    assert dry.compacted == COMMITS and len(DeltaTable(str(path)).file_uris()) == COMMITS
    result = maintain_tables(config, tables=[EVENTS], orphan_min_age_hours=6).tables[0]
    assert result.orphans == 1
    assert not old.exists()
    assert young.exists() and not_parquet.exists() and in_log.exists()
    assert _referenced_files_exist(path)


def test_an_old_committed_file_is_never_an_orphan(house, config):
    path = config.table_path(EVENTS)
    for file in path.glob("*.parquet"):
        _age(file, 100)  # committed long ago: referenced, never deleted as an orphan
    result = maintain_tables(config, tables=[EVENTS], orphan_min_age_hours=1).tables[0]
    assert result.orphans == 0
    assert _referenced_files_exist(path)
    # The compacted-away files are tombstoned: vacuum's business (retention), not orphans.
    assert table_files(str(path))[0] == COMMITS + 1


@pytest.mark.engine_dependent
def test_only_existing_tables_and_the_event_row(house, config, caplog):
    report = maintain_tables(config, retention_hours=0)
    assert [t.table for t in report.tables] == [EVENTS]  # the other tables do not exist
    assert any("below 168 h" in r.message for r in caplog.records if r.levelname == "WARNING")
    assert record_maintenance(config, report)
    rows = house.read_arrow(EVENTS, filters=[("query", "=", "maintenance")]).to_pylist()
    assert len(rows) == 1
    assert (rows[0]["batch_id"], rows[0]["input_rows"], rows[0]["output_rows"]) == (-1, COMMITS, 1)
    assert "freed" in rows[0]["message"]


def test_a_failing_table_is_reported_and_the_others_go_on(house, config):
    house.append_rows("gold_predictions", [])  # nothing: the table is not created by an empty append
    house.ensure_tables()
    broken = config.table_path("silver_quarantine") / "_delta_log"
    (broken / "00000000000000000001.json").write_text("{not json")
    report = maintain_tables(config, tables=["silver_quarantine", EVENTS], retention_hours=0)
    by_name = {t.table: t for t in report.tables}
    assert by_name["silver_quarantine"].error
    assert by_name[EVENTS].error is None and by_name[EVENTS].vacuumed == COMMITS
    assert "failed: silver_quarantine" in report.summary()


def _first_load_stale(monkeypatch, stale: DeltaTable) -> list[str]:
    """Make the Lakehouse's first table load return ``stale`` (a snapshot older than a maintenance pass);
    returns the tables loaded, in order."""
    calls: list[str] = []
    real = Lakehouse.delta_table

    def first_stale(self, table):
        calls.append(table)
        return stale if len(calls) == 1 else real(self, table)

    monkeypatch.setattr(Lakehouse, "delta_table", first_stale)
    return calls


def test_a_stream_reading_during_a_vacuum_rereads(house, config, monkeypatch):
    """A current-version read whose file was vacuumed under it reads the new version (Lakehouse.read_arrow)."""
    stale = DeltaTable(str(config.table_path(EVENTS)))
    maintain_tables(config, tables=[EVENTS], retention_hours=0)
    calls = _first_load_stale(monkeypatch, stale)
    data = house.read_arrow(EVENTS, columns=["batch_id"])
    assert len(calls) == 2
    assert sorted(data.column("batch_id").to_pylist()) == list(range(COMMITS))
    assert isinstance(data, pa.Table)


def test_the_deltars_stream_source_skips_compaction_and_vacuum_commits(house, config):
    """A separate silver or gold stream reads appends only: a compaction re-adds the same rows
    (dataChange=false) and must not be read again; vacuum commits hold no file."""
    from pyspark.sql.types import StructType

    from streaming.lakehouse.deltars.stream import DeltaRsStreamReader

    path = str(config.table_path(EVENTS))
    before = DeltaTable(path).version()
    maintain_tables(config, tables=[EVENTS], retention_hours=0)
    after = DeltaTable(path).version()
    assert after >= before + 3  # OPTIMIZE, VACUUM START, VACUUM END
    reader = DeltaRsStreamReader(path, StructType(), {})
    start = {"version": before + 1, "index": 0, "snapshot": False}
    assert reader.latestOffset(start, None) == {"version": after + 1, "index": 0, "snapshot": False}
    assert all(reader._files_of(v, False).files == [] for v in range(before + 1, after + 1))


def test_idempotent_appends_beside_a_maintenance_loop_all_commit_exactly_once(house, config, monkeypatch):
    """Blind appends (a micro-batch's commit, with its application transaction) never fail on a concurrent
    compaction or vacuum commit, and a repeated transaction is still skipped."""
    import threading

    from streaming.lakehouse import tablepass

    monkeypatch.setattr(tablepass, "COMPACT_MIN_FILES", 2)
    stop, errors, passes = threading.Event(), [], []

    def loop() -> None:
        while not stop.is_set():
            report = maintain_tables(config, tables=[EVENTS], retention_hours=0, orphan_min_age_hours=1)
            errors.extend(t.error for t in report.errors)
            passes.append(report.tables[0].compacted)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        for batch in range(COMMITS, COMMITS + 40):
            house.append_rows(EVENTS, [BatchEvent("bronze", batch).as_row()], txn=("t", batch))
            house.append_rows(EVENTS, [BatchEvent("bronze", batch).as_row()], txn=("t", batch))  # a replay
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert sum(1 for compacted in passes if compacted) >= 2, "compactions ran between the appends"
    assert _batch_ids(config.table_path(EVENTS)) == list(range(COMMITS + 40))
    assert _referenced_files_exist(config.table_path(EVENTS))


def test_one_pass_at_a_time(house, config):
    """Two passes at once would both compact the same snapshot, and delta-rs would commit both (rows
    doubled): the second waits for the lock, or is refused."""
    import threading

    from streaming.core.errors import LakehouseBusyError
    from streaming.lakehouse.maintenance import maintenance_lock

    with maintenance_lock(config.root), pytest.raises(LakehouseBusyError, match="maintenance pass .* is running"):
        maintain_tables(config)
    results = []
    threads = [threading.Thread(target=lambda: results.append(maintain_tables(config, wait_seconds=60)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.tables[0].compacted for r in results) == [0, COMMITS]
    assert _batch_ids(config.table_path(EVENTS)) == list(range(COMMITS))


def test_a_merge_that_a_compaction_overtook_merges_again(spark, house, config, monkeypatch):
    """delta-rs refuses a MERGE whose snapshot a compaction replaced (nothing written); the merge is
    idempotent by key, so `Lakehouse.merge_by_key` runs it again on the new version."""
    stale = DeltaTable(str(config.table_path(EVENTS)))
    maintain_tables(config, tables=[EVENTS])  # compacts: `stale` now names replaced files
    calls = _first_load_stale(monkeypatch, stale)
    row = {**BatchEvent("bronze", 3, input_rows=99).as_row()}
    source = spark.createDataFrame([row], PIPELINE_EVENTS.schema)
    metrics = house.merge_by_key(source, EVENTS, "batch_id")
    assert len(calls) == 2 and metrics["num_target_rows_updated"] == 1
    data = DeltaTable(str(config.table_path(EVENTS))).to_pyarrow_table(columns=["batch_id", "input_rows"])
    assert sorted(data.column("batch_id").to_pylist()) == list(range(COMMITS))
    assert [r["input_rows"] for r in data.to_pylist() if r["batch_id"] == 3] == [99]
