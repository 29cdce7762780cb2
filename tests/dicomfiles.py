"""DICOM files made on the fly for tests, from synthetic pixels (streaming.imaging.dicomwrite), with the
identifying attributes of the DICOM basic confidentiality profile (PS3.15 Annex E) filled with sentinels
that a test can look for anywhere past bronze."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
from PIL import Image

from streaming.imaging.dicomwrite import DicomSpec, dicom_bytes

# Annex E attributes (basic profile: removed, emptied or replaced by a de-identifier), each with a value
# no table past bronze may hold. Dates are written as the Annex E DA/DT values they are.
IDENTIFYING = {
    "PatientName": "SENTINELNAME^ALICE",
    "OtherPatientNames": "SENTINELOTHERNAME^BOB",
    "PatientBirthDate": "19230417",
    "PatientAddress": "SENTINEL ADDRESS 12 ROAD",
    "PatientTelephoneNumbers": "SENTINEL555-0101",
    "OtherPatientIDs": "SENTINELOTHERID77",
    "PatientComments": "SENTINEL PATIENT COMMENT",
    "AdditionalPatientHistory": "SENTINEL HISTORY",
    "MedicalRecordLocator": "SENTINELMRN42",
    "AccessionNumber": "SENTINELACC9",
    "StudyID": "SENTINELSTUDY3",
    "InstitutionName": "SENTINEL GENERAL HOSPITAL",
    "InstitutionAddress": "SENTINEL HOSPITAL STREET 1",
    "InstitutionalDepartmentName": "SENTINEL RADIOLOGY",
    "ReferringPhysicianName": "SENTINELREFERRER^CAROL",
    "PerformingPhysicianName": "SENTINELPERFORMER^DAVE",
    "NameOfPhysiciansReadingStudy": "SENTINELREADER^ERIN",
    "OperatorsName": "SENTINELOPERATOR^FRANK",
    "RequestingPhysician": "SENTINELREQUESTER^GRACE",
    "StationName": "SENTINELSTATION",
    "DeviceSerialNumber": "SENTINELSERIAL5",
    "StudyDescription": "SENTINEL STUDY DESCRIPTION",
    "SeriesDescription": "SENTINEL SERIES DESCRIPTION",
    "ImageComments": "SENTINEL IMAGE COMMENT",
    "StudyTime": "101112.131415",
}
SENTINEL_PATIENT_ID = "SENTINELPID12345"
SENTINEL_DATE = dt.date(2019, 7, 23)  # the study date: only its year may appear past bronze


def radiograph(seed: int, size: tuple[int, int] = (192, 160), label: str = "NORMAL") -> np.ndarray:
    """8-bit gray pixels (rows × columns) with rib-like structure; PNEUMONIA adds diffuse opacities."""
    rng = np.random.default_rng(seed)
    rows, cols = size
    y, x = np.mgrid[0:rows, 0:cols]
    pixels = 80 + 50 * np.sin(y / 5.0 + rng.uniform(0, 6)) + 20 * np.cos(x / 9.0) + rng.normal(0, 6, size)
    if label == "PNEUMONIA":
        for _ in range(4):
            cy, cx, radius = rng.uniform(0.25, 0.75) * rows, rng.uniform(0.2, 0.8) * cols, 0.15 * cols
            blob = np.exp(-(((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2)))
            pixels = pixels * (1 - 0.8 * blob) + 200 * blob
    return np.clip(pixels, 0, 255).astype(np.uint8)


def identified_spec(**changes) -> DicomSpec:
    """A chest DX spec carrying every identifying attribute above (and the sentinel patient id)."""
    spec = DicomSpec(patient_id=SENTINEL_PATIENT_ID, patient_name=IDENTIFYING["PatientName"],
                     study_date=SENTINEL_DATE, extra={k: v for k, v in IDENTIFYING.items() if k != "PatientName"})
    for key, value in changes.items():
        setattr(spec, key, value)
    return spec


def dicom_of(pixels: np.ndarray, **changes) -> bytes:
    """DICOM bytes of ``pixels`` with the identifying attributes and ``changes`` to the spec."""
    return dicom_bytes(pixels, identified_spec(**changes))


def png_of(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def jpeg_of(pixels: np.ndarray, quality: int = 95) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


def jpeg_lossless_with_gdcm(content: bytes, tmp_path) -> bytes | None:
    """The same DICOM re-encoded as JPEG Lossless (process 14, SV1) by GDCM; None without GDCM."""
    try:
        import gdcm
    except ImportError:
        return None
    source, target = tmp_path / "native.dcm", tmp_path / "lossless.dcm"
    source.write_bytes(content)
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    if not reader.Read():
        return None
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    if not change.Change():
        return None
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    return target.read_bytes() if writer.Write() else None
