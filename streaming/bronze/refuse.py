"""Refusing the files of erased patients (`xray forget`) before bronze stores them. Runs on executors.

The patient of a file is the one silver would give it (`streaming.silver.inspect`): the DICOM PatientID
(read from the header only), else the patient the file name encodes; both as keyed hashes. A file with the
bytes of an erased file (its SHA-256 in an erasure journal) is refused whatever its name. A refused file
is never written to bronze; its inspected row says ``content_status = 'refused'`` so the driver counts it,
deletes it from landing, and silver quarantines it under ``patient_not_forgotten``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streaming.core.dicomfile import DICOM_PREAMBLE_LENGTH, has_dicom_preamble
from streaming.core.paths import parse_xray_path
from streaming.core.pseudonym import patient_ref
from streaming.imaging.dicom import dicom_patient_id

if TYPE_CHECKING:
    from streaming.lakehouse.forgetlist import Forgotten

__all__ = ["REFUSED", "record_patient", "refused_records"]

REFUSED = "refused"  # the content_status of a refused file in the inspected rows (never in bronze)


def record_patient(record: dict, key: str) -> str | None:
    """The keyed patient ref of a bronze record (path and content), as silver would compute it."""
    content = record.get("content")
    dicom = None
    if content and has_dicom_preamble(content[:DICOM_PREAMBLE_LENGTH]):
        dicom = dicom_patient_id(content)
    return patient_ref(dicom or parse_xray_path(record.get("path") or "").patient_key, key)


def refused_records(records: list[dict], forgotten: Forgotten, key: str) -> list[bool]:
    """For each record, whether its bytes were erased or its patient is on the forget list (all False when
    the list is empty)."""
    if not forgotten:
        return [False] * len(records)
    return [record["content_status"] != "missing" and (record.get("content_sha256") in forgotten.contents
                                                       or record_patient(record, key) in forgotten.patients)
            for record in records]
