"""Refusing files of erased patients before bronze stores them (streaming/bronze/refuse.py)."""

from __future__ import annotations

from dicomfiles import dicom_of, radiograph
from imagefiles import jpeg_bytes, xray_like

from streaming.bronze.refuse import record_patient, refused_records
from streaming.core.pseudonym import patient_ref
from streaming.lakehouse.forgetlist import Forgotten

KEY = "test-key"


def record(name: str, content: bytes | None, status: str = "ok") -> dict:
    return {"path": f"/lakehouse/landing/train/NORMAL/{name}", "content": content, "content_status": status}


def test_the_patient_is_the_dicom_header_s_else_the_file_name_s():
    jpeg = jpeg_bytes(xray_like(1))
    assert record_patient(record("person12_virus_3.jpeg", jpeg), KEY) == patient_ref("person12", KEY)
    assert record_patient(record("IM-0115-0001.jpeg", jpeg), KEY) == patient_ref("IM-0115", KEY)
    dicom = dicom_of(radiograph(1), patient_id="PID-9")
    assert record_patient(record("person12_virus_3.dcm", dicom), KEY) == patient_ref("PID-9", KEY)
    assert record_patient(record("IM000001", dicom_of(radiograph(1), patient_id=None)), KEY) is None
    assert record_patient(record("scan.jpeg", None), KEY) is None


def test_only_files_of_listed_patients_are_refused():
    records = [record("person12_virus_3.jpeg", b"x"), record("person13_virus_1.jpeg", b"x"),
               record("person12_virus_4.jpeg", None, status="missing"), record("IM000002", dicom_of(
                   radiograph(2), patient_id="person12"))]
    listed = Forgotten(patients=frozenset({patient_ref("person12", KEY)}))
    assert refused_records(records, listed, KEY) == [True, False, False, True]
    assert refused_records(records, Forgotten(), KEY) == [False] * 4


def test_a_renamed_copy_of_an_erased_file_is_refused_by_its_bytes():
    erased = "ab" * 32  # the content SHA-256 an erasure journal recorded
    records = [{**record("scan-0002.jpeg", b"x"), "content_sha256": erased},  # a name that names nobody
               {**record("IM-0200-0001.jpeg", b"y"), "content_sha256": "cd" * 32},
               {**record("gone.jpeg", None, status="missing"), "content_sha256": None}]
    listed = Forgotten(patients=frozenset({patient_ref("person12", KEY)}), contents=frozenset({erased}))
    assert refused_records(records, listed, KEY) == [True, False, False]
    assert refused_records(records, Forgotten(patients=listed.patients), KEY) == [False] * 3
