"""Whether a landing file is DICOM by its content: the 128-byte preamble followed by ``DICM``.

PACS exports often carry no extension (``IM000001``) or a UID as name, so the scan, the staging and the
watcher look at the first 132 bytes of such files (and only of such files: see
`streaming.core.names.may_be_dicom_name`). The file is opened the way executors open landing files: without
following a symlink and without blocking on a FIFO, and only when it is a regular file.
"""

from __future__ import annotations

import os
import stat

from streaming.core.names import is_image_name, may_be_dicom_name

__all__ = ["DICOM_PREAMBLE_LENGTH", "has_dicom_preamble", "is_dicom_file", "is_input_file"]

DICOM_PREAMBLE_LENGTH = 132  # 128 bytes of preamble, then the four bytes b"DICM" (PS3.10 section 7.1)


def has_dicom_preamble(head: bytes) -> bool:
    """Whether bytes start like a DICOM Part 10 file."""
    return len(head) >= DICOM_PREAMBLE_LENGTH and head[128:DICOM_PREAMBLE_LENGTH] == b"DICM"


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether the regular file at ``path`` starts like DICOM. False for anything that cannot be read, a
    symlink, a FIFO or a device (never opened in a way that blocks or follows a link)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        descriptor = os.open(path, flags)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return False
        return has_dicom_preamble(os.pread(descriptor, DICOM_PREAMBLE_LENGTH, 0))
    except OSError:
        return False
    finally:
        os.close(descriptor)


def is_input_file(path: str | os.PathLike, name: str | None = None) -> bool:
    """Whether a file is an input of the pipeline: an image or DICOM extension, or a DICOM name
    (no extension, or a UID) whose content starts like DICOM."""
    name = os.path.basename(os.fspath(path)) if name is None else name
    return is_image_name(name) or (may_be_dicom_name(name) and is_dicom_file(path))
