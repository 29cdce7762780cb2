"""``spark.readStream.format("xray_landing")``: the landing folder as a streaming source, Auto Loader-style.

Offsets are ``{"seq": n}``: the first n entries of the landing log (`streaming.landing.log.LandingLog`). Each
trigger scans landing, logs the new entries (oldest first) and admits up to ``maxFilesPerTrigger`` files or
``maxBytesPerTrigger`` bytes. The end handed out for a start offset is recorded before Spark sees it, so a
batch planned again from the same start (a lost ``offsets/N``, a rewound checkpoint) covers exactly the same
files, and the Delta transactions (query, batch id) then skip or complete it exactly once.

Rows carry no bytes: ``path`` (the filesystem path, never encoded), ``modificationTime``, ``length``,
``status`` (``file``, ``link`` or a reason the file is never opened), ``target`` (what a link points to) and
``seq`` (the entry's number in the log).
Options: ``landing`` (folder), ``log`` (log folder: ``<checkpoint>/landing``), ``allowedRoots`` (JSON list),
``modifiedAfterMs``, ``maxFilesPerTrigger``, ``maxBytesPerTrigger``, ``numPartitions``, ``compactAfter``,
``allowOverwrites`` (default true: a file whose size, modification time or inode changed is a new entry,
`streaming.landing.log`) and ``settleSeconds`` (default 2: when a file written straight into landing is
complete, `streaming.landing.settle`; the file events are watched from the first trigger to ``stop``).
An ``availableNow`` run waits for files still being written up to ``settleSeconds`` (and a second), and
leaves those whose writer has not closed them for the next run.

Once a batch is committed the log drops what no batch Spark may replay needs (`LandingLog.compact`): the
entries before the oldest batch whose offsets the checkpoint still holds (Spark keeps the last
``spark.sql.streaming.minBatchesToRetain``), except the paths of those still in landing; it does so once at
least ``compactAfter`` entries (default 10,000) can be dropped. A batch asked for below what the log keeps
raises `LandingLogCompactedError`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import SupportsTriggerAvailableNow
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from streaming.core.errors import LandingLogCompactedError, transported
from streaming.landing.log import LandingLog
from streaming.landing.scan import Found, scan_landing
from streaming.landing.settle import Settling

__all__ = ["COMPACT_AFTER", "LANDING_FORMAT", "LANDING_SCHEMA", "LandingDataSource", "LandingPartition",
           "retained_start", "split_by_size"]

# Entries droppable before the log is compacted: about 2 MB of segments, a few milliseconds of rewriting.
COMPACT_AFTER = 10_000

LANDING_FORMAT = "xray_landing"
LANDING_SCHEMA = StructType(
    [
        StructField("path", StringType()),
        StructField("modificationTime", TimestampType()),
        StructField("length", LongType()),
        StructField("status", StringType()),
        StructField("target", StringType()),
        StructField("seq", LongType()),
    ]
)
_ARROW_SCHEMA = pa.schema([
    ("path", pa.string()), ("modificationTime", pa.timestamp("us", tz="UTC")), ("length", pa.int64()),
    ("status", pa.string()), ("target", pa.string()), ("seq", pa.int64()),
])


class LandingPartition(InputPartition):
    def __init__(self, entries: list[dict]):
        self.entries = entries


def split_by_size(entries: list[Found], parts: int) -> list[list[Found]]:
    """Deal entries to ``parts`` groups, largest first, each to the group with the fewest bytes so far:
    every task gets a like share of the reading and decoding."""
    groups: list[list[Found]] = [[] for _ in range(max(1, min(parts, len(entries))))]
    weights = [0] * len(groups)
    for entry in sorted(entries, key=lambda e: -(e.size or 0)):
        index = weights.index(min(weights))
        groups[index].append(entry)
        weights[index] += (entry.size or 0) + 4096  # a file costs something even when it is small
    return groups


class LandingStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: dict[str, str]):
        self.options = options
        self.landing = Path(options["landing"])
        self.allowed = tuple(json.loads(options.get("allowedroots") or "[]"))
        after = options.get("modifiedafterms")
        self.modified_after_ms = int(after) if after else None
        self.overwrites = (options.get("allowoverwrites") or "true").lower() != "false"
        self.settle_seconds = float(options.get("settleseconds") or 2.0)
        self._log: LandingLog | None = None
        self._target: int | None = None
        self._settling: Settling | None = None  # started by the first scan: a reader only read from has none

    @property
    def log(self) -> LandingLog:
        if self._log is None:
            self._log = LandingLog(Path(self.options["log"]))
        return self._log

    def _discover(self) -> list[Found]:
        """Scan landing and log the new or changed entries that are complete; returns those still being
        written."""
        if self._settling is None:
            self._settling = Settling(self.landing, self.settle_seconds)
            self._settling.start()  # before the scan: a file written after it is seen by its events
        found, problems = scan_landing(self.landing, self.allowed, self.modified_after_ms)
        complete, waiting = self._settling.ready(self.log.unlogged(found, self.overwrites))
        self.log.add(complete)
        self.log.write_problems(problems)
        return waiting

    def stop(self) -> None:
        if self._settling is not None:
            self._settling.stop()

    # -- offsets --------------------------------------------------------------------------------------
    def initialOffset(self) -> dict:
        return {"seq": 0}

    def prepareForTriggerAvailableNow(self) -> None:
        # availableNow: what landing holds now, in batches of the admission limit, and nothing found later.
        # A file still being written is waited for (a file without events is complete once settleSeconds
        # old); one whose writer keeps it open longer is left for the next run.
        deadline = time.monotonic() + self.settle_seconds + 1.0
        while self._discover() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._target = len(self.log.entries)

    def getDefaultReadLimit(self):
        from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxBytes, ReadMaxFiles

        if int(self.options.get("maxbytespertrigger", 0) or 0) > 0:
            return ReadMaxBytes(int(self.options["maxbytespertrigger"]))
        if int(self.options.get("maxfilespertrigger", 0) or 0) > 0:
            return ReadMaxFiles(int(self.options["maxfilespertrigger"]))
        return ReadAllAvailable()

    def latestOffset(self, start: dict, limit: Any) -> dict:
        begin = int(start["seq"])
        _carried(self.log.entries.require, begin)
        planned = self.log.plan.get(begin)
        if planned is not None:
            return {"seq": planned}  # the same batch again: the same files
        if self._target is None:
            self._discover()
        available = len(self.log.entries) if self._target is None else min(self._target, len(self.log.entries))
        end = self._admit(begin, available, limit)
        if end > begin:
            self.log.record_plan(begin, end)
        return {"seq": end}

    def _admit(self, begin: int, available: int, limit: Any) -> int:
        max_files = getattr(limit, "max_files", None)
        max_bytes = getattr(limit, "max_bytes", None)
        if max_files is not None:
            return min(available, begin + max(1, int(max_files)))
        if max_bytes is None:
            return max(begin, available)
        end, taken = begin, 0
        while end < available:
            size = self.log.entries[end].size or 0
            if end > begin and taken + size > max_bytes:
                break
            taken += size
            end += 1
        return end

    def reportLatestOffset(self) -> dict | None:
        return {"seq": len(self.log.entries)}

    def partitions(self, start: dict, end: dict) -> Sequence[InputPartition]:
        entries = _carried(self.log.entries.__getitem__, slice(int(start["seq"]), int(end["seq"])))
        parts = int(self.options.get("numpartitions", 2) or 2)
        return [LandingPartition([_row(e) for e in group]) for group in split_by_size(entries, parts)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        if isinstance(partition, LandingPartition) and partition.entries:
            yield pa.RecordBatch.from_pylist(partition.entries, schema=_ARROW_SCHEMA)

    def commit(self, end: dict) -> None:
        # clean_source runs on the driver once every table committed (bronze.clean_landing); here, between
        # batches, the log drops what no batch Spark may still replay needs.
        retained = retained_start(Path(self.options["log"]).parent, self.log.plan)
        if retained is not None:
            at_least = int(self.options.get("compactafter") or COMPACT_AFTER)
            self.log.compact_if_due(min(retained, int(end["seq"])), at_least)


def retained_start(checkpoint: Path, plan: dict[int, int]) -> int | None:
    """The first landing entry a batch Spark may still replay can name: the start of the oldest batch whose
    offsets the checkpoint keeps (``offsets/<N>``: a version line, the batch's metadata, then one offset per
    source, ours ``{"seq": n}``). None when there is none to read: nothing may be dropped then."""
    folder = checkpoint / "offsets"
    try:
        oldest = min((int(name) for name in os.listdir(folder) if name.isdigit()), default=None)
        if oldest is None:
            return None
        lines = (folder / str(oldest)).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None  # purged while being read: next time
    ends = []
    for line in lines[2:]:
        try:
            offset = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(offset, dict) and isinstance(offset.get("seq"), int):
            ends.append(offset["seq"])
    if not ends:
        return None
    end = min(ends)
    # The oldest batch ended at `end`; it started where the batch planned to end there started.
    return min((start for start, planned in plan.items() if planned == end), default=end)


def _carried(function, *args):
    """Call ``function``; a `LandingLogCompactedError` keeps its name across the JVM (it is raised in the
    Python process Spark runs the source in, and only its text reaches the driver)."""
    try:
        return function(*args)
    except LandingLogCompactedError as error:
        raise RuntimeError(transported(LandingLogCompactedError, str(error))) from error


def _row(entry: Found) -> dict:
    return {"path": entry.path, "modificationTime": dt.datetime.fromtimestamp(entry.mtime_ms / 1000, dt.timezone.utc),
            "length": entry.size, "status": entry.status, "target": entry.target, "seq": entry.seq}


def clean(path: str, landing: Path, mode: str, archive: Path) -> None:
    """Move an ingested entry out of landing (to the same relative path under ``archive``) or delete it.
    A link is moved or deleted as a link: its target is never touched."""
    if not os.path.lexists(path):
        return
    if mode == "delete":
        os.unlink(path)
        return
    destination = Path(archive) / os.path.relpath(path, landing)
    serial = 1
    while os.path.lexists(destination):  # the same name archived before: keep both
        destination = destination.with_name(f"{Path(path).stem}.{serial}{Path(path).suffix}")
        serial += 1
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(path, destination)


class LandingDataSource(DataSource):
    """Registered as ``xray_landing``; see the module docstring."""

    @classmethod
    def name(cls) -> str:
        return LANDING_FORMAT

    def schema(self) -> StructType:
        return LANDING_SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return LandingStreamReader({str(k).lower(): str(v) for k, v in self.options.items()})
