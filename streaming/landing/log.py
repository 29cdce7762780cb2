"""The landing log: the durable record of what the landing scans found, the batch boundaries handed to
Spark, the entries ``clean_source`` moved out, and the scan's problems (under ``<checkpoint>/landing``).

Every found entry gets a number before any offset naming it is handed to Spark, and the end offset planned
for a start offset is kept, so a batch planned again from the same start covers exactly the same files."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict
from pathlib import Path

from streaming.landing.scan import Found, Problem

__all__ = ["LandingLog", "read_problems"]


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


ERASED_FOLDER = ".erased"  # hidden: the landing scan never finds a file under it, so no real path collides


def erase_paths(folder: Path, paths: set[str], landing: Path) -> int:
    """Replace the given raw paths in the landing log by ``<landing>/.erased/<seq>`` (`xray forget`): the
    entries keep their numbers, so offsets and replays are unchanged, but the log no longer names the
    patient. Problems naming those paths are dropped. Returns the entries changed."""
    folder = Path(folder)
    changed = 0
    for segment in sorted((folder / "files").glob("*.jsonl")):
        records = _read_lines(segment)
        hits = [r for r in records if r.get("path") in paths]
        if not hits:
            continue
        for record in hits:
            record["path"] = str(Path(landing) / ERASED_FOLDER / str(record.get("seq")))
            record["target"] = None
        _write_atomically(segment, "".join(json.dumps(r) + "\n" for r in records))
        changed += len(hits)
    relative = {os.path.relpath(p, landing) for p in paths}
    problems = read_problems(folder)
    kept = [p for p in problems if p.get("path") not in relative and p.get("path") not in paths]
    if len(kept) != len(problems):
        _write_atomically(folder / "problems.json", json.dumps(kept))
    return changed
