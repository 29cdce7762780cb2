"""Opt-in per-phase timing of the fused micro-batch, for ``xray bench --only profile``.

Off unless ``XRAY_PROFILE_FILE`` names a file when the driver starts (read once, at import): then the
executors time each phase of their work per task (`Phases`, handed to them in the batch's closure, so a
worker never reads the environment) and send the sums back in the task's marker row; the driver times its
own phases and every table commit (`timed`) and appends one JSON line per micro-batch to that file
(`write_batch`). Off, the cost is one ``is None`` test per image and per commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["PROFILE_ENV", "Phases", "driver_phases", "enabled", "timed", "write_batch"]

PROFILE_ENV = "XRAY_PROFILE_FILE"
_PROFILE_FILE = os.environ.get(PROFILE_ENV) or None
_DRIVER: Phases | None = None
_OPEN = threading.local()  # per thread: the seconds spent in nested blocks of each open `timed` block


class Phases:
    """Seconds per named phase, accumulated: ``since = phases.add("read", since)`` charges the time since
    ``since`` to ``read`` and returns now, so consecutive phases chain without gaps."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds: dict[str, float] = dict(seconds or {})

    def add(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + (now - since)
        return now

    def merge(self, other: dict[str, float]) -> None:
        for name, seconds in other.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def take(self) -> dict[str, float]:
        """The sums so far; starts again from zero."""
        taken, self.seconds = self.seconds, {}
        return taken


def enabled() -> bool:
    return _PROFILE_FILE is not None


def driver_phases() -> Phases | None:
    """The driver's accumulator (None when profiling is off)."""
    global _DRIVER
    if _PROFILE_FILE is None:
        return None
    if _DRIVER is None:
        _DRIVER = Phases()
    return _DRIVER


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    """Charge the block's seconds to the driver phase ``name``, less the seconds of the blocks timed inside
    it (so phases never overlap and add up to the outermost block). Nothing when profiling is off."""
    phases = driver_phases()
    if phases is None:
        yield
        return
    stack = _OPEN.__dict__.setdefault("stack", [])
    stack.append(0.0)
    since = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - since
        phases.merge({name: elapsed - stack.pop()})
        if stack:
            stack[-1] += elapsed


def write_batch(record: dict[str, Any]) -> None:
    """Append one micro-batch's profile (a JSON object) to the profile file; the driver's phases timed
    since the last batch go with it."""
    if _PROFILE_FILE is None:
        return
    phases = driver_phases()
    record = {**record, "driver": {**record.get("driver", {}), **(phases.take() if phases else {})}}
    with open(_PROFILE_FILE, "a", encoding="utf-8") as output:
        output.write(json.dumps(record) + "\n")
