"""Reading, sniffing, decoding and measuring image files. Runs on executors (inside Arrow UDFs).

Nothing here raises on bad input: every problem becomes a value (a status or an error text) that the
expectations of the silver layer turn into a quarantine row with a readable reason.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass

import numpy as np

from streaming.core.dicomfile import has_dicom_preamble
from streaming.core.names import may_be_dicom_name
from streaming.core.profiling import Phases
from streaming.core.pseudonym import patient_ref
from streaming.imaging.dicom import DicomAttributes

# Magic numbers of formats users really drop. Non-image kinds are named so the reason is useful.
_SIGNATURES: tuple[tuple[bytes, str, bool], ...] = (
    (b"\xff\xd8\xff", "JPEG", True),
    (b"\x89PNG\r\n\x1a\n", "PNG", True),
    (b"GIF87a", "GIF", True),
    (b"GIF89a", "GIF", True),
    (b"BM", "BMP", True),
    (b"II*\x00", "TIFF", True),
    (b"MM\x00*", "TIFF", True),
    (b"RIFF", "WEBP", True),
    (b"\x00\x00\x00\x0cjP  ", "JPEG2000", True),
    (b"%PDF", "PDF document", False),
    (b"PK\x03\x04", "ZIP archive", False),
    (b"\x1f\x8b", "gzip archive", False),
)
EXPECTED_FORMAT_BY_EXTENSION = {".jpeg": "JPEG", ".jpg": "JPEG", ".png": "PNG", ".dcm": "DICOM",
                                 ".dicom": "DICOM"}
DECODED_FORMATS = ("JPEG", "PNG", "DICOM")
"""Formats silver decodes; any other image format is quarantined as disguised (no landing name has it)."""


def expected_format(file_name: str) -> str | None:
    """The format a landing name promises: by extension, and DICOM for the extensionless or UID names the
    landing scan only admits for DICOM content."""
    lowered = file_name.lower()
    extension = "." + lowered.rsplit(".", 1)[-1] if "." in lowered else ""
    if extension in EXPECTED_FORMAT_BY_EXTENSION:
        return EXPECTED_FORMAT_BY_EXTENSION[extension]
    return "DICOM" if may_be_dicom_name(file_name) else None


def sniff(content: bytes) -> tuple[str | None, str]:
    """(image format or None, kind) from the first bytes: ("JPEG", "JPEG image"), (None, "PDF document")."""
    if has_dicom_preamble(content):
        return "DICOM", "DICOM image"
    for signature, name, is_image in _SIGNATURES:
        if content.startswith(signature):
            return (name, f"{name} image") if is_image else (None, name)
    head = content[:512]
    try:
        head.decode("utf-8")
        return None, "text"
    except UnicodeDecodeError:
        return None, "unknown binary data"


@dataclass
class Inspection:
    """What silver needs to know about one image's bytes."""

    detected_format: str | None = None
    content_kind: str = ""
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    pixel_count: int | None = None
    decode_error: str | None = None
    mean_intensity: float | None = None
    std_intensity: float | None = None
    dynamic_range: float | None = None
    features: np.ndarray | None = None
    frame: bytes | None = None  # the gray array as 8-bit levels (`features.frame_bytes`): the cnn family's input
    dicom: DicomAttributes | None = None


def inspect_image(content: bytes, max_pixels: int, expected: str | None = None,
                  phases: Phases | None = None) -> Inspection:
    """Sniff, bound-check and decode an image at the feature size; compute quality measures and features.

    The header gives the size before any pixel is decoded, so a decompression bomb is never expanded.
    ``expected`` is the format the file's name promises: a ``.dcm`` file without the ``DICM`` preamble
    (an old or raw export) is still tried as DICOM. ``phases``: time decode, measures and features.
    """
    result = Inspection()
    since = time.perf_counter() if phases is not None else 0.0
    gray = _decode(content, max_pixels, expected, result)
    if phases is not None:
        since = phases.add("decode", since)
    if gray is None:
        return result
    levels = gray.astype(np.float32) * 255.0
    low, high = np.percentile(levels, [1, 99])
    result.mean_intensity = float(levels.mean())
    result.std_intensity = float(levels.std())
    result.dynamic_range = float(high - low)
    from streaming.imaging import features

    if phases is not None:
        since = phases.add("measures", since)
    result.features = features.extract_features(gray)
    result.frame = features.frame_bytes(gray)
    if phases is not None:
        phases.add("features", since)
    return result


def decoded_gray(content: bytes, max_pixels: int, expected: str | None = None) -> np.ndarray | None:
    """The fixed-size gray array silver computes an image's features from; None when it cannot be decoded
    (silver quarantines such files). Training-time augmentation starts from it."""
    return _decode(content, max_pixels, expected, Inspection())


def _decode(content: bytes, max_pixels: int, expected: str | None, result: Inspection) -> np.ndarray | None:
    """Sniff and decode into ``result`` (format, size, errors); the fixed-size gray array or None."""
    if not content:
        result.content_kind = "empty file"
        return None
    result.detected_format, result.content_kind = sniff(content)
    if result.detected_format is None and expected == "DICOM":
        return _decode_dicom(content, max_pixels, result, without_preamble=True)
    if result.detected_format == "DICOM":
        return _decode_dicom(content, max_pixels, result)
    if result.detected_format in DECODED_FORMATS:
        return _decode_raster(content, max_pixels, result)
    return None


def _decode_dicom(content: bytes, max_pixels: int, result: Inspection, without_preamble: bool = False
                  ) -> np.ndarray | None:
    from streaming.imaging import features
    from streaming.imaging.dicom import read_dicom

    read = read_dicom(content, max_pixels)
    if without_preamble:
        if read.attributes.header_error or not (read.attributes.has_pixel_data or read.attributes.modality):
            return None  # not DICOM after all: judged as what the bytes look like (text, unknown data, ...)
        result.detected_format, result.content_kind = "DICOM", "DICOM image without preamble"
    result.dicom = read.attributes
    result.width, result.height = read.width, read.height
    result.mode = read.attributes.photometric_interpretation
    result.pixel_count = (read.width or 0) * (read.height or 0) if read.width and read.height else None
    result.decode_error = read.decode_error
    return None if read.gray is None else features.resize_levels(read.gray)


def _decode_raster(content: bytes, max_pixels: int, result: Inspection) -> np.ndarray | None:
    """JPEG/PNG bytes → the fixed-size gray array (None when not decoded; ``result`` says why)."""
    from PIL import Image

    from streaming.imaging import features

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content))
        with image:
            result.width, result.height = image.size
            result.mode = image.mode
            result.pixel_count = result.width * result.height
            if result.pixel_count > max_pixels:
                return None
            return features.fixed_size_gray(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        result.decode_error = None
        result.pixel_count = result.pixel_count or _pixels_from_message(str(error), max_pixels)
        return None
    except Exception as error:  # any decoder failure is a property of the file
        message = str(error) or type(error).__name__
        kind = result.detected_format or "image"
        result.decode_error = f"corrupt or truncated {kind}: {message}"[:300]
        return None


def _pixels_from_message(message: str, max_pixels: int) -> int:
    # Pillow reports "Image size (N pixels) exceeds limit ..." before reading more than the header.
    import re

    match = re.search(r"\((\d+) pixels\)", message)
    return int(match.group(1)) if match else max_pixels + 1


def hash_patient(patient_key: str | None, salt: str) -> str | None:
    """Keyed hash (HMAC-SHA256) of a patient identifier: stable within a lakehouse, not reversible by
    hashing guessed identifiers without the lakehouse's key. Same construction as ``path_ref``."""
    return patient_ref(patient_key, salt)
