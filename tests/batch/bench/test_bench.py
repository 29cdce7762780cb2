"""The bench's data set: copies are new contents that cost the same decode work; DICOM copies of it."""

from __future__ import annotations

import numpy as np
import pytest
from imagefiles import jpeg_bytes, png_bytes, write, xray_like

from batch.bench import parse_parts, report_rows, resolve_dataset, run_bench
from batch.bench.dicomcopy import dicom_copies, fresh_copy, is_dicom
from batch.bench.formats import decode_rates
from streaming.core.errors import ConfigError
from streaming.imaging.images import inspect_image


def test_copies_are_new_contents_with_identical_pixels(tmp_path):
    write(tmp_path / "data/train/NORMAL/IM-0001-0001.jpeg", jpeg_bytes(xray_like(1)))
    write(tmp_path / "data/train/PNEUMONIA/person1_virus_1.png", png_bytes(xray_like(2)))
    files, described = resolve_dataset(tmp_path / "data", None, tmp_path / "work", copies=3)
    assert len(files) == 6 and described["unique_contents"] == 6 and described["copies"] == 3
    by_name = {f.relative.name: f for f in files}
    for name in ("IM-0001-0001.jpeg", "person1_virus_1.png"):
        original = inspect_image(by_name[name].path.read_bytes(), 10_000_000)
        for copy in (1, 2):
            item = by_name[f"copy{copy}-{name}"]
            assert item.relative.parent == by_name[name].relative.parent  # the label folder is kept
            inspected = inspect_image(item.path.read_bytes(), 10_000_000)
            assert inspected.decode_error is None
            np.testing.assert_array_equal(inspected.features, original.features)


def _data(tmp_path):
    write(tmp_path / "data/train/NORMAL/IM-0001-0001.jpeg", jpeg_bytes(xray_like(1)))
    write(tmp_path / "data/train/PNEUMONIA/person1_virus_1.png", png_bytes(xray_like(2)))
    return resolve_dataset(tmp_path / "data", None, tmp_path / "work", copies=2)[0]


def test_dicom_copies_hold_the_same_pixels_as_uncompressed_dicom(tmp_path):
    import pydicom
    from PIL import Image

    files = _data(tmp_path)
    copies = dicom_copies(files, tmp_path / "work/dicom")
    assert [c.relative.with_suffix("") for c in copies] == [f.relative.with_suffix("") for f in files]
    assert all(c.relative.suffix == ".dcm" and is_dicom(c) and not is_dicom(f) for c, f in zip(copies, files, strict=True))
    assert len({c.sha256 for c in copies}) == len(files)  # new UIDs each: copies of copies stay distinct
    for original, copy in zip(files, copies, strict=True):
        ds = pydicom.dcmread(copy.path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian and ds.BitsStored == 8
        with Image.open(original.path) as image:
            np.testing.assert_array_equal(ds.pixel_array, np.asarray(image.convert("L")))
        inspected = inspect_image(copy.path.read_bytes(), 10_000_000)
        assert inspected.detected_format == "DICOM" and inspected.features is not None
    assert dicom_copies(copies, tmp_path / "again") == copies  # already DICOM: kept


def test_fresh_copies_are_new_contents_of_the_same_image(tmp_path):
    files = _data(tmp_path)[:2]
    for item in [*files, *dicom_copies(files, tmp_path / "work/dicom")]:
        fresh = fresh_copy(item, tmp_path / "fresh", "r0")
        assert fresh.sha256 != item.sha256 and fresh.relative.name == f"r0-{item.relative.name}"
        before = inspect_image(item.path.read_bytes(), 10_000_000)
        after = inspect_image(fresh.path.read_bytes(), 10_000_000)
        assert after.decode_error is None
        np.testing.assert_array_equal(after.features, before.features)


def test_dicom_part_and_format_option(tmp_path, config):
    assert parse_parts("formats,pipeline") == ["pipeline", "dicom"]
    with pytest.raises(ConfigError, match="format"):
        run_bench(config, data=tmp_path, image_format="dcm")
    files = _data(tmp_path)
    rates = decode_rates(files, dicom_copies(files, tmp_path / "dicom"), rounds=2)
    assert len(rates["jpeg_runs"]) == len(rates["dicom_runs"]) == len(rates["round_ratios"]) == 2
    assert rates["dicom_to_jpeg"] > 0 and rates["median_round_ratio"] > 0
    rows = report_rows({"dicom": {"jpeg_files": {"files": 4}, "decode": rates, "pipeline": {}}, "errors": {}})
    assert any(row[0].startswith("  DICOM / JPEG (same run)") and row[1].endswith("x") for row in rows)


def test_the_engines_part_reports_both_engines_side_by_side():
    from batch.bench import parse_parts, report_rows

    assert parse_parts("engines") == ["engines"]
    figures = {"cold_startup_seconds": 9.5, "cold_images_per_second": 3.1, "marginal_images_per_second": 4.0,
               "latency": {"p50_seconds": 1.2, "p95_seconds": 2.5}, "commit_ms": {"format": "x", "pipeline_events": 12.0}}
    rows = report_rows({"engines": {"images": 30, "delta-rs": figures,
                                    "delta-spark": {**figures, "cold_startup_seconds": None}}})
    values = {name: value for name, value, _, _ in rows}
    assert values["engines: cold start-up (delta-rs / delta-spark)"] == "9.5 / n/a s"
    assert values["engines: latency p95 (delta-rs / delta-spark)"] == "2.5 / 2.5 s"
    assert values["engines: commit pipeline_events (delta-rs / delta-spark)"] == "12.0 / 12.0 ms"
