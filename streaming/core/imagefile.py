"""Whether a file holds a whole image: the end of its bytes, read as what its first bytes say it is.

Used where a file may still be being written: the inbox watcher (`streaming.ingest.watch`) and the landing
source's admission of a file dropped straight into landing (`streaming.landing.settle`).
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

from streaming.core.dicomfile import DICOM_PREAMBLE_LENGTH, has_dicom_preamble

__all__ = ["is_complete_image"]

JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END_CHUNK = b"IEND\xaeB`\x82"  # chunk type and its fixed CRC
_TAIL = 64 * 1024


def _last_nonzero_offset(handle, size: int) -> int:
    """Offset of the last byte that is not zero padding, or -1 when the file is all zeros."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL)
        handle.seek(start)
        block = handle.read(end - start)
        stripped = block.rstrip(b"\x00")
        if stripped:
            return start + len(stripped) - 1
        end = start
    return -1


def is_complete_image(path: str | Path) -> bool:
    """True when the file is a whole JPEG (ends with ``FF D9``, zero padding allowed), PNG (has ``IEND``) or
    DICOM (see `_is_complete_dicom`).

    The format comes from the first bytes, not the name. Unknown formats, empty, missing or unreadable
    files are not complete.
    """
    try:
        # Never follows a link nor blocks on a FIFO swapped in: only a regular file is looked into.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                return False
            head = handle.read(DICOM_PREAMBLE_LENGTH)
            size = info.st_size
            if head.startswith(JPEG_START):
                last = _last_nonzero_offset(handle, size)
                if last < 3:
                    return False
                handle.seek(last - 1)
                return handle.read(2) == JPEG_END
            if head.startswith(PNG_SIGNATURE):
                handle.seek(max(len(PNG_SIGNATURE), size - _TAIL))
                return PNG_END_CHUNK in handle.read()
            if has_dicom_preamble(head):
                handle.seek(0)
                return _is_complete_dicom(handle)
    except OSError:
        return False
    return False


def _is_complete_dicom(handle) -> bool:
    """Whether a DICOM file holds pixel data and every value its header declares.

    DICOM has no end marker. pydicom reads a cut file without an error (a short last value, or an
    encapsulated pixel sequence without its delimiter, only warned about), so the check is ours: the
    elements stay raw after reading (pydicom converts them on access), and a raw value shorter than its
    declared length means the copy is not finished. A file cut between two elements before the pixel data
    has no pixel data yet: not complete either.
    """
    import pydicom
    from pydicom.dataelem import RawDataElement

    undefined = 0xFFFFFFFF
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = pydicom.dcmread(handle)
        except Exception:  # a header pydicom cannot read is not a complete file (yet)
            return False
    if any("end of file" in str(w.message).lower() for w in caught):
        return False
    if not any(k in dataset for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return False
    for tag in dataset.keys():
        raw = dataset.get_item(tag)
        if isinstance(raw, RawDataElement) and raw.length != undefined and raw.value is not None \
                and len(raw.value) < raw.length:
            return False
    return True
