"""The ``receive`` part: `xray receive` and a plain pynetdicom SCP take the same instances; both rates and
their ratio are reported, and the receiver's rate is set against the pipeline's when that ran."""

from __future__ import annotations

from imagefiles import jpeg_bytes, write, xray_like

from batch.bench.context import BenchContext, resolve_dataset
from batch.bench.main import parse_parts
from batch.bench.receive import bench_receive
from batch.bench.report import report_rows


def test_receive_part_measures_both_scps_on_the_same_instances(tmp_path, config):
    assert parse_parts("receive") == ["receive"]
    for index in range(6):
        label = ("NORMAL", "PNEUMONIA")[index % 2]
        write(tmp_path / "data" / "train" / label / f"IM-{index:04d}-0001.jpeg", jpeg_bytes(xray_like(index, (200, 180))))
    work = tmp_path / "work"
    files, data = resolve_dataset(tmp_path / "data", None, work, 1)
    ctx = BenchContext(config, work, files, {"data": data, "errors": {}, "pipeline": {"warm": {"images_per_second": 2.0}}})
    result = bench_receive(ctx)
    assert result["instances"] == 6 and result["megabytes"] > 0
    for kind in ("plain", "receive"):
        assert result[kind]["instances_per_second"] > 0 and result[kind]["mb_per_second"] > 0
    assert result["ratio_to_plain"] > 0 and result["pipeline_images_per_second"] == 2.0
    rows = report_rows({"receive": result, "errors": {}})
    assert [row[0].strip() for row in rows][1:] == ["xray receive (atomic, fsynced, exactly once)",
                                                    "xray receive / plain", "receive / landing->gold rate (must be > 1)"]
    assert not list((work / "receive").rglob("*.dcm"))  # every round's files removed
