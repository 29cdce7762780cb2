"""Profiling: off by default (no accumulator, nothing written); on, nested driver phases never overlap."""

from __future__ import annotations

import json
import time

from streaming.core import profiling


def test_off_by_default_times_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(profiling, "_PROFILE_FILE", None)
    with profiling.timed("anything"):
        pass
    profiling.write_batch({"batch_id": 0})
    assert profiling.driver_phases() is None and not profiling.enabled()


def test_nested_phases_add_up_to_the_outer_block_and_are_written_per_batch(tmp_path, monkeypatch):
    output = tmp_path / "profile.jsonl"
    monkeypatch.setattr(profiling, "_PROFILE_FILE", str(output))
    monkeypatch.setattr(profiling, "_DRIVER", None)
    clock = time.perf_counter()
    with profiling.timed("outer"):
        time.sleep(0.02)
        with profiling.timed("commit a"):
            time.sleep(0.03)
        with profiling.timed("commit a"):
            time.sleep(0.01)
    whole = time.perf_counter() - clock
    profiling.write_batch({"batch_id": 3, "driver": {"extra": 0.5}})
    profiling.write_batch({"batch_id": 4})
    first, second = (json.loads(line) for line in output.read_text().splitlines())
    phases = first["driver"]
    assert first["batch_id"] == 3 and set(phases) == {"outer", "commit a", "extra"}
    assert phases["commit a"] >= 0.04 and 0.02 <= phases["outer"] < whole - 0.04 + 0.005
    assert phases["outer"] + phases["commit a"] <= whole
    assert second["driver"] == {}  # taken with the first batch


def test_executor_phases_chain_without_gaps():
    phases = profiling.Phases()
    start = time.perf_counter()
    since = phases.add("read", start)
    since = phases.add("hash", since)
    phases.merge({"read": 1.0})
    assert abs((since - start) - (sum(phases.seconds.values()) - 1.0)) < 1e-9
    assert phases.take() and phases.seconds == {}
