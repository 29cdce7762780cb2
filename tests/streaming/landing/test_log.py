"""The landing log (streaming/landing/log.py): numbers, plans and cleaned entries survive a restart, and
compaction keeps what a replay and the dedup need, step by step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from imagefiles import write

from streaming.core.errors import LandingLogCompactedError
from streaming.landing import log as landing_log
from streaming.landing.erase import erase_paths
from streaming.landing.log import LandingLog
from streaming.landing.scan import Found, scan_landing


def test_the_log_numbers_entries_once_and_remembers_plans_and_cleaning(tmp_path):
    landing = tmp_path / "landing"
    write(landing / "b.jpeg", b"b")
    write(landing / "a.jpeg", b"a")
    os.utime(landing / "a.jpeg", (1_000, 1_000))  # older: admitted first
    log = LandingLog(tmp_path / "log")
    found, _ = scan_landing(landing)
    assert [os.path.basename(f.path) for f in log.add_new(found)] == ["a.jpeg", "b.jpeg"]
    assert log.add_new(scan_landing(landing)[0]) == []
    log.record_plan(0, 1)
    LandingLog.record_cleaned(tmp_path / "log", [0])
    again = LandingLog(tmp_path / "log")
    assert [e.seq for e in again.entries] == [0, 1] and again.plan == {0: 1}
    # A file dropped again at a path that was cleaned out of landing is a new file; a known one is not.
    assert [e.path for e in again.add_new(scan_landing(landing)[0])] == [str(landing / "a.jpeg")]
    assert again.add_new(scan_landing(landing)[0]) == []
    assert LandingLog(tmp_path / "log").add_new(scan_landing(landing)[0]) == [], "the new copy is remembered"
    with open(tmp_path / "log" / "plan.jsonl", "a") as handle:
        handle.write('{"start": 1, "en')  # cut by a crash: never acted upon
    assert LandingLog(tmp_path / "log").plan == {0: 1}


# ---- compaction ----------------------------------------------------------------------------------------
def entry(name: str, mtime_ms: int) -> Found:
    return Found(f"/landing/{name}", mtime_ms, 1, "file")


def planned_log(folder, batches: int, per_batch: int = 2) -> LandingLog:
    """A log of ``batches`` batches of ``per_batch`` entries, one scan each; the first half cleaned."""
    log = LandingLog(folder)
    for batch in range(batches):
        found = log.add_new([entry(f"b{batch}-{i}.jpeg", batch * 10 + i) for i in range(per_batch)])
        log.record_plan(found[0].seq, found[-1].seq + 1)
        if batch < batches // 2:
            LandingLog.record_cleaned(folder, [f.seq for f in found])
    return log


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def records(folder) -> list[dict]:
    return [r for segment in sorted((folder / "files").glob("*.jsonl")) for r in lines(segment)]


def test_compaction_keeps_the_replayable_batches_and_the_paths_still_in_landing(tmp_path):
    folder = tmp_path / "log"
    log = planned_log(folder, batches=6)  # batches 0-2 cleaned, 3-5 still in landing
    replayable = {start: log.entries[start:end] for start, end in log.plan.items() if start >= 8}

    assert log.compact(8) is True  # batches 4 and 5 may be replayed

    for again in (log, LandingLog(folder)):
        assert again.entries.first == 8 and len(again.entries) == 12
        assert {start: again.entries[start:end] for start, end in again.plan.items()} == replayable
        assert [e.seq for e in again.entries] == [8, 9, 10, 11]
        assert again.old_paths == 2, "batch 3's two entries are still in landing"
        # A file still in landing stays known; one cleaned out of landing and dropped again is new.
        new = again.add_new([entry("b3-0.jpeg", 30), entry("b5-1.jpeg", 51), entry("b0-0.jpeg", 1)])
        assert [e.path for e in new] == ["/landing/b0-0.jpeg"] and new[0].seq == 12
    assert [r["seq"] for r in records(folder)] == [8, 9, 10, 11, 12], "segments below 8 are gone"
    assert lines(folder / "plan.jsonl") == [{"start": 8, "end": 10}, {"start": 10, "end": 12}]
    assert lines(folder / "cleaned.jsonl") == [], "the cleaned records were all below 8"
    assert json.loads((folder / "base.json").read_text()) == {
        "first_seq": 8, "seen": {"/landing/b3-0.jpeg": 6, "/landing/b3-1.jpeg": 7},
        "versions": {"6": ["file", 1, 30, None, None], "7": ["file", 1, 31, None, None]}}


def test_an_old_entry_cleaned_after_the_compaction_is_forgotten(tmp_path):
    folder = tmp_path / "log"
    planned_log(folder, batches=4).compact(6)
    LandingLog.record_cleaned(folder, [4])  # batch 2 moved out of landing late (e.g. clean_source turned on)
    log = LandingLog(folder)
    assert log.old_paths == 1
    assert [e.path for e in log.add_new([entry("b2-0.jpeg", 1), entry("b2-1.jpeg", 21)])] == ["/landing/b2-0.jpeg"]
    log.compact(6)  # drops the cleaned record below 6 and the forgotten path
    assert LandingLog(folder).old_paths == 1 and lines(folder / "cleaned.jsonl") == []


def test_a_batch_below_the_compacted_start_is_a_named_error_not_a_gap(tmp_path):
    log = planned_log(tmp_path / "log", batches=3)
    log.compact(4)
    for ask in (lambda: log.entries[0:2], lambda: log.entries[3], lambda: log.entries.require(2)):
        with pytest.raises(LandingLogCompactedError, match="keeps them from number 4 on"):
            ask()
    assert log.entries[4:6] == log.entries[4:] and log.entries[6:6] == [] and log.entries[-1].seq == 5
    with pytest.raises(IndexError):
        log.entries[6]


def test_compaction_never_moves_back_nor_past_the_end(tmp_path):
    log = planned_log(tmp_path / "log", batches=2)
    assert log.compact(100) is True and log.entries.first == 4 == len(log.entries)
    assert log.compact(2) is False and log.entries.first == 4
    assert [e.seq for e in log.add_new([entry("new.jpeg", 1)])] == [4]
    assert [e.seq for e in LandingLog(tmp_path / "log").entries] == [4]


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash", ["after base.json", "before plan.jsonl", "before cleaned.jsonl"])
def test_a_compaction_cut_short_loads_as_compacted_and_is_finished_next_time(tmp_path, monkeypatch, crash):
    folder = tmp_path / "log"
    log = planned_log(folder, batches=6)
    expected = {start: log.entries[start:end] for start, end in log.plan.items() if start >= 8}
    real_write, writes = landing_log._write_atomically, []

    def write_then_crash(path, text):
        writes.append(path.name)
        if crash == f"before {path.name}":
            raise Crash(crash)
        real_write(path, text)
        if crash == f"after {path.name}":
            raise Crash(crash)

    monkeypatch.setattr(landing_log, "_write_atomically", write_then_crash)
    with pytest.raises(Crash):
        log.compact(8)
    monkeypatch.setattr(landing_log, "_write_atomically", real_write)

    again = LandingLog(folder)
    assert again.untidy, "the interrupted compaction is remembered"
    assert again.entries.first == 8 and {s: again.entries[s:e] for s, e in again.plan.items()} == expected
    assert again.old_paths == 2 and again.add_new([entry("b3-0.jpeg", 30), entry("b5-0.jpeg", 50)]) == []
    assert again.compact_if_due(8, at_least=1000) is True, "finished although nothing more is droppable"
    assert [r["seq"] for r in records(folder)] == [8, 9, 10, 11]
    assert lines(folder / "plan.jsonl") == [{"start": 8, "end": 10}, {"start": 10, "end": 12}]
    assert lines(folder / "cleaned.jsonl") == [] and not LandingLog(folder).untidy


def test_compaction_waits_until_enough_is_droppable(tmp_path):
    log = planned_log(tmp_path / "log", batches=6)
    assert log.compact_if_due(4, at_least=5) is False and log.entries.first == 0
    assert log.compact_if_due(8, at_least=5) is True and log.entries.first == 8
    # Two old paths are kept (batch 3): each compaction writes them again, so it waits for as many droppable.
    assert log.old_paths == 2 and log.compact_if_due(9, at_least=1) is False
    assert log.compact_if_due(10, at_least=1) is True and log.entries.first == 10


def test_a_cleaned_line_cut_by_a_crash_does_not_stop_the_log(tmp_path):
    folder = tmp_path / "log"
    planned_log(folder, batches=2)
    with open(folder / "cleaned.jsonl", "a") as handle:
        handle.write('{"seq": 2')  # cut by a crash; the next append continues the line
    LandingLog.record_cleaned(folder, [3])
    log = LandingLog(folder)
    assert [e.path for e in log.add_new([entry("b1-1.jpeg", 11)])] == [], "the cut record is lost, no more"


# ---- erasure -------------------------------------------------------------------------------------------
def test_erased_paths_leave_the_log_but_numbers_and_replays_stay(tmp_path):
    folder = tmp_path / "log"
    log = LandingLog(folder)
    log.add_new([entry("person5_a.jpeg", 1), entry("old-person5.jpeg", 0), entry("other.jpeg", 2)])
    log.record_plan(0, 1)
    log.record_plan(1, 3)
    log.compact(1)  # the first entry is kept by path only (still in landing): base.json names it
    assert "/landing/old-person5.jpeg" in (folder / "base.json").read_text()
    (folder / "problems.json").write_text(json.dumps([{"kind": "unreadable", "path": "person5_b.jpeg"}]))

    erased = {"/landing/old-person5.jpeg", "/landing/person5_a.jpeg", "/landing/person5_b.jpeg"}
    assert erase_paths(folder, erased.__contains__, Path("/landing")) == 3  # two entries, one old path
    text = "".join(p.read_text() for p in folder.rglob("*") if p.is_file())
    assert "person5" not in text, "the identifier is gone from every file of the log"
    again = LandingLog(folder)
    assert len(again.entries) == 3 and again.entries[1].path == "/landing/.erased/1"
    assert again.entries[2].path == "/landing/other.jpeg" and again.plan == {1: 3}
    assert erase_paths(tmp_path / "no-log", erased.__contains__, tmp_path / "landing") == 0
