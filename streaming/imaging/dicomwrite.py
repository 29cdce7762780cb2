"""Writing DICOM files from pixels: the demo's DICOM inputs, the benchmark's DICOM copies of JPEGs, and the
tests' files of every kind (bit depths, MONOCHROME1, compression, multi-frame, identifying tags).

Only what a radiograph needs is written (a Digital X-Ray or Computed Radiography object with its patient,
study, series and equipment modules); ``DicomSpec.extra`` adds any other attribute by keyword.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["COMPRESSIONS", "DicomSpec", "dicom_bytes", "dicom_from_image_bytes"]

# Transfer syntaxes this module can write (the name used in DicomSpec.compression → pydicom UID keyword).
COMPRESSIONS = {
    "none": "ExplicitVRLittleEndian",
    "implicit": "ImplicitVRLittleEndian",
    "rle": "RLELossless",
    "jpeg2000": "JPEG2000Lossless",
    "jpeg": "JPEGBaseline8Bit",
}
_SOP_CLASS = {"DX": "1.2.840.10008.5.1.4.1.1.1.1", "CR": "1.2.840.10008.5.1.4.1.1.1"}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class DicomSpec:
    """What to write besides the pixels. ``bits_stored`` 8 writes 8-bit pixels, anything else 16-bit words
    with that many significant bits; ``compression`` is a key of ``COMPRESSIONS``."""

    modality: str = "DX"
    body_part: str | None = "CHEST"
    view_position: str | None = "PA"
    photometric: str = "MONOCHROME2"
    bits_stored: int = 8
    compression: str = "none"
    patient_id: str | None = None
    patient_name: str | None = None
    study_date: dt.date | None = None
    window: tuple[float, float] | None = None
    """(center, width) of a VOI window, written as WindowCenter/WindowWidth."""
    rescale: tuple[float, float] | None = None
    """(slope, intercept) of the modality LUT."""
    pixel_spacing: tuple[float, float] | None = (0.143, 0.143)
    burned_in_annotation: str | None = None
    sop_instance_uid: str | None = None
    with_pixels: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()


def _dataset(spec: DicomSpec, transfer_syntax: Any) -> Any:
    from pydicom.dataset import FileDataset, FileMetaDataset

    sop_class = _SOP_CLASS.get(spec.modality, _SECONDARY_CAPTURE)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = spec.sop_instance_uid or _uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(), _uid()
    ds.Modality = spec.modality
    ds.PatientID = spec.patient_id or ""
    ds.PatientName = spec.patient_name or ""
    date = spec.study_date or dt.date(2024, 1, 1)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date.strftime("%Y%m%d")
    for keyword, value in (("BodyPartExamined", spec.body_part), ("ViewPosition", spec.view_position),
                           ("BurnedInAnnotation", spec.burned_in_annotation)):
        if value is not None:
            setattr(ds, keyword, value)
    if spec.pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(spec.pixel_spacing)
    if spec.window is not None:
        ds.WindowCenter, ds.WindowWidth = spec.window
    if spec.rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = spec.rescale
        ds.RescaleType = "US"
    for keyword, value in spec.extra.items():
        setattr(ds, keyword, value)
    return ds


def _set_pixels(ds: Any, pixels: np.ndarray, spec: DicomSpec) -> None:
    frames = pixels if pixels.ndim == 3 else pixels[None]
    depth = 8 if spec.bits_stored <= 8 else 16
    ds.Rows, ds.Columns = frames.shape[1:]
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = spec.photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = depth, spec.bits_stored, spec.bits_stored - 1
    ds.PixelRepresentation = 0
    data = frames.astype(np.uint8 if depth == 8 else np.uint16)
    if spec.compression == "jpeg":
        # pydicom has no JPEG encoder: Pillow writes each frame, pydicom encapsulates them.
        from PIL import Image
        from pydicom.encaps import encapsulate

        encoded = []
        for frame in data:
            out = io.BytesIO()
            Image.fromarray(frame).save(out, "JPEG", quality=95)
            encoded.append(out.getvalue())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        return
    ds.PixelData = data.tobytes()
    if spec.compression in ("rle", "jpeg2000"):
        from pydicom import uid

        ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian  # compress() starts from native data
        # pydicom gives a compressed copy a new instance UID unless told not to: keep the one asked for.
        ds.compress(getattr(uid, COMPRESSIONS[spec.compression]), generate_instance_uid=spec.sop_instance_uid is None)


def dicom_bytes(pixels: np.ndarray | None, spec: DicomSpec | None = None) -> bytes:
    """A DICOM Part 10 file of ``pixels`` (2-D, or 3-D frames × rows × columns, already in the stored
    depth: 0–255 for 8 bits, 0–4095 for 12) with the attributes of ``spec``."""
    from pydicom import uid

    spec = spec or DicomSpec()
    if spec.compression not in COMPRESSIONS:
        raise ValueError(f"compression {spec.compression!r} is not one of {', '.join(COMPRESSIONS)}")
    ds = _dataset(spec, getattr(uid, COMPRESSIONS[spec.compression]))
    if spec.with_pixels and pixels is not None:
        _set_pixels(ds, np.asarray(pixels), spec)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_from_image_bytes(content: bytes, spec: DicomSpec | None = None) -> bytes:
    """The DICOM copy of an encoded image (JPEG, PNG): its gray pixels at full size, 8 bits, uncompressed
    unless ``spec`` says otherwise. The benchmark measures DICOM against JPEG on such copies."""
    from PIL import Image

    with Image.open(io.BytesIO(content)) as image:
        gray = np.asarray(image.convert("L"))
    return dicom_bytes(gray, spec)
