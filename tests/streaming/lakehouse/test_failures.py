"""A full disk and a damaged Delta log are one line each (table, file, what to do), and nothing is lost;
files a killed attempt wrote are removed when its batch is redone."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from imagefiles import jpeg_bytes, write, xray_like

from streaming.cli.commands import main
from streaming.core.errors import DamagedTableError, DiskFullError
from streaming.lakehouse.deltars import txn_file_prefix
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.failures import storage_error
from streaming.pipeline import fused
from streaming.pipeline.service import run_stream


@pytest.fixture(autouse=True)
def _keep_shared_session(monkeypatch):
    # The CLI stops the session it used; the test run shares one.
    monkeypatch.setattr("streaming.lakehouse.session.stop_owned_sessions", lambda: None)


def stage(landing: Path, count: int, size: int = 160) -> set[str]:
    names = set()
    for i in range(count):
        write(landing / "train/NORMAL" / f"IM-{i:04d}-0001.jpeg", jpeg_bytes(xray_like(500 + i, size=(size, size))))
        names.add(f"IM-{i:04d}-0001.jpeg")
    return names


def column(config, table: str, name: str) -> list:
    return DeltaTable(str(config.table_path(table))).to_pyarrow_table(columns=[name]).column(name).to_pylist()


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err[-20:]
    return errors[0]


def test_enospc_in_any_shape_is_one_named_line():
    worker_text = ("An exception was thrown from the Python worker. Traceback (most recent call last):\n"
                   "  File \"/x/pyarrow/parquet/core.py\", line 1, in write_table\n"
                   "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"
                   " '/lh/tables/bronze_xray_images/part-1.parquet'\n\tat org.apache.spark.Foo(Foo.scala:1)")
    for error, table in [(OSError(28, "No space left on device", "/lh/tables/gold_x/part-2.parquet"), "gold_x"),
                         (RuntimeError(worker_text), "bronze_xray_images")]:
        named = storage_error(error)
        assert isinstance(named, DiskFullError)
        assert "\n" not in str(named) and table in str(named) and "free space" in str(named)
    assert storage_error(RuntimeError("something else")) is None


def mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip()}); needs root")


def test_full_disk_is_one_line_and_a_rerun_after_freeing_space_loses_nothing(spark, config, capsys):
    """A real full disk: the tables folder is a 1 MB tmpfs, landing holds ~2.5 MB of images."""
    tables = config.tables_dir
    mount_tmpfs(tables, "1m")
    try:
        names = stage(config.landing_dir, 24, size=400)
        code = main(["stream", "--once", "--lakehouse", str(config.root)])
        line = one_line_error(capsys)
        assert code == 2
        assert "disk is full" in line and "bronze_xray_images" in line and "run the same command again" in line

        subprocess.run(["mount", "-o", "remount,size=64m", str(tables)], check=True)  # space freed
        assert main(["stream", "--once", "--lakehouse", str(config.root)]) == 0

        bronze_names = [p.rsplit("/", 1)[-1] for p in column(config, "bronze_xray_images", "path")]
        assert sorted(bronze_names) == sorted(names)
        assert len(column(config, "silver_xray_metadata", "image_id")) == len(names)
        committed = {Path(p).name for p in DeltaTable(str(tables / "bronze_xray_images")).file_uris()}
        on_disk = {p.name for p in (tables / "bronze_xray_images").glob("*.parquet")}
        assert on_disk == committed, "the failed attempt's files are gone"
    finally:
        subprocess.run(["umount", "-l", str(tables)], check=False)


@pytest.mark.slow
def test_full_disk_in_the_xray_command_prints_one_line_and_none_of_sparks_errors(tmp_path):
    """The real command in its own process (the JVM's stderr is the terminal's): the one line saying what to
    do, without Spark's ERROR lines and stack traces of the failed tasks and query (they go to a file)."""
    import sys

    from support import REPO

    root = tmp_path / "lh"
    mount_tmpfs(root / "tables", "1m")
    try:
        stage(root / "landing", 24, size=400)
        done = subprocess.run([sys.executable, "-m", "streaming.cli", "stream", "--once", "--lakehouse", str(root),
                               "--master", "local[2]"], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        subprocess.run(["umount", "-l", str(root / "tables")], check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines[-1].startswith("xray stream: error: the disk is full while writing table bronze_xray_images")
    spark_lines = [line for line in lines if " ERROR " in line or "Traceback" in line or line.startswith(("\t", " "))]
    assert spark_lines == [] and len(lines) <= 5, lines  # INFO/JVM notice, the stream_stopped alert, the error
    errors = (root / "logs" / "spark-errors.log").read_text()
    assert "No space left on device" in errors  # Spark's own account is kept, for whoever wants it


def test_truncated_commit_is_one_line_naming_table_and_file(spark, config, capsys):
    stage(config.landing_dir, 3)
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    log_dir = config.table_path("silver_xray_metadata") / "_delta_log"
    newest = max(log_dir.glob("*.json"), key=lambda p: int(p.stem))
    text = newest.read_text()
    newest.write_text(text[: len(text) // 2])

    code = main(["stream", "--once", "--lakehouse", str(config.root)])

    line = one_line_error(capsys)
    assert code == 2
    assert "silver_xray_metadata" in line and newest.name in line and "backup" in line
    # The same damage met by a read inside a batch names table and file too.
    with pytest.raises(DamagedTableError, match=newest.name):
        Lakehouse(spark, config).txn_commit_version("silver_xray_metadata", ("bronze", 99))


def test_files_of_a_killed_attempt_are_removed_when_the_batch_is_redone(spark, config):
    names = stage(config.landing_dir, 4)
    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    bronze_path = lakehouse.path("bronze_xray_images")
    # A first attempt of batch 0: executors write bronze files, then the process dies before the commit.
    now = dt.datetime.now(dt.timezone.utc)
    listing = pa.table({
        "path": [f"{config.landing_dir}/train/NORMAL/{n}" for n in sorted(names)],
        "modificationTime": pa.array([now] * len(names), pa.timestamp("us", tz="UTC")),
        "length": pa.array([None] * len(names), pa.int64()),
    })
    fused.record_and_inspect(spark.createDataFrame(listing), config, 0, bronze_path, inspect=True).toArrow()
    orphans = sorted(p.name for p in Path(bronze_path).glob(txn_file_prefix("bronze", 0) + "*"))
    assert orphans, "the killed attempt left files"
    # The same for a silver table written from the driver, and a file of another batch (not touched).
    metadata_path = Path(lakehouse.path("silver_xray_metadata"))
    (metadata_path / (txn_file_prefix("bronze", 0) + "killed-c000.zstd.parquet")).write_bytes(b"partial")
    other = metadata_path / (txn_file_prefix("bronze", 7) + "later-c000.zstd.parquet")
    other.write_bytes(b"not this batch")

    run_stream(spark, config, layers=("bronze", "silver"), once=True)

    assert not any((Path(bronze_path) / name).exists() for name in orphans)
    assert not (metadata_path / (txn_file_prefix("bronze", 0) + "killed-c000.zstd.parquet")).exists()
    assert other.exists()
    for table in ("bronze_xray_images", "silver_xray_metadata"):
        committed = {Path(p).name for p in DeltaTable(lakehouse.path(table)).file_uris()}
        on_disk = {p.name for p in Path(lakehouse.path(table)).glob("*.parquet")} - {other.name}
        assert on_disk == committed, table
    bronze_names = [p.rsplit("/", 1)[-1] for p in column(config, "bronze_xray_images", "path")]
    assert sorted(bronze_names) == sorted(names)
    assert len(column(config, "silver_xray_metadata", "image_id")) == len(names)
    assert [n for n in os.listdir(config.checkpoint_path("bronze") / "commits") if n.isdigit()] == ["0"]
