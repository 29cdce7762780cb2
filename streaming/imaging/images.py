"""Reading, sniffing, decoding and measuring image files. Runs on executors (inside Arrow UDFs).

Nothing here raises on bad input: every problem becomes a value (a status or an error text) that the
expectations of the silver layer turn into a quarantine row with a readable reason.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from streaming.core.pseudonym import patient_ref

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
    (b"DICM", "DICOM", False),
    (b"%PDF", "PDF document", False),
    (b"PK\x03\x04", "ZIP archive", False),
    (b"\x1f\x8b", "gzip archive", False),
)
EXPECTED_FORMAT_BY_EXTENSION = {".jpeg": "JPEG", ".jpg": "JPEG", ".png": "PNG"}


def sniff(content: bytes) -> tuple[str | None, str]:
    """(image format or None, kind) from the first bytes: ("JPEG", "JPEG image"), (None, "PDF document")."""
    if len(content) >= 132 and content[128:132] == b"DICM":
        return None, "DICOM file"
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


def inspect_image(content: bytes, max_pixels: int) -> Inspection:
    """Sniff, bound-check and decode an image at the feature size; compute quality measures and features.

    The header gives the size before any pixel is decoded, so a decompression bomb is never expanded.
    """
    from PIL import Image

    from streaming.imaging import features

    result = Inspection()
    if not content:
        result.content_kind = "empty file"
        return result
    result.detected_format, result.content_kind = sniff(content)
    if result.detected_format not in ("JPEG", "PNG"):
        return result
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content))
        with image:
            result.width, result.height = image.size
            result.mode = image.mode
            result.pixel_count = result.width * result.height
            if result.pixel_count > max_pixels:
                return result
            gray = features.fixed_size_gray(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        result.decode_error = None
        result.pixel_count = result.pixel_count or _pixels_from_message(str(error), max_pixels)
        return result
    except Exception as error:  # noqa: BLE001 - any decoder failure is a property of the file
        message = str(error) or type(error).__name__
        kind = result.detected_format or "image"
        result.decode_error = f"corrupt or truncated {kind}: {message}"[:300]
        return result
    levels = gray.astype(np.float32) * 255.0
    low, high = np.percentile(levels, [1, 99])
    result.mean_intensity = float(levels.mean())
    result.std_intensity = float(levels.std())
    result.dynamic_range = float(high - low)
    result.features = features.extract_features(gray)
    return result


def _pixels_from_message(message: str, max_pixels: int) -> int:
    # Pillow reports "Image size (N pixels) exceeds limit ..." before reading more than the header.
    import re

    match = re.search(r"\((\d+) pixels\)", message)
    return int(match.group(1)) if match else max_pixels + 1


def hash_patient(patient_key: str | None, salt: str) -> str | None:
    """Keyed hash (HMAC-SHA256) of a patient identifier: stable within a lakehouse, not reversible by
    hashing guessed identifiers without the lakehouse's key. Same construction as ``path_ref``."""
    return patient_ref(patient_key, salt)
