"""When the periodic retrain is due: the policy, the lakehouse's memory of the last cycle, the label counts.

Spark-free (delta-rs reads a few columns), so `xray retrain --every` decides without starting a JVM and the
stream's thread checks cheaply. The last cycle is a row of ``retrain_runs`` (`record_run`), so a restart
honours it: with ``every`` 6 h and a cycle finished 2 h ago, the next is due in 4 h. Triggers (each 0 = off):

- **interval**: a cycle once ``interval`` has passed since the last one finished (at once when none is
  recorded);
- **new labels**: a cycle once ``min_new_labels`` labelled silver rows plus radiologist feedback rows
  arrived since the last cycle started (counted then: what arrives during a cycle counts as new).

Nothing to learn from (no labelled row, no feedback) is never due. After a cycle with too few labelled
images (``insufficient_data``) the next one waits for any new label, not for the interval: data that
suffices should not wait a day, and the same data would fail again.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError
from streaming.lakehouse.catalog import GOLD_RADIOLOGIST_FEEDBACK, RETRAIN_RUNS, SILVER_METADATA
from streaming.ops.text import age

__all__ = [
    "FEEDBACK_TABLE", "INSUFFICIENT", "TRIGGER_INTERVAL", "TRIGGER_MANUAL", "TRIGGER_NEW_LABELS", "Decision",
    "LabelCounts", "LastRun", "RetrainPolicy", "decide", "due", "format_duration", "label_counts", "last_run",
    "parse_duration", "record_run",
]

# Written by `xray feedback`; counted by name, and absent until the first feedback arrives.
FEEDBACK_TABLE = GOLD_RADIOLOGIST_FEEDBACK.name
TRIGGER_INTERVAL, TRIGGER_NEW_LABELS, TRIGGER_MANUAL = "interval", "new_labels", "manual"
OK, INSUFFICIENT, ERROR = "ok", "insufficient_data", "error"
MIN_WAIT_SECONDS = 0.5  # a check interval of 0 must not spin

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``30m``, ``6h``, ``1d`` or a sum such as ``1h30m``; `ConfigError` otherwise."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not parts or "".join(n + u for n, u in parts) != compact or seconds <= 0:
        raise ConfigError(f"invalid duration {text!r}: expected a positive number with a unit s, m, h or d "
                          "(90s, 30m, 6h, 1d, 1h30m)")
    return seconds


def format_duration(seconds: float) -> str:
    """``4h 0m``, ``2m 5s``, ``3s``: a wait as a person reads it (`streaming.ops.text.age`, rounded)."""
    return age(round(seconds))


@dataclass(frozen=True)
class RetrainPolicy:
    """The triggers: ``interval_seconds`` and ``min_new_labels`` (0 = off), checked every ``check_seconds``."""

    interval_seconds: float = 0.0
    min_new_labels: int = 0
    check_seconds: float = 300.0

    @classmethod
    def from_config(cls, config: XrayConfig, every: float | None = None) -> RetrainPolicy:
        """The configured policy; ``every`` (`xray retrain --every`) replaces the configured interval."""
        interval = every if every is not None else config.retrain_interval_hours * 3600
        return cls(interval, config.retrain_min_new_labels, config.retrain_check_minutes * 60)

    @property
    def enabled(self) -> bool:
        return self.interval_seconds > 0 or self.min_new_labels > 0


@dataclass(frozen=True)
class LabelCounts:
    """What a model can learn from: labelled silver rows and radiologist feedback rows."""

    labelled: int
    feedback: int

    def new_since(self, last: LastRun | None) -> int:
        """Rows that arrived since ``last`` started (all of them without one). Rows erased meanwhile (`xray
        forget`) are not subtracted from new ones of the other kind."""
        if last is None:
            return self.labelled + self.feedback
        return max(0, self.labelled - last.labelled_rows) + max(0, self.feedback - last.feedback_rows)


@dataclass(frozen=True)
class LastRun:
    """The latest ``retrain_runs`` row: when it ended, how, and the counts it started from."""

    finished_time: dt.datetime
    outcome: str
    trigger: str
    labelled_rows: int
    feedback_rows: int


@dataclass(frozen=True)
class Decision:
    """Whether a cycle is due now (and why), else how long until it is worth asking again."""

    due: bool
    trigger: str | None
    wait_seconds: float
    reason: str
    counts: LabelCounts


def decide(policy: RetrainPolicy, last: LastRun | None, counts: LabelCounts, now: dt.datetime) -> Decision:
    """The schedule's rule (module docstring), pure: the same inputs give the same answer."""
    check = max(MIN_WAIT_SECONDS, policy.check_seconds)
    new = counts.new_since(last)

    def wait(seconds: float, reason: str) -> Decision:
        return Decision(False, None, max(MIN_WAIT_SECONDS, seconds), reason, counts)

    if not policy.enabled:
        return wait(check, "periodic retraining is off")
    if counts.labelled + counts.feedback == 0:
        return wait(check, "no labelled images in silver yet")
    if policy.min_new_labels and new >= policy.min_new_labels:
        return Decision(True, TRIGGER_NEW_LABELS, 0.0, f"{new} new label(s) since the last cycle", counts)
    if last is not None and last.outcome == INSUFFICIENT:
        if new:
            return Decision(True, TRIGGER_NEW_LABELS, 0.0,
                            f"{new} new label(s) since the last cycle found too few", counts)
        return wait(check, "the last cycle found too few labelled images: waiting for new labels")
    if policy.interval_seconds:
        if last is None:
            return Decision(True, TRIGGER_INTERVAL, 0.0, "no cycle recorded yet", counts)
        next_at = last.finished_time + dt.timedelta(seconds=policy.interval_seconds)
        if now >= next_at:
            return Decision(True, TRIGGER_INTERVAL, 0.0,
                            f"{format_duration(policy.interval_seconds)} since the last cycle", counts)
        left = (next_at - now).total_seconds()
        return wait(min(left, check) if policy.min_new_labels else left,
                    f"next cycle in {format_duration(left)} (at {next_at.isoformat(timespec='seconds')}; "
                    f"every {format_duration(policy.interval_seconds)} from the last cycle's end)")
    return wait(check, f"waiting for {policy.min_new_labels} new labels or feedback rows ({new} so far)")


