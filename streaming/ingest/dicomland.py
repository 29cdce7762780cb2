"""One received DICOM instance into landing, exactly once: where it goes and how it is written.

Shared by the network receivers (`streaming.ingest.receive`, C-STORE). An instance lands as
``<split>/<LABEL>/<SOPInstanceUID>.dcm`` (``unlabelled/<uid>.dcm`` when no rule labels it): landing is raw
(bronze-level) and may hold the UID; logs and events carry keyed hashes only. The bytes are written to a
hidden temporary name in the target folder (the landing source ignores hidden names), flushed to disk and
linked to the final name by `streaming.ingest.place.place_file`, all before the caller answers the sender:
an acknowledged instance is on disk, an unacknowledged one is sent again. The same instance again with the
same bytes adds nothing (``duplicate``); with other bytes it lands beside the first as a new version
(``<uid>-1.dcm``, ``renamed``), as for files.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError
from streaming.core.names import LABELS, SPLIT_ALIASES
from streaming.ingest.place import place_file
from streaming.ingest.plan import UNLABELLED

log = logging.getLogger(__name__)

__all__ = [
    "CANNOT_UNDERSTAND", "OUT_OF_RESOURCES", "SUCCESS", "TEMPORARY_PREFIX", "LabelRules", "Landed", "land_instance",
    "remove_stale_temporaries", "store_instance", "valid_uid",
]

TEMPORARY_PREFIX = ".xray-receive-"
# A DICOM UID: digits in dot-separated components, at most 64 characters (PS3.5 9.1). Checked before the
# UID becomes a file name: it comes from the network.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
# Errors of a full filesystem or quota: the sender is told "out of resources" and may try again later.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
STALE_TEMPORARY_SECONDS = 3600.0
# DICOM statuses of a store (PS3.4 B.2.3; STOW-RS's FailureReason takes the same values).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # refused: out of resources (a full disk): the sender keeps it and tries again
CANNOT_UNDERSTAND = 0xC000  # error: cannot understand (no valid SOP Instance UID)
OUTCOMES = {"placed": "stored", "duplicate": "duplicates", "renamed": "versions"}


def valid_uid(uid: str | None) -> bool:
    """Whether ``uid`` is a well-formed DICOM UID (so safe as a file name)."""
    return bool(uid) and len(uid) <= 64 and _UID.fullmatch(uid) is not None


@dataclass(frozen=True)
class Landed:
    """Where an instance landed and how: ``placed``, ``duplicate`` (already held) or ``renamed`` (a version)."""

    path: Path
    status: str


def _group(value: str, where: str) -> str:
    """``LABEL`` or ``split/LABEL`` checked, as the landing folder (``unsplit/LABEL`` without a split)."""
    parts = [part.strip() for part in value.split("/")]
    label = parts[-1].upper()
    split = SPLIT_ALIASES.get(parts[0].lower()) if len(parts) == 2 else "unsplit"
    if label not in LABELS or split is None or len(parts) > 2:
        raise ConfigError(f"invalid {where}: {value!r}; give LABEL or split/LABEL (labels {', '.join(LABELS)}, "
                          f"splits {', '.join(sorted(SPLIT_ALIASES))})")
    return f"{split}/{label}"


class LabelRules:
    """Label and split of a received instance: a labels CSV row for its SOP Instance UID first, then the rule
    of the calling AE title (``receive_labels``), else unlabelled."""

    def __init__(self, config: XrayConfig):
        self.by_ae = {ae.strip(): _group(value, f"receive_labels entry for {ae!r}")
                      for ae, value in config.receive_labels.items()}
        self.labels = None
        if config.receive_labels_file:
            from streaming.ingest.labels import read_labels

            self.labels = read_labels(config.receive_labels_file)

    def group(self, calling_ae: str, uid: str) -> str:
        """The landing folder (``train/NORMAL``, ``unlabelled``) of instance ``uid`` sent by ``calling_ae``."""
        if self.labels is not None:
            row = self.labels.by_uid.get(uid)
            if row is not None:
                return f"{row.split or 'unsplit'}/{row.label}"
        return self.by_ae.get(calling_ae.strip(), UNLABELLED)


def _write_temporary(folder: Path, data: bytes) -> Path:
    """``data`` flushed to disk under a hidden name in ``folder``; nothing left behind when that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}.tmp"
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return temporary


def land_instance(landing: Path, group: str, uid: str, data: bytes) -> Landed:
    """Write one instance's Part 10 bytes into ``landing/group/<uid>.dcm`` atomically and durably.

    Raises `ValueError` for a malformed UID and `OSError` when the disk refuses (nothing is left in landing
    then: neither a partial file nor a temporary).
    """
    if not valid_uid(uid):
        raise ValueError("not a valid DICOM SOP Instance UID")
    folder = landing / group
    temporary = _write_temporary(folder, data)
    try:
        final, status = place_file(temporary, folder, f"{uid}.dcm", move=True)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()  # still there only when place_file failed before moving it
    return Landed(final, status)


def remove_stale_temporaries(landing: Path, older_than: float = STALE_TEMPORARY_SECONDS) -> int:
    """Remove the receiver's temporaries a killed process left in landing (older than ``older_than`` s, so a
    second receiver's write in progress is never touched); returns how many."""
    removed = 0
    cutoff = time.time() - older_than
    for directory, subdirs, names in os.walk(landing):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in names:
            if name.startswith(TEMPORARY_PREFIX) and name.endswith(".tmp"):
                path = Path(directory) / name
                with contextlib.suppress(OSError):
                    if path.lstat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
    return removed


def store_instance(landing: Path, group: str, uid: str, data: bytes, sender: str) -> tuple[int, str]:
    """`land_instance` as a DICOM answer: (status, outcome) with outcome ``stored``, ``duplicates``,
    ``versions`` or ``failed``. ``sender`` (a keyed hash) is named in the log lines of failures."""
    try:
        landed = land_instance(landing, group, uid, data)
    except ValueError:
        log.warning("refused an instance from %s: its SOP Instance UID is malformed", sender)
        return CANNOT_UNDERSTAND, "failed"
    except OSError as error:
        what = "the disk is full" if error.errno in DISK_FULL_ERRNOS else type(error).__name__
        log.error("cannot write a received instance into landing (%s); answered 'out of resources', the "
                  "sender keeps it and may send it again", what)
        return OUT_OF_RESOURCES, "failed"
    log.debug("instance %s from %s: %s as %s", uid, sender, landed.status, landed.path)
    return SUCCESS, OUTCOMES[landed.status]
