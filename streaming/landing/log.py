"""The landing log: the durable record of what the landing scans found, the batch boundaries handed to
Spark, the entries ``clean_source`` moved out, and the scan's problems (under ``<checkpoint>/landing``).

Every found entry gets a number before any offset naming it is handed to Spark, and the end offset planned
for a start offset is kept, so a batch planned again from the same start covers exactly the same files.

A file is new again when its version changed (``allowOverwrites``, Auto Loader's ``cloudFiles.allowOverwrites``):
its status, or for a file that is read its size, modification time (ns) or inode (a file replaced under the
same name, by an atomic rename or in place). It then gets a new entry that names the one it replaces, and a
line in ``replaced.jsonl`` (numbers only) that bronze's event reports; the old entry and its bronze row stay.

The log is compacted (`LandingLog.compact`): the entries of batches Spark can no longer replay are dropped,
except the path (and version) of an entry still in landing, so that a file left there is never new again
unless it changes. ``base.json`` holds the first number kept, those paths and their versions; every step of
a compaction leaves a log that loads the same.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from streaming.core.errors import LandingLogCompactedError
from streaming.landing.scan import Found, Problem, differs, version

__all__ = ["Entries", "LandingLog", "exclusive", "read_base", "read_lines", "read_problems", "read_replaced",
           "write_atomically"]


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


write_atomically = _write_atomically  # also the erasure journal's (`streaming.lakehouse.erasures`)


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return _decode(path.read_text(encoding="utf-8"))


def _decode(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash was never acted on (it is written before the offset is returned)
    return records


class Entries(Sequence[Found]):
    """The log's entries by number: ``len()`` is the next number, ``entries[n]`` and ``entries[a:b]`` take
    numbers; numbers below ``first`` were compacted away and asking for them raises
    `LandingLogCompactedError` (never an empty batch). Iterating yields the entries kept."""

    def __init__(self, folder: Path, first: int = 0):
        self.folder = folder
        self.first = first
        self._kept: list[Found] = []

    def __len__(self) -> int:
        return self.first + len(self._kept)

    def __getitem__(self, index):  # an int or a slice, as for a list
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("landing entries are taken in order")
            if stop <= start:
                return []
            self.require(start)
            return self._kept[start - self.first:stop - self.first]
        number = index + len(self) if index < 0 else index
        if number >= len(self):
            raise IndexError(f"landing entry {index} is not logged yet")
        self.require(number)
        return self._kept[number - self.first]

    def __iter__(self) -> Iterator[Found]:
        return iter(self._kept)

    @property
    def kept(self) -> list[Found]:
        """The entries kept, from number ``first`` on (read only)."""
        return self._kept

    def require(self, number: int) -> None:
        """Raise `LandingLogCompactedError` when entry ``number`` was compacted away."""
        if number < self.first:
            raise LandingLogCompactedError(
                f"a bronze batch asks for landing entries from number {number}, but the landing log "
                f"({self.folder}) keeps them from number {self.first} on: the entries of batches the Spark "
                "checkpoint no longer retains are compacted away (README: The landing log), and the checkpoint "
                f"was rewound (xray recover) further back than that. Restore {self.folder.parent} (with its "
                "landing folder) from a backup taken before the rewind, and the table's lost Delta commit from "
                "a backup (README: Recovery)")

    def extend(self, entries: Iterable[Found]) -> None:
        self._kept.extend(entries)

    def drop_before(self, number: int) -> None:
        del self._kept[:max(0, number - self.first)]
        self.first = max(self.first, number)


class LandingLog:
    """The durable record of a landing source under ``folder``: every entry found (``files/*.jsonl``, one
    segment per scan that found something, named after its first number), the end planned for each start
    offset (``plan.jsonl``), the entries moved out of landing by ``clean_source`` (``cleaned.jsonl``), what a
    compaction kept of older entries (``base.json``) and the scan's problems.

    Entries are replayed in order at load; cleaned records then forget what left landing."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        (self.folder / "files").mkdir(parents=True, exist_ok=True)
        base = read_base(self.folder)
        self.entries = Entries(self.folder, base["first_seq"])
        # Entries below the first kept number that are still in landing: their path keeps them known, and
        # their version (when recorded) tells a replaced file.
        self._old: dict[int, str] = {seq: path for path, seq in base["seen"].items()}
        self._old_versions: dict[int, list] = base["versions"]
        for segment in self._segments():
            for record in read_lines(segment):
                if record.get("seq") == len(self.entries):
                    self.entries.extend([Found(**record)])
        plan = {r["start"]: r["end"] for r in read_lines(self.folder / "plan.jsonl")}
        self.plan: dict[int, int] = {s: e for s, e in plan.items() if s >= self.entries.first}
        # A compaction interrupted after its first step: the next one finishes it, even with nothing to drop.
        self.untidy = len(plan) > len(self.plan) or bool(self._segments_below(self.entries.first))
        self._seen: dict[str, int] = {**base["seen"], **{e.path: e.seq for e in self.entries}}
        self._cleaned_at: tuple[int, int] = (-1, 0)  # (inode, bytes read) of cleaned.jsonl
        self.refresh_cleaned()
        # A replacement logged just before a crash cut its replaced.jsonl line: written now.
        known = read_replaced(self.folder)
        self._record_replaced([e for e in self.entries if e.replaces is not None and e.seq not in known])

    def _segments(self) -> list[Path]:
        return sorted((self.folder / "files").glob("*.jsonl"))

    def _segments_below(self, first: int) -> list[Path]:
        """The segments holding only numbers below ``first`` (a segment runs up to the next one's name)."""
        segments = self._segments()
        ends = [int(s.stem) if s.stem.isdigit() else 0 for s in segments[1:]] + [len(self.entries)]
        return [segment for segment, end in zip(segments, ends, strict=False) if end <= first]

    def unlogged(self, found: list[Found], overwrites: bool = True) -> list[Found]:
        """The entries not seen before and, with ``overwrites``, those whose version changed since they were
        logged (``replaces`` set to the number of the entry they replace)."""
        self.refresh_cleaned()
        new = []
        first, kept = self.entries.first, self.entries.kept
        for item in found:
            seq = self._seen.get(item.path)
            if seq is None:
                new.append(item)
            elif not overwrites:
                continue
            elif seq >= first:
                logged = kept[seq - first]  # the common case, every trigger for every file: kept cheap
                if (logged.mtime_ns != item.mtime_ns or logged.size != item.size or logged.inode != item.inode
                        or logged.status != item.status) and differs(version(logged), item):
                    item.replaces = seq
                    new.append(item)
            elif differs(self._old_versions.get(seq), item):
                item.replaces = seq
                new.append(item)
        return new

    def _logged_version(self, seq: int) -> list | None:
        if seq >= self.entries.first:
            return version(self.entries[seq])
        return self._old_versions.get(seq)

    def add_new(self, found: list[Found], overwrites: bool = True) -> list[Found]:
        """Log the entries not seen before, or changed (`unlogged`), oldest first, each with its sequence
        number; returns them."""
        return self.add(self.unlogged(found, overwrites))

    def add(self, found: list[Found]) -> list[Found]:
        """Log entries `unlogged` returned (oldest first), each with its sequence number; returns them."""
        new = sorted(found, key=lambda f: (f.mtime_ms, f.path))
        if not new:
            return []
        for offset, item in enumerate(new):
            item.seq = len(self.entries) + offset
        text = "".join(json.dumps(asdict(item)) + "\n" for item in new)
        _write_atomically(self.folder / "files" / f"{new[0].seq:012d}.jsonl", text)
        self.entries.extend(new)
        self._seen.update((item.path, item.seq) for item in new)
        self._record_replaced([item for item in new if item.replaces is not None])
        return new

    def _record_replaced(self, replacements: list[Found]) -> None:
        """Append (new number, replaced number) lines for bronze's event: numbers only, no path."""
        if replacements:
            with open(self.folder / "replaced.jsonl", "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps({"seq": e.seq, "replaces": e.replaces}) + "\n" for e in replacements))
                handle.flush()
                os.fsync(handle.fileno())

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
                info = os.fstat(handle.fileno())
                inode, offset = self._cleaned_at
                if inode != info.st_ino or offset > info.st_size:
                    offset = 0  # rewritten by a compaction: read it again (forgetting twice changes nothing)
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        self._cleaned_at = (info.st_ino, offset + len(complete))
        for record in _decode(complete.decode("utf-8")):
            self._forget(int(record["seq"]))

    def _forget(self, seq: int) -> None:
        if seq < self.entries.first:
            path = self._old.get(seq)
            self.untidy = True  # a cleaned record below the first number: the next compaction drops it
        else:
            path = self.entries[seq].path if seq < len(self.entries) else None
        if path is not None and self._seen.get(path) == seq:
            del self._seen[path]
            self._old.pop(seq, None)
            self._old_versions.pop(seq, None)

    @property
    def old_paths(self) -> int:
        """How many entries below the first kept number are still known by their path (still in landing)."""
        return len(self._old)

    def compact(self, keep_from: int) -> bool:
        with exclusive(self.folder):  # `erase_paths` (xray forget, another process) rewrites the same files
            return self._compact(keep_from)

    def _compact(self, keep_from: int) -> bool:
        """Drop the entries below ``keep_from`` (no batch Spark may replay names them) but keep the path of
        those still in landing, so they are never new again; drop the plan and cleaned records below it too.
        Returns whether anything was rewritten.

        Step by step, each leaving a log that loads as the compacted one: ``base.json`` (atomically), then
        the segments wholly below, then ``plan.jsonl`` and ``cleaned.jsonl`` (each atomically). Runs in the
        stream reader (the only writer of files/ and plan.jsonl) between batches, when the driver does not
        append to cleaned.jsonl."""
        self.refresh_cleaned()
        first = min(max(keep_from, self.entries.first), len(self.entries))
        if first == self.entries.first and not self.untidy:
            return False
        kept = {path: seq for path, seq in self._seen.items() if seq < first}
        versions = {seq: known for seq in kept.values() if (known := self._logged_version(seq)) is not None}
        _write_atomically(self.folder / "base.json", json.dumps(
            {"first_seq": first, "seen": kept, "versions": {str(seq): v for seq, v in versions.items()}}))
        for segment in self._segments_below(first):
            segment.unlink(missing_ok=True)
        self.entries.drop_before(first)
        self._old = {seq: path for path, seq in kept.items()}
        self._old_versions = versions
        self.plan = {start: end for start, end in self.plan.items() if start >= first}
        _write_atomically(self.folder / "plan.jsonl", "".join(
            json.dumps({"start": start, "end": end}) + "\n" for start, end in sorted(self.plan.items())))
        cleaned = [r["seq"] for r in read_lines(self.folder / "cleaned.jsonl") if r.get("seq", -1) >= first]
        text = "".join(json.dumps({"seq": seq}) + "\n" for seq in cleaned)
        _write_atomically(self.folder / "cleaned.jsonl", text)
        self._cleaned_at = (os.stat(self.folder / "cleaned.jsonl").st_ino, len(text.encode("utf-8")))
        replaced = {seq: old for seq, old in read_replaced(self.folder).items() if seq >= first}
        if replaced:
            _write_atomically(self.folder / "replaced.jsonl", "".join(
                json.dumps({"seq": seq, "replaces": old}) + "\n" for seq, old in sorted(replaced.items())))
        else:
            (self.folder / "replaced.jsonl").unlink(missing_ok=True)
        self.untidy = False
        return True

    def compact_if_due(self, keep_from: int, at_least: int) -> bool:
        """Compact when ``at_least`` entries (and at least as many as the old paths kept, which each
        compaction writes again: the work stays proportional to what is dropped) can be dropped, or when
        an interrupted compaction is to be finished."""
        droppable = min(keep_from, len(self.entries)) - self.entries.first
        if self.untidy or droppable >= max(1, at_least, self.old_paths):
            return self.compact(keep_from)
        return False

    def write_problems(self, problems: list[Problem]) -> None:
        """Keep the current problems (with when each was first seen) for the driver and `xray status`."""
        previous = {(p["kind"], p["path"]): p for p in read_problems(self.folder)}
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        current = [{**asdict(p), "first_seen": previous.get((p.kind, p.path), {}).get("first_seen", now)}
                   for p in problems]
        if current != list(previous.values()):
            _write_atomically(self.folder / "problems.json", json.dumps(current))


def read_base(folder: Path) -> dict:
    """What the last compaction kept: the first entry number kept, the paths of older entries still in
    landing and their versions by number (none yet: everything from number 0)."""
    try:
        base = json.loads((folder / "base.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"first_seq": 0, "seen": {}, "versions": {}}
    return {"first_seq": int(base["first_seq"]), "seen": {str(p): int(s) for p, s in base["seen"].items()},
            "versions": {int(s): list(v) for s, v in base.get("versions", {}).items()}}


def read_replaced(folder: Path) -> dict[int, int]:
    """The entries logged as replacing an older one: {new number: replaced number}."""
    return {int(r["seq"]): int(r["replaces"]) for r in read_lines(Path(folder) / "replaced.jsonl")
            if "seq" in r and "replaces" in r}


def read_problems(folder: Path) -> list[dict]:
    """The problems the landing scan recorded last (kind, path relative to landing, detail, first_seen)."""
    try:
        return json.loads((Path(folder) / "problems.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold the log folder's lock: a compaction (the stream) and an erasure (`xray forget`) both rewrite
    ``base.json`` and segments, from two processes; the kernel drops the lock with its holder."""
    descriptor = os.open(Path(folder) / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
