"""Reading DICOM on executors: the header attributes silver keeps, and the pixels as a radiologist sees them.

Pixels go through the display pipeline of PS3.3 C.11 before the features (``streaming.imaging.display``):
the modality LUT (rescale slope/intercept), then the VOI LUT or the first window center/width (LINEAR,
LINEAR_EXACT or SIGMOID), else the image's own range; ``MONOCHROME1`` is inverted so bone is bright as in
``MONOCHROME2``; any bit depth ends as gray levels in [0, 1], area-reduced by the power of two the features
ask for (``features.reduction_factor``) without running the pipeline on the full frame. A multi-frame image
contributes its **first frame** (``frame_count`` keeps how many there were, and a warning rule counts them).
Colour images (RGB, YBR) are converted to luminance; ``PALETTE COLOR`` is quarantined.

What leaves this module is either a de-identified attribute (modality, view, spacing, ...) or a raw
identifier meant to be hashed at once by the caller (``DicomAttributes.identifiers``: patient ID and the
study, series and instance UIDs). Error texts never quote values from the file, and pydicom's warnings
and logging (which do) are silenced here.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from streaming.imaging.display import _number, _text

__all__ = ["RADIOGRAPH_MODALITIES", "DicomAttributes", "DicomRead", "dicom_patient_id", "read_dicom", "safe_error"]

RADIOGRAPH_MODALITIES = ("CR", "DX", "DR")
_DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_UID_KEYWORDS = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "instance": "SOPInstanceUID"}


@dataclass
class DicomAttributes:
    """What silver keeps of a DICOM header (each None when absent)."""

    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    pixel_spacing: list[float] | None = None
    photometric_interpretation: str | None = None
    bits_stored: int | None = None
    manufacturer: str | None = None
    manufacturer_model: str | None = None
    transfer_syntax_uid: str | None = None
    transfer_syntax_supported: bool | None = None
    has_pixel_data: bool | None = None
    frame_count: int | None = None
    burned_in_annotation: str | None = None
    study_year: int | None = None
    header_error: str | None = None
    identifiers: dict[str, str] = field(default_factory=dict)
    """Raw ``patient``, ``study``, ``series`` and ``instance`` identifiers: hash them, never store them."""


@dataclass
class DicomRead:
    """A DICOM file read: its attributes, its size, and its first frame as gray levels in [0, 1], area-reduced
    by ``features.reduction_factor`` of its size (None when not decoded: no pixels, too many, unsupported
    or broken; ``decode_error`` says which). ``features.resize_levels`` makes it the feature-size array."""

    attributes: DicomAttributes
    width: int | None = None
    height: int | None = None
    gray: np.ndarray | None = None
    decode_error: str | None = None


def safe_error(error: BaseException, what: str) -> str:
    """A readable error text that quotes nothing from the file (pydicom puts values between quotes)."""
    message = re.sub(r"(['\"]).*?\1", "'…'", str(error)) or type(error).__name__
    return f"{what}: {type(error).__name__}: {message}"[:300]


def _quiet() -> None:
    """pydicom warns and logs with the offending values (a malformed name or date): nothing of that may
    reach a log. GDCM's C++ messages are switched off for the same reason."""
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    try:
        import gdcm

        gdcm.Trace.WarningOff()
        gdcm.Trace.ErrorOff()
        gdcm.Trace.DebugOff()
    except ImportError:
        pass


def _study_year(ds) -> int | None:
    for keyword in _DATE_KEYWORDS:
        text = str(ds.get(keyword) or "")
        if re.fullmatch(r"\d{8}", text) and 1900 <= int(text[:4]) <= 2200:
            return int(text[:4])
    return None


