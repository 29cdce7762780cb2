"""Erasing raw paths from the landing log (`xray forget`, and files the stream refused): the log keeps its
entries and numbers, so offsets and replays are unchanged, but no longer names the patient. Under the log
folder's lock (`streaming.landing.log.exclusive`), each file rewritten atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from streaming.landing.log import exclusive, read_base, read_lines, read_problems, write_atomically

__all__ = ["ERASED_FOLDER", "erase_paths"]

ERASED_FOLDER = ".erased"  # hidden: the landing scan never finds a file under it, so no real path collides


def erase_paths(folder: Path, erased: Callable[[str], bool], landing: Path) -> int:
    """Replace the raw paths for which ``erased(path)`` is true in the landing log by
    ``<landing>/.erased/<seq>`` (`xray forget`, and files the stream refused): the entries keep their
    numbers, so offsets and replays are unchanged, but the log no longer names the patient. Older entries
    kept by path only (``base.json``) and problems naming those paths are dropped (the files are gone from
    landing). Each file is rewritten atomically, so running it again after a crash finishes it. Returns the
    entries changed."""
    folder = Path(folder)
    if not (folder / "files").is_dir():
        return 0
    changed = 0
    with exclusive(folder):
        for segment in sorted((folder / "files").glob("*.jsonl")):
            records = read_lines(segment)
            hits = [r for r in records if r.get("path") and erased(r["path"])]
            for record in hits:
                record["path"] = str(Path(landing) / ERASED_FOLDER / str(record.get("seq")))
                record["target"] = None
            if hits:
                write_atomically(segment, "".join(json.dumps(r) + "\n" for r in records))
                changed += len(hits)
        base = read_base(folder)
        seen = {path: seq for path, seq in base["seen"].items() if not erased(path)}
        if len(seen) != len(base["seen"]):
            write_atomically(folder / "base.json", json.dumps({"first_seq": base["first_seq"], "seen": seen,
                                                                "versions": base["versions"]}))
            changed += len(base["seen"]) - len(seen)
        problems = read_problems(folder)
        kept = [p for p in problems if not (p.get("path") and erased(os.path.join(landing, p["path"])))]
        if len(kept) != len(problems):
            write_atomically(folder / "problems.json", json.dumps(kept))
    return changed
