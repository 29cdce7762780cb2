"""The landing folder as the service sees it: a scan that reads every path as the filesystem path it is
(what the scans found is kept by `streaming.landing.log`).

Why not Spark's file source: it hands back URI-like strings (a file named ``a%41.jpeg`` or ``x#y.jpeg`` came
back as another file's name), follows symlinks out of landing and around directory loops, opens FIFOs and
fails the whole query on one unreadable folder. Here:

* the scan uses ``lstat`` only: a symlink is followed only when its target resolves inside landing or an
  allowed root (``landing_allowed_roots``); one pointing elsewhere is listed as ``outside_landing`` and its
  target is never opened; FIFOs, sockets and devices are listed as what they are and never opened; a link
  to itself or round a loop of links is listed as ``link_loop`` (the kernel's ELOOP: never followed round);
* a folder is walked once (by device and inode), so loops never repeat a file, and a symlinked folder that
  points inside landing is not walked again (its files are read at their own path);
* an unreadable folder (or a name that is not UTF-8) is skipped and recorded as a *problem*; the rest flows;
* DICOM is picked up by extension (``.dcm``, ``.dicom``) and, for the extensionless or UID names PACS
  exports use, by content: the first 132 bytes of such a regular file are read once (``DICM`` preamble);
* every file found gets a sequence number in the log (``<checkpoint>/landing``) before any offset naming it
  is handed to Spark, and the end offset planned for a start offset is recorded too, so a batch re-planned
  from the same start (lost ``offsets/N``, ``xray recover``) gets exactly the same files.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from streaming.core.dicomfile import is_dicom_file
from streaming.core.names import is_image_name, may_be_dicom_name

__all__ = [
    "NEVER_OPENED",
    "Found",
    "Problem",
    "differs",
    "scan_landing",
    "version",
    "within",
]

# Listing statuses of entries whose bytes are never read (the silver rules quarantine them).
NEVER_OPENED = ("outside_landing", "fifo", "socket", "char_device", "block_device", "broken_link", "link_loop",
                "not_regular")


# Whether a DICOM-named file (no extension, or a UID) starts like DICOM, by (device, inode, size, mtime):
# each scan looks at a new or changed file's first bytes once, not at every trigger.
_SNIFFED: dict[tuple[int, int, int, int], bool] = {}
_SNIFFED_LIMIT = 100_000


def _is_input(name: str, path: str, info: os.stat_result) -> bool:
    """Whether a regular file is an input: an image or DICOM extension, or a DICOM name with DICOM content
    (a file still being copied has fewer than 132 bytes, or another mtime: it is looked at again)."""
    if is_image_name(name):
        return True
    if not may_be_dicom_name(name) or not stat.S_ISREG(info.st_mode):
        return False
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    if key not in _SNIFFED:
        if len(_SNIFFED) >= _SNIFFED_LIMIT:
            _SNIFFED.clear()
        _SNIFFED[key] = is_dicom_file(path)
    return _SNIFFED[key]


def within(path: str, roots: tuple[str, ...]) -> bool:
    """Whether a resolved path is one of ``roots`` or below one."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def special_kind(mode: int) -> str:
    """The listing status of a file that is not a regular file."""
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "char_device"
    if stat.S_ISBLK(mode):
        return "block_device"
    return "not_regular"


@dataclass
class Found:
    """One landing entry: ``status`` is ``file`` (a regular file), ``link`` (a symlink to a regular file in
    landing or an allowed root: read ``target``) or one of NEVER_OPENED.

    ``mtime_ns`` and ``inode`` (of what is read: a link's target) with ``size`` name the version of the file:
    one that changes is a new entry (``replaces``: the number of the entry it replaces). Entries logged
    before they were recorded have None."""

    path: str
    mtime_ms: int
    size: int | None
    status: str
    target: str | None = None
    seq: int = -1
    mtime_ns: int | None = None
    inode: int | None = None
    replaces: int | None = None


@dataclass
class Problem:
    """Something in landing the scan had to skip: ``kind`` is ``unreadable_folder``, ``folder_link_inside``
    or ``name_not_utf8``; ``path`` is relative to landing."""

    kind: str
    path: str
    detail: str


def version(entry: Found) -> list:
    """What identifies the version of a logged entry (kept for compacted entries in ``base.json``)."""
    return [entry.status, entry.size, entry.mtime_ms, entry.mtime_ns, entry.inode]


