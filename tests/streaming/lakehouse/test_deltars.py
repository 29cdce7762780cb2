"""The deltars data source: real Spark, real Delta tables (read back with plain delta-rs), no network."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from streaming.core.errors import DeltaStreamChangeError, SchemaMismatchError
from streaming.lakehouse.deltars import ParquetFileWriter, commit_files, txn_commit_version
from streaming.lakehouse.engine import Lakehouse, await_termination


@pytest.fixture
def house(spark, config):
    lakehouse = Lakehouse(spark, config)
    assert lakehouse.format == "deltars"
    return lakehouse


def sample_rows(spark, start: int, count: int):
    """Rows of every type the lakehouse tables use."""
    return spark.range(start, start + count).select(
        F.col("id"),
        F.concat(F.lit("row-"), F.col("id").cast("string")).alias("name"),
        F.timestamp_seconds(F.col("id") + F.lit(1_700_000_000)).alias("ts"),
        F.to_date(F.timestamp_seconds(F.col("id") + F.lit(1_700_000_000))).alias("day"),
        F.unhex(F.lit("00ff10")).alias("payload"),
        F.array(F.col("id").cast("float"), F.lit(0.5).cast("float")).alias("vector"),
        F.create_map(F.lit("k"), F.col("id")).alias("counts"),
        F.array(F.struct(F.lit("r").alias("rule"), F.col("id").alias("failed"))).alias("checks"),
    )


def test_batch_round_trip_append_overwrite_and_plain_delta_reader(spark, house):
    expected = sample_rows(spark, 0, 50)
    house.append(expected, "t")
    house.append(sample_rows(spark, 50, 25), "t")
    assertDataFrameEqual(house.read("t"), sample_rows(spark, 0, 75))

    table = DeltaTable(house.path("t"))
    assert table.version() == 1
    assert table.to_pyarrow_table().num_rows == 75
    assert house.row_count("t") == 75
    operations = [entry["operation"] for entry in table.history()]
    assert operations == ["WRITE", "CREATE TABLE"]  # newest first
    timestamp_field = pa.schema(table.schema().to_arrow()).field("ts")
    assert timestamp_field.type == pa.timestamp("us", tz="UTC")

    house.overwrite(sample_rows(spark, 100, 5), "t")
    assertDataFrameEqual(house.read("t"), sample_rows(spark, 100, 5))
    assert DeltaTable(house.path("t")).to_pyarrow_table().num_rows == 5


def test_time_travel_reads_older_versions(spark, house):
    house.append(sample_rows(spark, 0, 10), "t")
    house.append(sample_rows(spark, 10, 10), "t")
    house.overwrite(sample_rows(spark, 99, 1), "t")
    assert house.read("t", version=0).count() == 10
    assert house.read("t", version=1).count() == 20
    assert house.read("t").count() == 1


def test_timestamps_round_trip_exactly(spark, house):
    moment = dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone.utc)
    frame = spark.createDataFrame([(1, moment)], "id long, at timestamp")
    house.append(frame, "ts_table")
    value = DeltaTable(house.path("ts_table")).to_pyarrow_table().column("at")[0].as_py()
    assert value == moment
    assert house.read("ts_table").collect()[0]["at"].replace(tzinfo=dt.timezone.utc) == moment


def test_idempotent_batch_write_skips_a_committed_transaction(spark, house):
    rows = sample_rows(spark, 0, 10)
    house.append(rows, "t", txn=("job-a", 3))
    house.append(rows, "t", txn=("job-a", 3))  # replay: skipped
    house.append(rows, "t", txn=("job-a", 2))  # older: skipped
    house.append(rows, "t", txn=("job-b", 3))  # another application: written
    assert house.read("t").count() == 20
    table = DeltaTable(house.path("t"))
    assert table.transaction_version("job-a") == 3
    # The skipped writes left no files behind.
    data_files = {p.name for p in Path(house.path("t")).glob("*.parquet")}
    assert data_files == {Path(uri).name for uri in table.file_uris()}


def test_schema_mismatch_is_a_clear_error_naming_the_columns(spark, house):
    house.append(spark.range(3).select("id", F.lit("x").alias("name")), "t")
    with pytest.raises(SchemaMismatchError, match=r"columns not in the table: extra"):
        house.append(spark.range(3).select("id", F.lit("x").alias("name"), F.lit(1).alias("extra")), "t")
    with pytest.raises(SchemaMismatchError, match=r"column types differ: name \(int != table's string\)"):
        house.append(spark.range(3).select("id", F.lit(1).alias("name")), "t")
    assert house.read("t").count() == 3


def test_schema_evolution_only_when_asked(spark, house):
    house.append(spark.range(2).select("id"), "t")
    house.append(spark.range(2, 4).select("id", F.lit("new").alias("note")), "t", merge_schema=True)
    rows = sorted(house.read("t").collect(), key=lambda r: r.id)
    assert [(r.id, r.note) for r in rows] == [(0, None), (1, None), (2, "new"), (3, "new")]


def run_stream_once(spark, house, source: str, target: str, query: str, **options):
    reader = house.read_stream(source, **options)
    stream = house.write_stream(reader, target, query, availableNow=True)
    await_termination(stream)
    return stream


def test_stream_source_to_sink_with_admission_limit(spark, house):
    for start in range(0, 40, 10):
        house.append(sample_rows(spark, start, 10).coalesce(1), "src")
    stream = run_stream_once(spark, house, "src", "dst", "copy", maxFilesPerTrigger=1)
    assertDataFrameEqual(house.read("dst"), sample_rows(spark, 0, 40))
    # One file per micro-batch: four data batches, one Delta commit each, each stamped with its batch id.
    committed = [p for p in stream.recentProgress if p["numInputRows"] > 0]
    assert [p["numInputRows"] for p in committed] == [10, 10, 10, 10]
    assert DeltaTable(house.path("dst")).transaction_version("copy") == committed[-1]["batchId"]

    # New commits are picked up from where the checkpoint stopped.
    house.append(sample_rows(spark, 40, 5), "src")
    run_stream_once(spark, house, "src", "dst", "copy", maxFilesPerTrigger=1)
    assert house.read("dst").count() == 45


def test_stream_skips_commits_without_data_change(spark, house):
    house.append(sample_rows(spark, 0, 10).repartition(3), "src")
    run_stream_once(spark, house, "src", "dst", "copy")
    DeltaTable(house.path("src")).optimize.compact()  # dataChange=false rewrite
    house.append(sample_rows(spark, 10, 5), "src")
    run_stream_once(spark, house, "src", "dst", "copy")
    assertDataFrameEqual(house.read("dst"), sample_rows(spark, 0, 15))


def test_stream_fails_clearly_on_deletes_unless_told(spark, house):
    house.append(sample_rows(spark, 0, 10), "src")
    run_stream_once(spark, house, "src", "dst", "copy")
    DeltaTable(house.path("src")).delete("id < 3")
    with pytest.raises(DeltaStreamChangeError, match="deleted or rewrote rows"):
        run_stream_once(spark, house, "src", "dst", "copy")
    house.append(sample_rows(spark, 10, 2), "src")
    run_stream_once(spark, house, "src", "dst", "copy", skipChangeCommits="true")
    assert house.read("dst").count() == 12


def _drop_last_checkpoint_commit(checkpoint: Path) -> int:
    """Simulate a crash after the sink committed to Delta but before Spark recorded the batch as done."""
    commits = sorted(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    last = commits[-1]
    (checkpoint / "commits" / str(last)).unlink()
    (checkpoint / "commits" / f".{last}.crc").unlink(missing_ok=True)
    return last


def test_exactly_once_when_killed_after_delta_commit_before_checkpoint_commit(spark, house, config):
    house.append(sample_rows(spark, 0, 20), "src")
    run_stream_once(spark, house, "src", "dst", "copy")
    replayed = _drop_last_checkpoint_commit(config.checkpoint_path("copy"))
    version_before = DeltaTable(house.path("dst")).version()

    stream = run_stream_once(spark, house, "src", "dst", "copy")

    # Spark really replayed the batch, and the sink recognised it.
    assert any(p["batchId"] == replayed and p["numInputRows"] == 20 for p in stream.recentProgress)
    assert DeltaTable(house.path("dst")).version() == version_before
    assertDataFrameEqual(house.read("dst"), sample_rows(spark, 0, 20))


def test_exactly_once_when_killed_while_writing_files(spark, house, config):
    house.append(sample_rows(spark, 0, 20), "src")
    run_stream_once(spark, house, "src", "dst", "copy")
    # A task that died mid-write leaves a Parquet file that no commit names (an orphan), and the batch it
    # belonged to is replayed.
    orphan = Path(house.path("dst")) / "part-00000-orphan-c000.zstd.parquet"
    orphan.write_bytes(b"PAR1 half written")
    _drop_last_checkpoint_commit(config.checkpoint_path("copy"))

    run_stream_once(spark, house, "src", "dst", "copy")

    assertDataFrameEqual(house.read("dst"), sample_rows(spark, 0, 20))
    assert DeltaTable(house.path("dst")).to_pyarrow_table().num_rows == 20


def _commit_rows(table_path: str, app: str | None, version: int | None, marked: bool = True) -> None:
    """One commit of five rows carrying (app, version); ``marked=False`` writes it as xray before the
    commit marker (or delta-spark) did: the txn action without our commit metadata."""
    schema = pa.schema([pa.field("writer", pa.int64()), pa.field("seq", pa.int64())])
    from pyspark.sql.types import LongType, StructField, StructType

    spark_schema = StructType([StructField("writer", LongType()), StructField("seq", LongType())])
    writer = ParquetFileWriter(table_path, schema, {})
    writer.write(pa.record_batch([pa.array([1] * 5), pa.array([version or 0] * 5)], schema=schema))
    if marked:
        commit_files(table_path, spark_schema, [writer.finish()], "append", app, version)
        return
    from deltalake import CommitProperties
    from deltalake.transaction import AddAction, Transaction

    table = DeltaTable(table_path)
    actions = [AddAction(f.path, f.size, {}, f.modification_time, True, f.stats) for f in writer.finish().files]
    table.create_write_transaction(actions, "append", table.schema(),
                                   commit_properties=CommitProperties(app_transactions=[Transaction(app, version)]))


@pytest.mark.parametrize("marked", [True, False])
def test_txn_commit_version_finds_the_commit_of_a_transaction(tmp_path, marked):
    table_path = str(tmp_path / "t")
    Path(table_path).mkdir()
    _commit_rows(table_path, None, None)  # version 0: no transaction
    for app, version in [("bronze", 0), ("other", 0), ("bronze", 1), ("other", 1), ("bronze", 3)]:
        _commit_rows(table_path, app, version, marked)  # table versions 1 to 5; bronze skips 2
    _commit_rows(table_path, None, None)  # version 6

    assert txn_commit_version(table_path, "bronze", 0) == 1
    assert txn_commit_version(table_path, "bronze", 1) == 3
    assert txn_commit_version(table_path, "other", 1) == 4
    assert txn_commit_version(table_path, "bronze", 3) == 5
    assert txn_commit_version(table_path, "bronze", 2) is None  # skipped: never committed
    assert txn_commit_version(table_path, "bronze", 4) is None  # not reached
    assert txn_commit_version(table_path, "nobody", 0) is None
    assert txn_commit_version(str(tmp_path / "missing"), "bronze", 0) is None


def _append_in_process(table_path: str, writer_id: int, commits: int) -> None:
    schema = pa.schema([pa.field("writer", pa.int64()), pa.field("seq", pa.int64())])
    from pyspark.sql.types import LongType, StructField, StructType

    spark_schema = StructType([StructField("writer", LongType()), StructField("seq", LongType())])
    for seq in range(commits):
        writer = ParquetFileWriter(table_path, schema, {})
        writer.write(pa.record_batch([pa.array([writer_id] * 5), pa.array([seq] * 5)], schema=schema))
        commit_files(table_path, spark_schema, [writer.finish()], "append", f"writer-{writer_id}", seq)


def test_two_processes_append_to_one_table_at_once(tmp_path):
    table_path = str(tmp_path / "shared")
    Path(table_path).mkdir()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_append_in_process, args=(table_path, i, 8)) for i in (1, 2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    table = DeltaTable(table_path)
    rows = table.to_pyarrow_table()
    assert rows.num_rows == 2 * 8 * 5
    assert table.transaction_version("writer-1") == 7
    assert table.transaction_version("writer-2") == 7
