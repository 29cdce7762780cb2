"""Bronze's read of landing entries (streaming/bronze/read.py)."""

from __future__ import annotations

from imagefiles import jpeg_bytes, write, xray_like
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual
from support import table_rows

from streaming.bronze.read import read_landing_files
from streaming.core.pseudonym import path_ref
from streaming.lakehouse.engine import Lakehouse


def test_file_deleted_between_listing_and_reading_is_skipped_and_logged(spark, config):
    from streaming.pipeline.fused import process_bronze_batch

    house = Lakehouse(spark, config)
    house.ensure_tables()
    kept = write(config.landing_dir / "train/NORMAL/IM-0003-0001.jpeg", jpeg_bytes(xray_like(1)))
    gone = config.landing_dir / "train/NORMAL/IM-0004-0001.jpeg"
    listing = spark.createDataFrame(
        [(str(kept), kept.stat().st_size, 1.0), (str(gone), 1234, 2.0)],
        "path string, length long, t double",
    ).select("path", F.timestamp_seconds("t").alias("modificationTime"), "length")

    event = process_bronze_batch(house, listing, 0)

    assert [r["file_name"] for r in table_rows(config, "bronze_xray_images")] == ["IM-0003-0001.jpeg"]
    assert event.output_rows == 1 and "deleted" in event.message and "IM-0004" not in event.message
    assert path_ref(str(gone), config.patient_salt())[:12] in event.message  # a pseudonym, not the path
    assert table_rows(config, "pipeline_events")[0]["expectations"][0]["failed"] == 1


def test_read_landing_files_is_a_pure_transform(spark, tmp_path):
    small = write(tmp_path / "test/PNEUMONIA/person1_virus_1.jpeg", jpeg_bytes(xray_like(1)))
    big = write(tmp_path / "train/NORMAL/IM-0001-0001.jpeg", b"x" * 200_000)
    listing = spark.createDataFrame(
        [(str(small), small.stat().st_size), (str(big), 200_000)], "path string, length long"
    ).select("path", F.timestamp_seconds(F.lit(0)).alias("modificationTime"), "length")
    rows = read_landing_files(listing, max_file_bytes=100_000, batch_id=7, key="k").select(
        "file_name", "content_status", "label", "split", "batch_id")
    expected = spark.createDataFrame(
        [("person1_virus_1.jpeg", "ok", "PNEUMONIA", "test", 7), ("IM-0001-0001.jpeg", "too_large", "NORMAL", "train", 7)],
        "file_name string, content_status string, label string, split string, batch_id long",
    )
    assertDataFrameEqual(rows, expected)


def test_a_task_records_its_files_in_bounded_slices():
    """Whatever the admission limit, a task holds at most SLICE_FILES files / SLICE_BYTES bytes at once,
    and every listed file is in exactly one slice, in order (a file larger than the bound alone)."""
    import pyarrow as pa

    from streaming.bronze.read import SLICE_BYTES, SLICE_FILES, listing_slices

    lengths = [10] * (SLICE_FILES + 3) + [SLICE_BYTES // 2, SLICE_BYTES // 2 + 1, SLICE_BYTES * 2, None, 5]
    batch = pa.RecordBatch.from_pydict({"seq": list(range(len(lengths))), "length": lengths})
    slices = list(listing_slices(batch))
    assert [s for part in slices for s in part.column("seq").to_pylist()] == list(range(len(lengths)))
    for part in slices:
        held = sum(n or 0 for n in part.column("length").to_pylist())
        assert part.num_rows <= SLICE_FILES and (held <= SLICE_BYTES or part.num_rows == 1)
    assert [p.num_rows for p in slices] == [SLICE_FILES, 4, 1, 1, 2]