def _spacing(ds) -> list[float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            if value is not None and len(value) == 2:
                return [float(value[0]), float(value[1])]
        except (TypeError, ValueError):
            continue
    return None


def _syntax_supported(transfer_syntax) -> bool:
    from pydicom.pixels import get_decoder

    if transfer_syntax is None:
        return False
    if not transfer_syntax.is_compressed:
        return True
    try:
        return get_decoder(transfer_syntax).is_available
    except (NotImplementedError, ValueError):
        return False


def _attributes(ds) -> DicomAttributes:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    attributes = DicomAttributes(
        modality=_text(ds, "Modality"), body_part=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"), pixel_spacing=_spacing(ds),
        photometric_interpretation=_text(ds, "PhotometricInterpretation"),
        bits_stored=int(ds.BitsStored) if _number(ds, "BitsStored") else None,
        manufacturer=_text(ds, "Manufacturer"), manufacturer_model=_text(ds, "ManufacturerModelName"),
        transfer_syntax_uid=str(syntax) if syntax else None,
        transfer_syntax_supported=_syntax_supported(syntax),
        has_pixel_data="PixelData" in ds,
        frame_count=int(_number(ds, "NumberOfFrames") or 1) if "PixelData" in ds else None,
        burned_in_annotation=_text(ds, "BurnedInAnnotation"), study_year=_study_year(ds),
    )
    patient = str(ds.get("PatientID") or "").strip()
    if patient:
        attributes.identifiers["patient"] = patient
    for kind, keyword in _UID_KEYWORDS.items():
        uid = str(ds.get(keyword) or "").strip()
        if uid:
            attributes.identifiers[kind] = uid
    return attributes


# The fastest installed decoder per compressed syntax, measured (CPU time, a 1075 × 1554 chest X-ray):
# JPEG baseline/extended through Pillow 7.5 ms against GDCM's 21 ms (pydicom's default order puts GDCM
# first); JPEG 2000 through pylibjpeg-openjpeg 122–198 ms against GDCM's 138–241 ms. RLE already goes to
# pylibjpeg-rle, JPEG lossless and JPEG-LS have GDCM only. pydicom's own order when the plugin is missing.
_FASTEST_PLUGIN = {
    "1.2.840.10008.1.2.4.50": "pillow", "1.2.840.10008.1.2.4.51": "pillow",
    "1.2.840.10008.1.2.4.90": "pylibjpeg", "1.2.840.10008.1.2.4.91": "pylibjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg",
}


def _first_frame(ds) -> np.ndarray:
    from pydicom.pixels import get_decoder, pixel_array

    syntax = ds.file_meta.get("TransferSyntaxUID")
    plugin = _FASTEST_PLUGIN.get(str(syntax), "")
    if plugin and plugin not in get_decoder(syntax).available_plugins:
        plugin = ""
    # Only the first frame is decoded: a multi-frame file costs one frame's work and memory.
    if plugin:
        try:
            return pixel_array(ds, index=0, decoding_plugin=plugin)
        except Exception:  # a file the fast plugin refuses (12 bits, ...) gets every plugin
            pass
    return pixel_array(ds, index=0, view_only=_viewable(ds, syntax))


def _viewable(ds, syntax) -> bool:
    """Whether the first frame can be a read-only view of the Pixel Data bytes rather than a copy (0.43 →
    0.09 ms for a 1.4 MB frame, measured): native little endian, whole bytes per sample, no unused bits
    (pydicom's view skips their masking) and no 4:2:2 chroma to expand. The display pipeline only reads it."""
    bits = _number(ds, "BitsAllocated")
    return (syntax is not None and not syntax.is_encapsulated and syntax.is_little_endian
            and not syntax.is_deflated and bits in (8, 16, 32) and _number(ds, "BitsStored") == bits
            and _text(ds, "PhotometricInterpretation") != "YBR_FULL_422")


def _unparsed(content: bytes, error: Exception) -> DicomAttributes:
    """A file pydicom could not parse: its transfer syntax is the cause when it is one pydicom does not
    know (the dataset cannot be read without knowing its encoding); else the header is broken."""
    from pydicom.uid import UID

    # The file meta group is always explicit VR little endian: (0002,0010) UI, 2-byte length, the UID.
    at = content.find(b"\x02\x00\x10\x00UI", 132, 4096)
    length = int.from_bytes(content[at + 6:at + 8], "little") if at >= 0 else 0
    syntax = UID(content[at + 8:at + 8 + length].rstrip(b"\0 ").decode("ascii", "replace") if length else "")
    if syntax and syntax.is_valid and not syntax.is_transfer_syntax:
        return DicomAttributes(transfer_syntax_uid=str(syntax), transfer_syntax_supported=False)
    return DicomAttributes(header_error=safe_error(error, "unreadable or truncated DICOM"))


def read_dicom(content: bytes, max_pixels: int) -> DicomRead:
    """Parse a DICOM file's bytes and decode its first frame. Never raises: a broken header sets
    ``header_error``, a pixel problem ``decode_error``; the size comes from the header before any pixel is
    decoded, so a file claiming too many pixels is never expanded."""
    import pydicom

    from streaming.imaging.display import display_reduced
    from streaming.imaging.features import reduction_factor

    _quiet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(content), force=True)
            if len(ds) == 0:
                raise EOFError("no data elements after the file meta information")
            attributes = _attributes(ds)
        except Exception as error:  # a broken header is a property of the file
            return DicomRead(_unparsed(content, error))
        read = DicomRead(attributes, width=int(_number(ds, "Columns") or 0) or None,
                         height=int(_number(ds, "Rows") or 0) or None)
        if not attributes.has_pixel_data or not attributes.transfer_syntax_supported:
            return read
        if (read.width or 0) * (read.height or 0) > max_pixels:
            return read
        if attributes.photometric_interpretation == "PALETTE COLOR":
            read.decode_error = "DICOM photometric interpretation PALETTE COLOR is not supported"
            return read
        try:
            frame = _first_frame(ds)
            read.gray = display_reduced(frame, ds, reduction_factor(frame.shape[1], frame.shape[0]))
        except Exception as error:  # any decoder failure is a property of the file
            read.decode_error = safe_error(error, "DICOM pixel data could not be decoded")
        return read


def dicom_patient_id(source: bytes | BinaryIO) -> str | None:
    """The raw PatientID of a DICOM file (its bytes or an open binary file), read from the header only (pixel data is
    never loaded); None when it has none or cannot be parsed. For erasure (`xray forget`): hash it at once."""
    import pydicom

    _quiet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            handle = io.BytesIO(source) if isinstance(source, bytes) else source
            ds = pydicom.dcmread(handle, force=True, stop_before_pixels=True, specific_tags=["PatientID"])
            return str(ds.get("PatientID") or "").strip() or None
        except Exception:  # an unreadable header names no patient
            return None
