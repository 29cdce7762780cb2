"""The streaming source: the rows added by new table versions, read in admission-limited micro-batches."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import SupportsTriggerAvailableNow
from pyspark.sql.types import StructType

from streaming.lakehouse.deltars.errors import STREAM_CHANGE_MARKER, DeltaRsError
from streaming.lakehouse.deltars.options import TRUE_VALUES
from streaming.lakehouse.deltars.read import DeltaRsPartition, FileSlice, read_slices, split_row_groups
from streaming.lakehouse.deltars.table import open_table


@dataclass
class VersionFiles:
    """The data files a stream must read for one table version (a snapshot or a commit)."""

    files: list[dict[str, Any]]  # {"path", "size", "rows", "partition_values"}


class DeltaRsStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Offsets are ``{"version": v, "index": i, "snapshot": bool}``: the next file to read is the i-th data
    file of version v (of the snapshot at v when ``snapshot``)."""

    def __init__(self, path: str, schema: StructType, options: dict[str, str]):
        self.path = path
        self.schema = schema
        self.options = options
        self._cache: dict[tuple[int, bool], VersionFiles] = {}
        self._available_now_target: int | None = None

    def prepareForTriggerAvailableNow(self) -> None:
        # availableNow: read what exists now, in batches of the admission limit, and nothing committed later.
        self._available_now_target = self._latest_version()

    # -- offsets --------------------------------------------------------------------------------------
    def initialOffset(self) -> dict:
        if "startingversion" in self.options and self.options["startingversion"] != "latest":
            return {"version": int(self.options["startingversion"]), "index": 0, "snapshot": False}
        latest = self._latest_version()
        if self.options.get("startingversion") == "latest":
            return {"version": latest + 1, "index": 0, "snapshot": False}
        if latest < 0:
            return {"version": 0, "index": 0, "snapshot": False}
        return {"version": latest, "index": 0, "snapshot": True}

    def getDefaultReadLimit(self):
        from pyspark.sql.streaming.datasource import (
            ReadAllAvailable,
            ReadMaxBytes,
            ReadMaxFiles,
            ReadMaxRows,
        )

        if int(self.options.get("maxfilespertrigger", 0) or 0) > 0:
            return ReadMaxFiles(int(self.options["maxfilespertrigger"]))
        if int(self.options.get("maxrowspertrigger", 0) or 0) > 0:
            return ReadMaxRows(int(self.options["maxrowspertrigger"]))
        if int(self.options.get("maxbytespertrigger", 0) or 0) > 0:
            return ReadMaxBytes(int(self.options["maxbytespertrigger"]))
        return ReadAllAvailable()

    def latestOffset(self, start: dict, limit: Any) -> dict:
        max_files = getattr(limit, "max_files", None)
        max_rows = getattr(limit, "max_rows", None)
        max_bytes = getattr(limit, "max_bytes", None)
        latest = self._latest_version()
        if self._available_now_target is not None:
            latest = min(latest, self._available_now_target)
        version, index, snapshot = start["version"], start["index"], start.get("snapshot", False)
        taken_files = taken_rows = taken_bytes = 0
        while version <= latest:
            entries = self._files_of(version, snapshot).files
            while index < len(entries):
                entry = entries[index]
                over = (
                    (max_files is not None and taken_files + 1 > max_files)
                    or (max_rows is not None and taken_rows + entry["rows"] > max_rows)
                    or (max_bytes is not None and taken_bytes + entry["size"] > max_bytes)
                )
                if over and taken_files > 0:
                    return {"version": version, "index": index, "snapshot": snapshot}
                taken_files += 1
                taken_rows += entry["rows"]
                taken_bytes += entry["size"]
                index += 1
            version, index, snapshot = version + 1, 0, False
        return {"version": version, "index": index, "snapshot": snapshot}

    def reportLatestOffset(self) -> dict | None:
        return {"version": self._latest_version() + 1, "index": 0, "snapshot": False}

    def partitions(self, start: dict, end: dict) -> Sequence[InputPartition]:
        slices: list[FileSlice] = []
        version, index, snapshot = start["version"], start["index"], start.get("snapshot", False)
        while (version, index) < (end["version"], end["index"]):
            entries = self._files_of(version, snapshot).files
            stop = end["index"] if version == end["version"] else len(entries)
            for entry in entries[index:stop]:
                slices.append(FileSlice(entry["path"], entry["partition_values"]))
            version, index, snapshot = version + 1, 0, False
        # Forget versions already read: the cache must not grow with the life of the query.
        for key in [k for k in self._cache if k[0] < start["version"]]:
            del self._cache[key]
        groups = split_row_groups(self.path, slices, wanted=int(self.options.get("minpartitions", 2)))
        return [DeltaRsPartition(group) for group in groups]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        # An empty table plans no partition; Spark then still asks for one, with a placeholder.
        if isinstance(partition, DeltaRsPartition):
            yield from read_slices(self.path, self.schema, partition.slices)

    def commit(self, end: dict) -> None:
        return None

    # -- the log --------------------------------------------------------------------------------------
    def _latest_version(self) -> int:
        log_dir = os.path.join(self.path, "_delta_log")
        try:
            names = os.listdir(log_dir)
        except FileNotFoundError:
            return -1
        versions = [int(n[:20]) for n in names if len(n) == 25 and n.endswith(".json") and n[:20].isdigit()]
        return max(versions, default=-1)

    def _files_of(self, version: int, snapshot: bool) -> VersionFiles:
        key = (version, snapshot)
        if key not in self._cache:
            self._cache[key] = self._load_snapshot(version) if snapshot else self._load_commit(version)
        return self._cache[key]

    def _load_snapshot(self, version: int) -> VersionFiles:
        table = open_table(self.path, version)
        actions = pa.table(table.get_add_actions(flatten=False)).to_pylist()
        files = [
            {"path": a["path"], "size": a["size_bytes"], "rows": a.get("num_records") or 0,
             "partition_values": dict(a.get("partition_values") or {})}
            for a in actions
        ]
        files.sort(key=lambda f: f["path"])
        return VersionFiles(files)

    def _load_commit(self, version: int) -> VersionFiles:
        commit_file = os.path.join(self.path, "_delta_log", f"{version:020d}.json")
        try:
            with open(commit_file) as handle:
                actions = [json.loads(line) for line in handle if line.strip()]
        except FileNotFoundError:
            raise DeltaRsError(
                f"{STREAM_CHANGE_MARKER}: commit {version} of {self.path} is no longer in the Delta log "
                "(log cleanup ran); restart the stream from a new checkpoint"
            ) from None
        adds = [a["add"] for a in actions if "add" in a and a["add"].get("dataChange", True)]
        removes = [a["remove"] for a in actions if "remove" in a and a["remove"].get("dataChange", True)]
        if removes:
            if self.options.get("skipchangecommits", "").lower() in TRUE_VALUES:
                return VersionFiles([])
            if not adds and self.options.get("ignoredeletes", "").lower() in TRUE_VALUES:
                return VersionFiles([])
            raise DeltaRsError(
                f"{STREAM_CHANGE_MARKER}: version {version} of {self.path} deleted or rewrote rows; a stream "
                "only follows appends: set skipChangeCommits=true (or ignoreDeletes=true for pure deletes) "
                "or restart from a new checkpoint"
            )
        files = []
        for add in adds:
            stats = json.loads(add.get("stats") or "{}")
            files.append({"path": add["path"], "size": add.get("size", 0), "rows": stats.get("numRecords", 0),
                          "partition_values": add.get("partitionValues") or {}})
        return VersionFiles(files)
