"""The silver rules as data (streaming/silver/expectations.py), on real inspected rows: DICOM files are
judged by their own rules, JPEGs are left alone by them, and burned-in annotations warn or quarantine."""

from __future__ import annotations

import dataclasses

import pytest
from dicomfiles import dicom_of, radiograph
from imagefiles import jpeg_bytes, xray_like

from streaming.core.pseudonym import patient_ref
from streaming.quality.arrow import split_flagged
from streaming.quality.spark import flag_expectations
from streaming.silver.expectations import silver_expectations
from streaming.silver.inspect import INSPECTED_SCHEMA, inspect_record

SALT = "test-key"


def inspected(name: str, content: bytes) -> dict:
    record = {"path": f"/l/train/NORMAL/{name}", "file_name": name, "path_ref": None, "size_bytes": len(content),
              "content_status": "ok", "content_sha256": name, "batch_id": 0, "content": content}
    row = inspect_record(record, SALT, 10**8)
    row["features"] = None if row["features"] is None else row["features"].tolist()
    return row


def judged(spark, config, files: dict[str, bytes], forgotten: frozenset[str] = frozenset(),
           refused: frozenset[str] = frozenset()) -> tuple[dict[str, str | None], dict[str, int]]:
    """(file name → quarantine rule or None, rule → rows failing it) for the given files; those named in
    ``refused`` marked as bronze marks a refused file (`streaming.bronze.refuse`)."""
    rows = [inspected(n, c) for n, c in files.items()]
    for row in rows:
        row["content_status"] = "refused" if row["file_name"] in refused else row["content_status"]
    frame = spark.createDataFrame(rows, INSPECTED_SCHEMA)
    expectations = silver_expectations(config, forgotten)
    result = split_flagged(flag_expectations(frame, expectations, "silver_xray_metadata").toArrow(), expectations,
                           "silver_xray_metadata")
    rules = dict.fromkeys(result.valid.column("file_name").to_pylist())
    quarantined = result.quarantined.to_pylist()
    rules.update({r["file_name"]: r["rule"] for r in quarantined})
    return rules, {c["rule"]: c["failed"] for c in result.counts}


@pytest.mark.parametrize("action", ["warn", "quarantine"])
def test_dicom_rules_judge_dicom_only_and_burned_in_text_follows_the_config(spark, config, action):
    config = dataclasses.replace(config, burned_in_annotation=action)
    files = {
        "plain.jpeg": jpeg_bytes(xray_like(1)),
        "chest.dcm": dicom_of(radiograph(1)),
        "burned.dcm": dicom_of(radiograph(2), burned_in_annotation="YES"),
        "knee.dcm": dicom_of(radiograph(3), body_part="KNEE"),
        "mr.dcm": dicom_of(radiograph(4), modality="MR"),
        "no-modality.dcm": dicom_of(radiograph(5), modality=""),
        "frames.dcm": dicom_of(radiograph(6)[None].repeat(2, axis=0)),
    }
    rules, counts = judged(spark, config, files)
    assert rules == {"plain.jpeg": None, "chest.dcm": None, "knee.dcm": None, "frames.dcm": None,
                     "burned.dcm": None if action == "warn" else "dicom_burned_in_annotation",
                     "mr.dcm": "dicom_radiograph", "no-modality.dcm": "dicom_radiograph"}
    assert counts["dicom_burned_in_annotation"] == 1 and counts["dicom_single_frame"] == 1
    assert counts["dicom_chest"] == 1  # the knee (the others say CHEST)


def test_a_forgotten_patient_is_quarantined_first_whatever_else_is_wrong(spark, config):
    forgotten = frozenset({patient_ref("person5", SALT), patient_ref("DICOMPATIENT", SALT)})
    files = {
        "person5_virus_1.jpeg": jpeg_bytes(xray_like(1)),
        "person5_virus_2.jpeg": b"not an image at all" * 10,  # also not an image: erased is the reason
        "IM000001": dicom_of(radiograph(1), patient_id="DICOMPATIENT"),  # named only inside
        "person6_virus_1.jpeg": jpeg_bytes(xray_like(2)),
        "blank.jpeg": jpeg_bytes(xray_like(3)),  # no patient at all: never refused
    }
    rules, counts = judged(spark, config, files, forgotten)
    assert rules == {"person5_virus_1.jpeg": "patient_not_forgotten", "person5_virus_2.jpeg": "patient_not_forgotten",
                     "IM000001": "patient_not_forgotten", "person6_virus_1.jpeg": None, "blank.jpeg": None}
    assert counts["patient_not_forgotten"] == 3
    assert silver_expectations(config)[0].name != "patient_not_forgotten"  # no list, no rule


def test_a_file_bronze_refused_by_its_bytes_is_quarantined_whatever_its_name(spark, config):
    forgotten = frozenset({patient_ref("person5", SALT)})
    files = {"scan-0001.jpeg": jpeg_bytes(xray_like(1)),  # the bytes of an erased image, a name naming nobody
             "scan-0002.jpeg": jpeg_bytes(xray_like(2))}
    rules, counts = judged(spark, config, files, forgotten, refused=frozenset({"scan-0001.jpeg"}))
    assert rules == {"scan-0001.jpeg": "patient_not_forgotten", "scan-0002.jpeg": None}
    assert counts["patient_not_forgotten"] == 1
