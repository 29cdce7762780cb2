"""Bronze's read of landing entries (streaming/bronze/read.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imagefiles import jpeg_bytes, write, xray_like
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual
from support import table_rows

from streaming.bronze.read import read_file, read_landing_files
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


@pytest.mark.engine_dependent
def test_bronze_holds_every_file_byte_for_byte(spark, config):
    """Bronze's content is the file's bytes exactly (its SHA-256 is the file's), for a JPEG, 8- and 16-bit
    DICOM, an empty file and a file too large to keep (no content), on both engines' write paths."""
    import dataclasses
    import hashlib

    from dicomfiles import dicom_of, radiograph

    from streaming.pipeline.fused import process_bronze_batch

    pixels = radiograph(3)
    files = {
        "train/NORMAL/IM-0001-0001.jpeg": jpeg_bytes(xray_like(2)),
        "train/NORMAL/IM-0002-0001.dcm": dicom_of(pixels),
        "train/PNEUMONIA/person2_virus_3.dcm": dicom_of(pixels.astype(np.uint16) * 257, bits_stored=16),
        "train/NORMAL/IM-0003-0001.jpeg": b"",
        "train/NORMAL/IM-0004-0001.jpeg": b"\xff\xd8\xff" + bytes(range(256)) * 400,
    }
    paths = {name: write(config.landing_dir / name, content) for name, content in files.items()}
    config = dataclasses.replace(config, max_file_bytes=100_000)
    assert len(files["train/NORMAL/IM-0004-0001.jpeg"]) > config.max_file_bytes > max(
        len(c) for n, c in files.items() if "IM-0004" not in n)
    house = Lakehouse(spark, config)
    house.ensure_tables()
    listing = spark.createDataFrame([(str(p), p.stat().st_size) for p in paths.values()], "path string, length long"
                                    ).select("path", F.timestamp_seconds(F.lit(0)).alias("modificationTime"), "length")

    process_bronze_batch(house, listing, 0)

    rows = {r["file_name"]: r for r in table_rows(config, "bronze_xray_images")}
    assert len(rows) == len(files)
    for name, content in files.items():
        row = rows[name.rsplit("/", 1)[1]]
        if len(content) > config.max_file_bytes:
            assert (row["content"], row["content_sha256"], row["content_status"]) == (None, None, "too_large")
            continue
        assert row["content_status"] == "ok" and row["size_bytes"] == len(content)
        assert row["content"] == content  # b"" stays b"", not null
        assert hashlib.sha256(row["content"]).hexdigest() == row["content_sha256"] == hashlib.sha256(
            paths[name].read_bytes()).hexdigest()


@pytest.mark.parametrize("binary", ["binary", "large_binary"])
def test_bronze_batch_is_the_rows_as_arrow_builds_them(binary):
    """`bronze_batch` (the content column from one buffer) gives the batch ``from_pylist`` gives: bytes,
    empty bytes and nulls, wherever the content column is."""
    import pyarrow as pa

    from streaming.bronze.read import bronze_batch

    schema = pa.schema([("path", pa.string()), ("content", getattr(pa, binary)()), ("size_bytes", pa.int64())])
    records = [{"path": "a", "content": b"\x00\x01" * 1000, "size_bytes": 2000},
               {"path": "b", "content": None, "size_bytes": None},
               {"path": "c", "content": b"", "size_bytes": 0},
               {"path": "d", "content": bytes(range(256)), "size_bytes": 256, "extra": "ignored"}]
    for rows in (records, records[:1], records[1:2], []):
        built = bronze_batch(rows, schema)
        built.validate(full=True)
        assert built.equals(pa.RecordBatch.from_pylist(rows, schema=schema))
        assert built.column("content").to_pylist() == [r["content"] for r in rows]


def test_a_file_is_read_whole_whatever_its_size_said(tmp_path):
    """The read asks for the size ``fstat`` gave: a file that grew since is read to its end, and one that grew
    past the bound is too large."""
    from streaming.bronze.read import _read_whole

    content = bytes(range(256)) * 40
    assert _read_whole(io.BytesIO(content), 100, 1_000_000) == content
    assert _read_whole(io.BytesIO(content), len(content), 1_000_000) == content
    assert len(_read_whole(io.BytesIO(content), 100, 5000)) == 5001  # past the bound: one byte more says so
    assert _read_whole(io.BytesIO(b""), 0, 10) == b""
    path = write(tmp_path / "train/NORMAL/IM-0005-0001.jpeg", content)
    read = read_file(str(path), len(content), len(content))
    assert (read.content, read.status) == (content, "ok")
    assert read_file(str(path), len(content), len(content) - 1).status == "too_large"