def differs(logged: list | None, found: Found) -> bool:
    """Whether ``found`` is another version of the file than the one logged. An entry whose version was
    never recorded (logged before versions were) is taken as the same: an upgrade re-ingests nothing."""
    if logged is None:
        return False
    status, size, mtime_ms, mtime_ns, inode = logged
    if status != found.status:
        return True
    if status not in ("file", "link"):
        return False  # never opened: only becoming something else (a file, a fixed link) makes it new
    if size != found.size:
        return True
    if mtime_ns is not None and found.mtime_ns is not None:
        if mtime_ns != found.mtime_ns:
            return True
    elif mtime_ms != found.mtime_ms:
        return True
    return inode is not None and found.inode is not None and inode != found.inode


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _classify_link(entry: os.DirEntry, shown: str, roots: tuple[str, ...]) -> tuple[Found | None, str | None]:
    """A symlink → (its entry, or None) and the folder to walk when it is a folder inside an allowed root."""
    target = os.path.realpath(entry.path)
    info = entry.stat(follow_symlinks=False)
    mtime = int(info.st_mtime_ns // 1_000_000)
    try:
        target_info = os.stat(target)
    except OSError as error:
        # A dangling DICOM-named link cannot be looked into: reported only with an image/DICOM extension.
        # A link leading to itself (or round a loop of links) is never followed round: listed as such.
        status = "link_loop" if error.errno == errno.ELOOP else "broken_link"
        return (Found(shown, mtime, None, status) if is_image_name(entry.name) else None), None
    if not within(target, roots):
        # Reported whatever its name: a link leading out of landing is worth a quarantine row.
        return Found(shown, mtime, None, "outside_landing"), None
    if stat.S_ISDIR(target_info.st_mode):
        return None, target
    if not (is_image_name(entry.name) or _is_input(entry.name, target, target_info)):
        return None, None
    if stat.S_ISREG(target_info.st_mode):
        return Found(shown, int(target_info.st_mtime_ns // 1_000_000), target_info.st_size, "link", target,
                     mtime_ns=target_info.st_mtime_ns, inode=target_info.st_ino), None
    return Found(shown, mtime, None, special_kind(target_info.st_mode)), None


def scan_landing(landing: Path | str, allowed_roots: tuple[str, ...] = (), modified_after_ms: int | None = None
                 ) -> tuple[list[Found], list[Problem]]:
    """Every image entry under ``landing`` (see the module docstring), and what had to be skipped.

    Entries reached through a link to an allowed folder keep the path they have in landing; ``target`` is
    where they are read."""
    root = os.path.realpath(landing)
    roots = (root, *(os.path.realpath(r) for r in allowed_roots))
    found: list[Found] = []
    problems: list[Problem] = []
    visited: set[tuple[int, int]] = set()
    pending = [(root, root)]  # (the folder as landing shows it, where it really is)
    while pending:
        shown_folder, folder = pending.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in visited:
                continue
            visited.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError as error:
            problems.append(Problem("unreadable_folder", os.path.relpath(shown_folder, root),
                                    error.strerror or "error"))
            continue
        for entry in listed:
            shown = os.path.join(shown_folder, entry.name)
            if not _utf8(shown):
                problems.append(Problem("name_not_utf8", repr(os.path.relpath(shown, root)),
                                        "rename it with UTF-8 characters"))
                continue
            try:
                item, walk = _scan_entry(entry, shown, roots)
            except OSError:
                continue  # gone between listing the folder and looking at the entry
            if walk is not None and within(walk, (root,)) and entry.is_symlink():
                problems.append(Problem("folder_link_inside", os.path.relpath(shown, root),
                                        "a link to a folder inside landing: its files are read at their own path"))
            elif walk is not None:
                pending.append((shown, walk))
            if item is not None and (modified_after_ms is None or item.mtime_ms > modified_after_ms):
                found.append(item)
    return found, problems


def _scan_entry(entry: os.DirEntry, shown: str, roots: tuple[str, ...]) -> tuple[Found | None, str | None]:
    """One directory entry → (its Found row or None, the real folder to walk or None)."""
    if entry.name.startswith((".", "_")):
        return None, None
    if entry.is_symlink():
        return _classify_link(entry, shown, roots)
    if entry.is_dir(follow_symlinks=False):
        return None, entry.path
    if not (is_image_name(entry.name) or may_be_dicom_name(entry.name)):
        return None, None  # decided by the name alone: no stat for a README.txt at every trigger
    info = entry.stat(follow_symlinks=False)
    if not _is_input(entry.name, entry.path, info):
        return None, None
    mtime = int(info.st_mtime_ns // 1_000_000)
    if not stat.S_ISREG(info.st_mode):
        return Found(shown, mtime, None, special_kind(info.st_mode)), None
    version = {"mtime_ns": info.st_mtime_ns, "inode": info.st_ino}
    if shown != entry.path:  # inside a linked folder: read where it really is
        return Found(shown, mtime, info.st_size, "link", entry.path, **version), None
    return Found(shown, mtime, info.st_size, "file", **version), None


