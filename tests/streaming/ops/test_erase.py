"""The mechanics of an erasure (streaming/ops/erase.py) on real Delta tables and real files: which rows and
files are the patient's, that only they go, and that the bytes leave the disk and the history."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from deltalake import DeltaTable
from dicomfiles import dicom_of, radiograph
from imagefiles import jpeg_bytes, write, xray_like
from support import table_rows

from streaming.core.pseudonym import path_ref, patient_ref
from streaming.ops.erase import erase_files, erase_rows, find_erasure, purge_history

PATIENT = "person41"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def files():
    return {"own": jpeg_bytes(xray_like(41)), "copy_of_own": None, "dicom": dicom_of(radiograph(41), patient_id=PATIENT),
            "other": jpeg_bytes(xray_like(42)), "bad": b"not an image, person41's notes" * 30}


@pytest.fixture
def stocked(lakehouse, files):
    """Tables holding person41 (an image and a copy under a name without patient, a quarantined DICOM whose
    header names them, a quarantined file named for them) and person42 (an image)."""
    config, key = lakehouse.config, lakehouse.config.patient_salt()
    landing = config.landing_dir
    entries = [("train/PNEUMONIA/person41_virus_1.jpeg", files["own"]), ("copies/scan-1.jpeg", files["own"]),
               ("pacs/IM000041", files["dicom"]), ("train/PNEUMONIA/person41_virus_2.jpeg", files["bad"]),
               ("train/PNEUMONIA/person42_virus_1.jpeg", files["other"])]
    bronze = []
    for name, content in entries:
        path = str(write(landing / name, content))
        bronze.append({"path": path, "file_name": Path(path).name, "path_ref": path_ref(path, key),
                       "size_bytes": len(content), "content": content, "content_sha256": sha(content),
                       "content_status": "ok", "batch_id": 0})
    lakehouse.append_rows("bronze_xray_images", bronze)
    silver = [{"image_id": sha(files["own"]), "patient_id": None, "path_ref": bronze[1]["path_ref"]},  # the copy came first
              {"image_id": sha(files["other"]), "patient_id": patient_ref("person42", key),
               "path_ref": bronze[4]["path_ref"]}]
    lakehouse.append_rows("silver_xray_metadata", silver)
    lakehouse.append_rows("silver_image_features", [{"image_id": r["image_id"], "features": [1.0]} for r in silver])
    lakehouse.append_rows("gold_pneumonia_predictions", [{"image_id": r["image_id"]} for r in silver])
    lakehouse.append_rows("gold_radiologist_feedback", [{"image_id": r["image_id"], "comment": "a reader's note"}
                                                        for r in silver])
    lakehouse.append_rows("silver_quarantine", [
        {"rule": "dicom_radiograph", "path_ref": bronze[2]["path_ref"], "content_sha256": sha(files["dicom"])},
        {"rule": "is_image", "path_ref": bronze[3]["path_ref"], "content_sha256": sha(files["bad"])}])
    return config, bronze


def test_the_patient_s_rows_are_found_by_name_header_and_bytes_and_only_theirs_go(stocked, files):
    config, bronze = stocked
    erasure = find_erasure(config, patient_ref(PATIENT, config.patient_salt()))
    assert erasure.image_ids == {sha(files["own"]), sha(files["dicom"]), sha(files["bad"])}
    assert erasure.landing_paths == {r["path"] for r in bronze[:4]}
    assert erasure.silver_images == {sha(files["own"])}  # its silver row names no patient: the bytes decide

    deleted = erase_rows(config, erasure)
    assert deleted == {"bronze_xray_images": 4, "silver_quarantine": 2, "silver_xray_metadata": 1,
                       "silver_image_features": 1, "gold_pneumonia_predictions": 1, "gold_radiologist_feedback": 1}
    assert [r["file_name"] for r in table_rows(config, "bronze_xray_images")] == ["person42_virus_1.jpeg"]
    for table in ("silver_xray_metadata", "silver_image_features", "gold_pneumonia_predictions",
                  "gold_radiologist_feedback"):
        assert [r["image_id"] for r in table_rows(config, table)] == [sha(files["other"])]
    assert table_rows(config, "silver_quarantine") == []


def test_purging_removes_the_replaced_files_and_the_history_before_the_erasure(stocked, files):
    config, _ = stocked
    bronze_path = config.table_path("bronze_xray_images")
    before = DeltaTable(str(bronze_path)).version()
    erase_rows(config, find_erasure(config, patient_ref(PATIENT, config.patient_salt())))
    assert any(files["own"] in p.read_bytes() for p in bronze_path.glob("*.parquet"))  # still on disk: time travel
    assert purge_history(config, "bronze_xray_images") >= 1
    assert not any(files["own"] in p.read_bytes() for p in bronze_path.rglob("*") if p.is_file())
    assert not any(b"person41" in p.read_bytes() for p in bronze_path.rglob("*") if p.is_file())
    assert len(table_rows(config, "bronze_xray_images")) == 1
    with pytest.raises(Exception):  # noqa: B017 - delta-rs names no public class for a version gone
        DeltaTable(str(bronze_path), version=before).to_pyarrow_table()


def test_files_are_found_in_landing_and_archive_by_path_name_header_and_bytes(stocked, files, tmp_path):
    config, bronze = stocked
    archive = config.archive_dir
    write(archive / "train/PNEUMONIA/person41_virus_1.1.jpeg", files["own"])  # archived copy, serial suffix
    write(config.landing_dir / "incoming/upload.jpeg.tmp", files["own"])  # same bytes, a temporary name
    write(archive / "pacs/IM000099", dicom_of(radiograph(43), patient_id=PATIENT))  # never ingested
    outside = write(tmp_path / "outside/person41_virus_7.jpeg", files["own"])
    os.symlink(outside, config.landing_dir / "person41_virus_7.jpeg")  # a link: removed, its target kept
    os.mkfifo(config.landing_dir / "person41_pipe.jpeg.fifo")  # special: never opened (the test would hang)
    os.mkfifo(config.landing_dir / "scan-fifo.jpeg")
    erasure = find_erasure(config, patient_ref(PATIENT, config.patient_salt()))

    assert erase_files(config, erasure) == 4 + 3 + 1
    left = sorted(str(p.relative_to(config.root)) for p in config.root.rglob("*")
                  if ("landing" in p.parts or "archive" in p.parts) and not p.is_dir())
    assert left == ["landing/person41_pipe.jpeg.fifo", "landing/scan-fifo.jpeg",
                    "landing/train/PNEUMONIA/person42_virus_1.jpeg"]
    assert outside.read_bytes() == files["own"]
