"""DICOM end to end: a folder of DICOM files with identifying tags flows to gold, de-identified.

One lakehouse: labelled JPEGs plus DICOM files of every kind (extensionless and UID names, 8/12/16 bit,
MONOCHROME1, RLE, JPEG 2000, JPEG baseline, multi-frame) and bad ones (CT, no pixels, unknown transfer
syntax, truncated, disguised). ``xray stream --once`` runs as a subprocess so its whole output (driver and
Python workers) is captured; then retrain, a second stream (gold scores the waiting images) and metrics.
Every string of every non-bronze table, the reports and the output are scanned for each identifying value.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from deltalake import DeltaTable
from dicomfiles import IDENTIFYING, SENTINEL_PATIENT_ID, dicom_of, radiograph
from imagefiles import stage_labelled_dataset, write
from support import REPO, strings_in

from streaming.core.config import load_config
from streaming.pipeline.service import run_stream

SHARED_STUDY = "1.2.826.0.1.3680043.10.1234.1"  # two images of one study (and one patient)


def good_dicoms() -> dict[str, bytes]:
    """Valid chest DICOM files by landing path (labels from the folders, as for JPEGs)."""
    normal = lambda seed: radiograph(seed, label="NORMAL")  # noqa: E731
    sick = lambda seed: radiograph(seed, label="PNEUMONIA")  # noqa: E731
    study = {"StudyInstanceUID": SHARED_STUDY, **{k: v for k, v in IDENTIFYING.items() if k != "PatientName"}}
    return {
        "train/NORMAL/IM000001": dicom_of(normal(1), extra=study),
        "train/NORMAL/1.2.826.0.1.3680043.10.1234.2.1": dicom_of(normal(2), extra=study),
        "train/NORMAL/chest3.dcm": dicom_of(255 - normal(3), photometric="MONOCHROME1", patient_id="OTHERPID2"),
        "train/NORMAL/chest4.dcm": dicom_of(normal(4).astype(np.uint16) * 16, bits_stored=12, compression="rle"),
        "train/NORMAL/chest5.dcm": dicom_of(np.stack([normal(5), normal(6)])),
        "train/PNEUMONIA/chest6.dcm": dicom_of(sick(7).astype(np.uint16) * 257, bits_stored=16,
                                               compression="jpeg2000"),
        "train/PNEUMONIA/chest7.dcm": dicom_of(sick(8), compression="jpeg", burned_in_annotation="YES"),
        "train/PNEUMONIA/SCAN0008": dicom_of(sick(9), body_part="ABDOMEN", view_position="AP"),
    }


def bad_dicoms() -> dict[str, tuple[str, bytes]]:
    """Bad DICOM files by landing path → the rule that must quarantine them."""
    valid = dicom_of(radiograph(20))
    mpeg = pydicom.dcmread(io.BytesIO(valid))
    from pydicom.encaps import encapsulate

    mpeg.PixelData, mpeg["PixelData"].VR = encapsulate([mpeg.PixelData]), "OB"
    mpeg.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2 video: no decoder
    out = io.BytesIO()
    mpeg.save_as(out, enforce_file_format=False, little_endian=True, implicit_vr=False)
    return {
        "train/NORMAL/ct.dcm": ("dicom_radiograph", dicom_of(radiograph(21), modality="CT")),
        "train/NORMAL/report.dcm": ("dicom_pixel_data", dicom_of(None, with_pixels=False)),
        "train/NORMAL/video.dcm": ("dicom_transfer_syntax", out.getvalue()),
        "train/NORMAL/cut.dcm": ("dicom_readable", valid[:200]),
        "train/NORMAL/cutpixels.dcm": ("decodes", valid[: len(valid) - 4000]),
        "train/NORMAL/exported.jpeg": ("format_matches_name", dicom_of(radiograph(22))),
    }


def rows(config, name: str) -> list[dict]:
    return DeltaTable(str(config.table_path(name))).to_pyarrow_table().to_pylist()


@pytest.fixture(scope="module")
def streamed(spark, tmp_path_factory):
    from batch.evaluation.metrics import run_metrics
    from batch.training.retrain import retrain

    root = tmp_path_factory.mktemp("dicom")
    config = load_config(environ={}, lakehouse=str(root / "lakehouse"), spark_master="local[2]",
                         shuffle_partitions=2)
    stage_labelled_dataset(config.landing_dir, per_class=16, split="train", seed=5)
    for path, content in good_dicoms().items():
        write(config.landing_dir / path, content)
    for path, (_, content) in bad_dicoms().items():
        write(config.landing_dir / path, content)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable}
    finished = subprocess.run(
        [sys.executable, "-m", "streaming.cli", "stream", "--once", "--lakehouse", str(config.root),
         "--log-level", "INFO", "--master", "local[2]"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    retrain(spark, config)
    run_stream(spark, config, once=True)  # gold scores what waited for a champion
    run_metrics(spark, config)
    return config, finished.stdout + finished.stderr


def test_dicom_files_reach_silver_and_gold_with_their_attributes(streamed):
    config, _ = streamed
    bronze = {r["path_ref"]: r for r in rows(config, "bronze_xray_images")}
    metadata = {bronze[r["path_ref"]]["path"].split("/landing/", 1)[1]: r
                for r in rows(config, "silver_xray_metadata") if r["image_format"] == "DICOM"}
    assert sorted(metadata) == sorted(good_dicoms())
    first = metadata["train/NORMAL/IM000001"]
    assert (first["modality"], first["body_part"], first["view_position"]) == ("DX", "CHEST", "PA")
    assert first["pixel_spacing_mm"] == [0.143, 0.143] and first["study_year"] == 2019
    assert first["label_name"] == "NORMAL" and first["transfer_syntax_uid"] == "1.2.840.10008.1.2.1"
    # Keyed hashes, stable: one study and one patient for the two images of the shared study.
    second = metadata["train/NORMAL/1.2.826.0.1.3680043.10.1234.2.1"]
    assert first["study_ref"] == second["study_ref"] and first["series_ref"] != second["series_ref"]
    assert first["patient_id"] == second["patient_id"] != metadata["train/NORMAL/chest3.dcm"]["patient_id"]
    assert len(first["study_ref"]) == 64 and first["instance_ref"] != second["instance_ref"]
    assert metadata["train/NORMAL/chest3.dcm"]["photometric_interpretation"] == "MONOCHROME1"
    assert metadata["train/NORMAL/chest4.dcm"]["bits_stored"] == 12
    assert metadata["train/NORMAL/chest5.dcm"]["frame_count"] == 2
    assert metadata["train/PNEUMONIA/chest7.dcm"]["burned_in_annotation"] == "YES"  # warned, not quarantined
    assert metadata["train/PNEUMONIA/chest6.dcm"]["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.90"
    jpeg = [r for r in rows(config, "silver_xray_metadata") if r["image_format"] == "JPEG"]
    assert jpeg and all(r["modality"] is None and r["study_ref"] is None for r in jpeg)
    scored = {r["image_id"] for r in rows(config, "gold_pneumonia_predictions")}
    assert {r["image_id"] for r in metadata.values()} <= scored


def test_bad_dicom_files_are_quarantined_with_their_reason_and_warnings_counted(streamed):
    config, _ = streamed
    bronze = {r["path_ref"]: r["path"].split("/landing/", 1)[1] for r in rows(config, "bronze_xray_images")}
    quarantined = {bronze[r["path_ref"]]: r for r in rows(config, "silver_quarantine")}
    assert {path: r["rule"] for path, r in quarantined.items()} == {p: rule for p, (rule, _) in bad_dicoms().items()}
    reasons = {path: r["reason"] for path, r in quarantined.items()}
    assert reasons["train/NORMAL/ct.dcm"] == "not a radiograph: DICOM modality CT (expected CR, DX, DR)"
    assert "1.2.840.10008.1.2.4.100" in reasons["train/NORMAL/video.dcm"]
    assert reasons["train/NORMAL/exported.jpeg"] == "DICOM content disguised as JPEG"
    counted = {}
    for event in rows(config, "pipeline_events"):
        for expectation in event["expectations"] or []:
            counted[expectation["rule"]] = counted.get(expectation["rule"], 0) + expectation["failed"]
    assert counted["dicom_burned_in_annotation"] == 1 and counted["dicom_single_frame"] == 1
    assert counted["dicom_chest"] >= 1  # the abdomen (and any DICOM without a body part)


def forbidden_values(config) -> set[str]:
    """Every identifying value the DICOM files carry, as bronze holds them."""
    values = {SENTINEL_PATIENT_ID, "OTHERPID2", "20190723", "19230417", SHARED_STUDY}
    values |= {str(v).split("^")[0] for v in IDENTIFYING.values()}
    for record in rows(config, "bronze_xray_images"):
        content = record["content"]
        if content and content[128:132] == b"DICM":
            ds = pydicom.dcmread(io.BytesIO(content), force=True, stop_before_pixels=True)
            values |= {str(ds.get(k)) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
                       if ds.get(k)}
    return values



def test_no_identifying_value_leaves_bronze(streamed):
    config, output = streamed
    forbidden = forbidden_values(config)
    assert len(forbidden) > 30
    # The scan can fail: bronze, the raw layer, keeps the original bytes with every value.
    raw = b"".join(r["content"] or b"" for r in rows(config, "bronze_xray_images"))
    assert all(value.encode() in raw for value in (SENTINEL_PATIENT_ID, "SENTINEL GENERAL HOSPITAL"))
    scanned = 0
    for folder in sorted(Path(config.tables_dir).iterdir()):
        if folder.name == "bronze_xray_images":
            continue
        for row in rows(config, folder.name):
            for text in strings_in(list(row.values())):
                scanned += 1
                assert not [v for v in forbidden if v in text], f"{folder.name}: {text!r}"
    assert scanned > 200
    reports = [p for p in config.reports_dir.rglob("*") if p.is_file() and p.suffix in (".html", ".json")]
    assert reports
    for text in [p.read_text(errors="replace") for p in reports] + [output]:
        assert not [v for v in forbidden if v in text]
    assert "bronze batch" in output  # the INFO log was captured


def test_the_readme_dicom_query_answers_without_spark(streamed):
    from streaming.ops.sql import run_query

    config, _ = streamed
    result = run_query(config, "SELECT modality, view_position, count(*) AS images, count(DISTINCT study_ref) "
                               "AS studies FROM silver_xray_metadata WHERE image_format = 'DICOM' GROUP BY 1, 2 "
                               "ORDER BY images DESC")
    rows = result.rows
    assert {(r["modality"], r["view_position"]): r["images"] for r in rows} == {("DX", "PA"): 7, ("DX", "AP"): 1}
    assert next(r["studies"] for r in result.rows if r["view_position"] == "PA") == 6  # two images share a study
