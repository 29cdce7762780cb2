"""The landing log (streaming/landing/log.py): numbers, plans and cleaned entries survive a restart."""

from __future__ import annotations

import os

from imagefiles import write

from streaming.landing.log import LandingLog
from streaming.landing.scan import scan_landing


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
