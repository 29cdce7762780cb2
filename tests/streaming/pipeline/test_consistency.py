"""Checkpoint and tables agree, or the service says so; `xray recover` rewinds the checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from deltalake import DeltaTable
from imagefiles import jpeg_bytes, write, xray_like

from streaming.cli.commands import main
from streaming.core.errors import CheckpointAheadError
from streaming.pipeline.consistency import check_checkpoints, recover, rewind_checkpoint
from streaming.pipeline.service import run_stream

# Runs once per Delta engine (tests/conftest.py).
pytestmark = pytest.mark.engine_dependent


@pytest.fixture(autouse=True)
def _keep_shared_session(monkeypatch):
    monkeypatch.setattr("streaming.lakehouse.session.stop_owned_sessions", lambda: None)


def ids(config, table: str) -> list[str]:
    return DeltaTable(str(config.table_path(table))).to_pyarrow_table(columns=["image_id"]).column(
        "image_id").to_pylist()


@pytest.fixture
def streamed(spark, config):
    """A lakehouse after 3 bronze batches (2 files each) with silver inline."""
    config = config.with_overrides(max_files_per_trigger=2)
    for i in range(6):
        write(config.landing_dir / "train/NORMAL" / f"IM-{i:04d}-0001.jpeg", jpeg_bytes(xray_like(700 + i)))
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    commits = config.checkpoint_path("bronze") / "commits"
    assert sorted(n.name for n in commits.iterdir() if n.name.isdigit()) == ["0", "1", "2"]
    return config


def lose_newest_commit(config, table: str) -> Path:
    log_dir = config.table_path(table) / "_delta_log"
    newest = max(log_dir.glob("*.json"), key=lambda p: int(p.stem))
    newest.unlink()  # its checksums, Delta Lake's and Hadoop's on the native engine, stay behind
    return newest


def test_lost_table_commit_stops_the_service_with_one_line(spark, streamed, capsys):
    config = streamed
    check_checkpoints(config)  # a healthy lakehouse passes
    lose_newest_commit(config, "silver_xray_metadata")

    with pytest.raises(CheckpointAheadError, match=r"table silver_xray_metadata holds batch 1 of query bronze "
                                                   r"but the query's checkpoint committed batch 2"):
        run_stream(spark, config, layers=("bronze", "silver"), once=True)
    # The check removed the checksums the lost commit left (native engine), so any reader opens the table.
    assert len(ids(config, "silver_xray_metadata")) < len(ids(config, "silver_image_features"))

    code = main(["stream", "--once", "--lakehouse", str(config.root)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(err) == 1 and "xray recover --query bronze" in err[0] and "backup" in err[0], err


def test_missing_table_is_the_same_error(spark, streamed):
    shutil.rmtree(streamed.table_path("silver_image_features"))
    with pytest.raises(CheckpointAheadError, match="table silver_image_features is missing"):
        run_stream(spark, streamed, layers=("bronze", "silver"), once=True)
    assert not streamed.table_path("silver_image_features").exists(), "not recreated empty"


def test_rewind_removes_offsets_and_commits_after_the_target(tmp_path):
    checkpoint = tmp_path / "cp"
    for folder in ("offsets", "commits"):
        for k in range(6):
            write(checkpoint / folder / str(k), b"v1")
            write(checkpoint / folder / f".{k}.crc", b"crc")
    write(checkpoint / "sources/0/5", b"v1")
    write(checkpoint / "metadata", b"{}")

    removed = rewind_checkpoint(checkpoint, 3)

    assert sorted(removed) == sorted(f"{f}/{n}" for f in ("offsets", "commits") for n in ("4", "5", ".4.crc", ".5.crc"))
    assert sorted(p.name for p in (checkpoint / "commits").iterdir()) == [".0.crc", ".1.crc", ".2.crc", ".3.crc",
                                                                          "0", "1", "2", "3"]
    assert (checkpoint / "sources/0/5").exists() and (checkpoint / "metadata").exists()


def test_recover_rewinds_then_the_replay_restores_the_lost_batch(spark, streamed, capsys):
    config = streamed
    lose_newest_commit(config, "silver_xray_metadata")

    assert main(["recover", "--query", "bronze", "--lakehouse", str(config.root)]) == 0
    out = capsys.readouterr().out
    assert "bronze: rewound the checkpoint from batch 2 to batch 1" in out and "replays batch 2" in out
    assert sorted(n.name for n in (config.checkpoint_path("bronze") / "commits").iterdir()
                  if n.name.isdigit()) == ["0", "1"]
    check_checkpoints(config)  # checkpoint and tables agree again
    assert [r.describe() for r in recover(config, ("bronze",))] == [
        "bronze: checkpoint and tables agree at batch 1; nothing to do"]

    # The landing source recorded batch 2's end offset: the replayed batch 2 covers exactly the same files.
    run_stream(spark, config, layers=("bronze", "silver"), once=True)

    metadata, features = ids(config, "silver_xray_metadata"), ids(config, "silver_image_features")
    assert len(metadata) == len(set(metadata)) == 6
    assert sorted(metadata) == sorted(features)
    bronze = DeltaTable(str(config.table_path("bronze_xray_images"))).to_pyarrow_table(columns=["path"])
    assert bronze.num_rows == 6


def test_the_check_reads_events_that_maintenance_compacted_and_vacuumed(spark, streamed, monkeypatch):
    from streaming.lakehouse import maintenance, tablepass

    config = streamed
    monkeypatch.setattr(tablepass, "COMPACT_MIN_FILES", 2)
    events = maintenance.maintain_tables(config, tables=["pipeline_events"], retention_hours=0).tables[0]
    assert events.compacted >= 3 and events.vacuumed == events.compacted  # the commits' own files are gone
    check_checkpoints(config)  # still healthy
    lose_newest_commit(config, "silver_xray_metadata")
    with pytest.raises(CheckpointAheadError, match=r"table silver_xray_metadata holds batch 1 of query bronze"):
        check_checkpoints(config)


def test_a_lost_newest_offsets_file_is_one_line_then_recover_mends_it(spark, streamed, capsys):
    """`offsets/2` deleted while `commits/2` stays: Spark would fail every start (CONCURRENT_STREAM_LOG_UPDATE).
    The start says in one line to run `xray recover`, which removes the orphan commit; the batch is planned
    again with the same files and nothing is duplicated."""
    config = streamed
    offsets = config.checkpoint_path("bronze") / "offsets"
    (offsets / "2").unlink()
    (offsets / ".2.crc").unlink(missing_ok=True)

    code = main(["stream", "--once", "--lakehouse", str(config.root)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(err) == 1 and "lost offsets/2" in err[0] and "xray recover --query bronze" in err[0], err

    assert main(["recover", "--lakehouse", str(config.root)]) == 0
    out = capsys.readouterr().out
    assert "bronze: removed commits/2 (its offsets file was lost); the next 'xray stream' plans batch 2 again" in out
    check_checkpoints(config)
    assert main(["recover", "--query", "bronze", "--lakehouse", str(config.root)]) == 0
    assert "bronze: checkpoint and tables agree at batch 1; nothing to do" in capsys.readouterr().out

    assert main(["stream", "--once", "--lakehouse", str(config.root)]) == 0
    metadata, features = ids(config, "silver_xray_metadata"), ids(config, "silver_image_features")
    assert len(metadata) == len(set(metadata)) == 6 and sorted(metadata) == sorted(features)
    assert DeltaTable(str(config.table_path("bronze_xray_images"))).to_pyarrow_table(columns=["path"]).num_rows == 6
    assert sorted(n.name for n in offsets.iterdir() if n.name.isdigit()) == ["0", "1", "2"]
