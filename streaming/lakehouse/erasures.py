"""The erasure journal: what each `xray forget` erases and which of its steps are done, one small JSON file
per patient under ``<lakehouse>/erasures/`` (``<patient keyed hash>.json``), each write atomic.

The journal is written before anything is deleted, so an erasure interrupted at any point (``kill -9``, a
full disk, a lost machine) is known and finished by the next `xray forget` (any patient), `xray stream`
start or `xray maintain`; `xray status` counts the unfinished ones. It holds keyed hashes only: the
patient's, the content SHA-256 of the erased images (the stream refuses a later copy of those bytes under
any name, `streaming.bronze.refuse`), the keyed hashes of their paths, and the files' sizes. A finished
erasure's journal stays: its contents are refused for good.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streaming.core.config import XrayConfig
from streaming.landing.log import write_atomically

__all__ = ["STEPS", "ErasureJournal", "erased_contents", "journal_dir", "journals", "new_journal", "pending_erasures",
           "write_journal"]

# In order. ``listed``: the patient is on the forget list; ``found``: what is to be erased is recorded below;
# ``rows``, ``history``, ``files``, ``landing_log``: rows deleted, old versions' files and log removed,
# landing and archive files deleted, landing log entries scrubbed. All of them: the erasure is finished.
STEPS = ("listed", "found", "rows", "history", "files", "landing_log")


@dataclass
class ErasureJournal:
    """One patient's erasure (keyed hashes only)."""

    patient: str
    requested_time: str
    run_id: str | None = None
    contents: list[str] = field(default_factory=list)  # content SHA-256 of every file of the patient
    path_refs: list[str] = field(default_factory=list)  # keyed hashes of their paths
    sizes: list[int] = field(default_factory=list)  # their sizes: which landing files are worth hashing
    images: int = 0  # distinct images silver held when the erasure found them
    done: list[str] = field(default_factory=list)  # the steps done, of STEPS

    @property
    def finished(self) -> bool:
        return set(STEPS) <= set(self.done)

    def next_step(self) -> str | None:
        return next((step for step in STEPS if step not in self.done), None)


def journal_dir(config: XrayConfig) -> Path:
    return config.root / "erasures"


def new_journal(patient: str, run_id: str | None) -> ErasureJournal:
    return ErasureJournal(patient, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), run_id)


def write_journal(config: XrayConfig, journal: ErasureJournal) -> None:
    """Write (or replace) the patient's journal atomically: a crash leaves the old one or the new one."""
    folder = journal_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / f"{journal.patient}.json", json.dumps(asdict(journal), sort_keys=True))


def journals(config: XrayConfig) -> list[ErasureJournal]:
    """Every erasure recorded, oldest request first. A file that is not a journal (a stray copy, a
    ``.tmp`` left by a crash mid-write: the write it belonged to never happened) is skipped."""
    folder = journal_dir(config)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            journal = ErasureJournal(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
        if journal.patient == path.stem:  # a copy under another name would be written back elsewhere
            found.append(journal)
    return sorted(found, key=lambda j: (j.requested_time, j.patient))


def pending_erasures(config: XrayConfig) -> list[ErasureJournal]:
    """The erasures begun and not finished (an interrupted `xray forget`)."""
    return [journal for journal in journals(config) if not journal.finished]


def erased_contents(config: XrayConfig) -> frozenset[str]:
    """The content SHA-256 of every file an erasure recorded (read by every micro-batch: a copy under
    another name is refused)."""
    return frozenset(sha for journal in journals(config) for sha in journal.contents)

