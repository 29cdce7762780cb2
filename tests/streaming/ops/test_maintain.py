"""``xray maintain``: its printed table, its pipeline_events row, the dry run, the checkpoint sizes."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable

from streaming.cli.commands import main
from streaming.lakehouse.catalog import PIPELINE_EVENTS
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent
from streaming.lakehouse.tablepass import COMPACT_MIN_FILES
from streaming.ops.maintain import checkpoint_sizes, maintain_command

# Runs once per Delta engine (tests/conftest.py).
pytestmark = pytest.mark.engine_dependent

EVENTS = PIPELINE_EVENTS.name
COMMITS = COMPACT_MIN_FILES + 2


@pytest.fixture
def small_files(spark, config):
    """pipeline_events in COMMITS one-row commits, and a checkpoint folder of two files."""
    house = Lakehouse(spark, config)
    for batch in range(COMMITS):
        house.append_rows(EVENTS, [BatchEvent("bronze", batch).as_row()], txn=("bronze:events", batch))
    offsets = config.checkpoint_path("bronze") / "offsets"
    offsets.mkdir(parents=True)
    (offsets / "0").write_text("v1\n{}\n")
    (offsets / "1").write_text("v1\n{}\n")
    return house


def _events(config, query: str) -> list[dict]:
    data = DeltaTable(str(config.table_path(EVENTS))).to_pyarrow_table()
    return [row for row in data.to_pylist() if row["query"] == query]


def test_maintain_prints_each_table_and_records_one_event(small_files, config, capsys):
    code = main(["maintain", "--lakehouse", str(config.root), "--retention-hours", "0", "--table", EVENTS])
    assert code == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith(EVENTS))
    assert f"{COMMITS} -> 1" in line  # data files before -> after
    assert "freed" in out and "file(s) deleted) in" in out
    assert "STREAM CHECKPOINTS" in out and "bronze" in out.split("STREAM CHECKPOINTS")[1]
    rows = _events(config, "maintenance")
    assert len(rows) == 1
    assert (rows[0]["batch_id"], rows[0]["input_rows"], rows[0]["output_rows"]) == (-1, COMMITS, 1)
    assert "vacuumed 12" in rows[0]["message"] and "retention 0 h" in rows[0]["message"]


def test_dry_run_changes_nothing(small_files, config, capsys):
    path = config.table_path(EVENTS)
    version, files = DeltaTable(str(path)).version(), sorted(p.name for p in path.rglob("*"))
    report = maintain_command(config, retention_hours=0, dry_run=True)
    assert report.tables[0].compacted == COMMITS
    assert DeltaTable(str(path)).version() == version
    assert sorted(p.name for p in path.rglob("*")) == files
    assert _events(config, "maintenance") == []
    assert "dry run: nothing changed" in capsys.readouterr().out
    # At 0 h the files compaction replaces are vacuumed in the same pass.
    assert report.tables[0].files_after == 1 and report.tables[0].vacuumed == COMMITS
    assert report.tables[0].bytes_freed == report.tables[0].bytes_before
    default = maintain_command(config, dry_run=True).tables[0]
    assert default.bytes_freed == 0  # 168 h: nothing would be deleted yet
    assert default.files_after == COMMITS + 1  # compaction adds its file, deletes none


def _say(table) -> tuple:
    return (table.table, table.files_before, table.files_after, table.log_files_before, table.log_files_after,
            table.compacted, table.compact_outputs, table.vacuumed, table.orphans, table.checkpoint)


@pytest.mark.parametrize("retention", [168, 0])
def test_the_dry_run_predicts_what_the_pass_does(config, retention, capsys, caplog):
    """Spark-free: pipeline_events in one-row delta-rs commits; the dry run, then the pass, agree."""
    from streaming.lakehouse.direct import append_rows

    for batch in range(COMMITS):
        append_rows(config, EVENTS, [BatchEvent("bronze", batch).as_row()])
    caplog.set_level("INFO", logger="streaming.lakehouse.maintenance")
    predicted = maintain_command(config, retention_hours=retention, dry_run=True).tables
    dry_out = capsys.readouterr().out
    done = maintain_command(config, retention_hours=retention).tables
    out = capsys.readouterr().out
    assert [_say(t) for t in predicted] == [_say(t) for t in done]
    assert predicted[0].compacted == COMMITS and predicted[0].compact_outputs == 1
    assert predicted[0].bytes_freed == done[0].bytes_freed
    # Each table once: the printed table, no INFO line per table beside it.
    assert sum(line.strip().startswith(EVENTS) for line in out.splitlines()) == 1
    assert not [r for r in caplog.records if r.levelname == "INFO" and EVENTS in r.getMessage()]
    assert f"{COMMITS} -> 1" in next(line for line in dry_out.splitlines() if line.strip().startswith(EVENTS))
    if retention:
        assert "freed 0.0 MB (0 file(s) deleted)" in out
        assert (f"compaction rewrote {COMMITS} small file(s)" in out and "the replaced files stay for time travel "
                "until a vacuum after 168 h" in out)
        assert "<=" in dry_out  # the size compaction writes is a bound, said so


def test_a_fresh_lakehouse_has_nothing_to_maintain(config, capsys):
    report = maintain_command(config)
    assert report.tables == [] and "no table exists yet" in capsys.readouterr().out
    assert not config.tables_dir.exists()


def test_unknown_table_and_negative_retention_are_usage_errors(config, capsys):
    for argv in (["maintain", "--table", "nope"], ["maintain", "--retention-hours", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--lakehouse", str(config.root)])
        assert exit_info.value.code == 2
    assert "invalid" in capsys.readouterr().err


def test_checkpoint_sizes(small_files, config):
    assert checkpoint_sizes(config) == [("bronze", 2, 12)]


def test_status_does_not_list_maintenance_as_a_stream(small_files, config):
    from streaming.ops.status import latest_events, stream_status

    maintain_command(config, retention_hours=0)
    import datetime as dt

    events = latest_events(small_files)
    assert "maintenance" in events
    assert [s["query"] for s in stream_status(config, events, dt.datetime.now(dt.timezone.utc))] == [
        "bronze", "silver", "gold"]
