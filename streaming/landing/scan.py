"""The landing folder as the service sees it: a scan that reads every path as the filesystem path it is, and
a durable log of what the scans found.

Why not Spark's file source: it hands back URI-like strings (a file named ``a%41.jpeg`` or ``x#y.jpeg`` came
back as another file's name), follows symlinks out of landing and around directory loops, opens FIFOs and
fails the whole query on one unreadable folder. Here:

* the scan uses ``lstat`` only: a symlink is followed only when its target resolves inside landing or an
  allowed root (``landing_allowed_roots``); one pointing elsewhere is listed as ``outside_landing`` and its
  target is never opened; FIFOs, sockets and devices are listed as what they are and never opened;
* a folder is walked once (by device and inode), so loops never repeat a file, and a symlinked folder that
  points inside landing is not walked again (its files are read at their own path);
* an unreadable folder (or a name that is not UTF-8) is skipped and recorded as a *problem*; the rest flows;
* every file found gets a sequence number in the log (``<checkpoint>/landing``) before any offset naming it
  is handed to Spark, and the end offset planned for a start offset is recorded too, so a batch re-planned
  from the same start (lost ``offsets/N``, ``xray recover``) gets exactly the same files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "NEVER_OPENED",
    "Found",
    "LandingLog",
    "Problem",
    "is_landing_image",
    "read_problems",
    "scan_landing",
    "within",
]

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
IGNORED_SUFFIXES = (".tmp", ".part", "._copying_")
# Listing statuses of entries whose bytes are never read (the silver rules quarantine them).
NEVER_OPENED = ("outside_landing", "fifo", "socket", "char_device", "block_device", "broken_link", "not_regular")


def is_landing_image(name: str) -> bool:
    """Whether bronze picks up a file of this name: image extensions in any case, hidden (``.*``, ``_*``)
    and temporary (``*.tmp``, ``*.part``, ``*._COPYING_``) names left alone."""
    lower = name.lower()
    if name.startswith((".", "_")) or lower.endswith(IGNORED_SUFFIXES):
        return False
    return lower.endswith(IMAGE_SUFFIXES)


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
    landing or an allowed root: read ``target``) or one of NEVER_OPENED."""

    path: str
    mtime_ms: int
    size: int | None
    status: str
    target: str | None = None
    seq: int = -1


@dataclass
class Problem:
    """Something in landing the scan had to skip: ``kind`` is ``unreadable_folder``, ``folder_link_inside``
    or ``name_not_utf8``; ``path`` is relative to landing."""

    kind: str
    path: str
    detail: str


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
    except OSError:
        return (Found(shown, mtime, None, "broken_link") if is_landing_image(entry.name) else None), None
    if not within(target, roots):
        # Reported whatever its name: a link leading out of landing is worth a quarantine row.
        return Found(shown, mtime, None, "outside_landing"), None
    if stat.S_ISDIR(target_info.st_mode):
        return None, target
    if not is_landing_image(entry.name):
        return None, None
    if stat.S_ISREG(target_info.st_mode):
        return Found(shown, int(target_info.st_mtime_ns // 1_000_000), target_info.st_size, "link", target), None
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
    if not is_landing_image(entry.name):
        return None, None
    info = entry.stat(follow_symlinks=False)
    mtime = int(info.st_mtime_ns // 1_000_000)
    if not stat.S_ISREG(info.st_mode):
        return Found(shown, mtime, None, special_kind(info.st_mode)), None
    if shown != entry.path:  # inside a linked folder: read where it really is
        return Found(shown, mtime, info.st_size, "link", entry.path), None
    return Found(shown, mtime, info.st_size, "file"), None


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash was never acted on (it is written before the offset is returned)
    return records


class LandingLog:
    """The durable record of a landing source under ``folder``: every entry found (``files/*.jsonl``, one
    segment per scan that found something), the end planned for each start offset (``plan.jsonl``), the
    entries moved out of landing by ``clean_source`` (``cleaned.jsonl``) and the scan's problems.

    Entries are replayed in order at load; cleaned records then forget what left landing."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.entries: list[Found] = []
        self.plan: dict[int, int] = {}
        self._seen: dict[str, int] = {}
        (self.folder / "files").mkdir(parents=True, exist_ok=True)
        for segment in sorted((self.folder / "files").glob("*.jsonl")):
            for record in _read_lines(segment):
                if record.get("seq") == len(self.entries):
                    self.entries.append(Found(**record))
        self.plan = {r["start"]: r["end"] for r in _read_lines(self.folder / "plan.jsonl")}
        self._seen = {e.path: e.seq for e in self.entries}
        self._cleaned_offset = 0
        self.refresh_cleaned()

    def add_new(self, found: list[Found]) -> list[Found]:
        """Log the entries not seen before (oldest first), each with its sequence number; returns them."""
        self.refresh_cleaned()
        new = sorted((f for f in found if f.path not in self._seen), key=lambda f: (f.mtime_ms, f.path))
        if not new:
            return []
        for offset, item in enumerate(new):
            item.seq = len(self.entries) + offset
        text = "".join(json.dumps(asdict(item)) + "\n" for item in new)
        _write_atomically(self.folder / "files" / f"{new[0].seq:012d}.jsonl", text)
        self.entries.extend(new)
        self._seen.update((item.path, item.seq) for item in new)
        return new

    def record_plan(self, start: int, end: int) -> None:
        _append_line(self.folder / "plan.jsonl", {"start": start, "end": end})
        self.plan[start] = end

    @staticmethod
    def record_cleaned(folder: Path, sequence_numbers: list[int]) -> None:
        """Log entries that left landing (archived or deleted by ``clean_source``, on the driver): a file
        dropped later at the same path is a new file."""
        if sequence_numbers:
            with open(Path(folder) / "cleaned.jsonl", "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps({"seq": seq}) + "\n" for seq in sequence_numbers))
                handle.flush()
                os.fsync(handle.fileno())

    def refresh_cleaned(self) -> None:
        """Forget the entries cleaned since the last call (read on from where the last call stopped). Only
        the entry that was cleaned is forgotten, not a newer file dropped at the same path since."""
        try:
            with open(self.folder / "cleaned.jsonl", "rb") as handle:
                handle.seek(self._cleaned_offset)
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        self._cleaned_offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            seq = json.loads(line)["seq"]
            if 0 <= seq < len(self.entries) and self._seen.get(self.entries[seq].path) == seq:
                del self._seen[self.entries[seq].path]

    def write_problems(self, problems: list[Problem]) -> None:
        """Keep the current problems (with when each was first seen) for the driver and `xray status`."""
        previous = {(p["kind"], p["path"]): p for p in read_problems(self.folder)}
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        current = [{**asdict(p), "first_seen": previous.get((p.kind, p.path), {}).get("first_seen", now)}
                   for p in problems]
        if current != list(previous.values()):
            _write_atomically(self.folder / "problems.json", json.dumps(current))


def read_problems(folder: Path) -> list[dict]:
    """The problems the landing scan recorded last (kind, path relative to landing, detail, first_seen)."""
    try:
        return json.loads((Path(folder) / "problems.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