def _count_rows(config: XrayConfig, table: str, labelled: bool = False) -> int:
    """Rows of a table (0 when it does not exist), from delta-rs: only the label column is read."""
    import pyarrow.dataset as ds

    from streaming.lakehouse.tables import count_rows

    return count_rows(config, table, ds.field("label").is_valid() if labelled else None)


def label_counts(config: XrayConfig) -> LabelCounts:
    """Labelled silver rows and feedback rows now."""
    return LabelCounts(_count_rows(config, SILVER_METADATA.name, labelled=True), _count_rows(config, FEEDBACK_TABLE))


def last_run(config: XrayConfig) -> LastRun | None:
    """The ``retrain_runs`` row that finished last, or None (no table, or no row yet)."""
    from streaming.lakehouse.tables import read_arrow

    columns = ["finished_time", "outcome", "trigger", "labelled_rows", "feedback_rows"]
    runs = read_arrow(config, RETRAIN_RUNS.name, columns)
    rows = [] if runs is None else runs.to_pylist()
    if not rows:
        return None
    latest = max(rows, key=lambda row: row["finished_time"])
    return LastRun(latest["finished_time"], latest["outcome"], latest["trigger"],
                   latest["labelled_rows"] or 0, latest["feedback_rows"] or 0)


def record_run(config: XrayConfig, row: dict) -> None:
    """Append one ``retrain_runs`` row with delta-rs (no Spark; the table is made when missing)."""
    from streaming.lakehouse.direct import append_rows

    append_rows(config, RETRAIN_RUNS.name, [row])


def due(config: XrayConfig, now: dt.datetime | None = None, policy: RetrainPolicy | None = None) -> Decision:
    """`decide` on the lakehouse as it is: its last recorded cycle and its label counts now."""
    policy = policy or RetrainPolicy.from_config(config)
    now = now or dt.datetime.now(dt.timezone.utc)
    return decide(policy, last_run(config), label_counts(config), now)
