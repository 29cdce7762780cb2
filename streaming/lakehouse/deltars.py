"""Delta Lake for Spark without the Delta JVM jars: a Python Data Source named ``deltars`` backed by delta-rs.

Batch and streaming, read and write. Executors read and write Parquet files in the table folder; the
driver commits the files of a write in one Delta transaction. Writes carrying an application transaction
(``txnAppId`` + ``txnVersion`` options, or a streaming query's batch id) are idempotent: a version already
committed for that application is skipped and its freshly written files removed, so a micro-batch replayed
after a crash never duplicates rows.

Options (all optional except ``path``):

read: ``versionAsOf``, ``timestampAsOf`` (time travel).
write: ``txnAppId``, ``txnVersion`` (idempotent batch writes), ``mergeSchema`` (add new columns),
``targetFileRows`` and ``targetRowGroupBytes`` (file layout), ``userMetadata``.
stream read: ``maxFilesPerTrigger``, ``maxBytesPerTrigger``, ``maxRowsPerTrigger`` (admission control),
``startingVersion`` (default: the current snapshot, then every later commit), ``ignoreDeletes`` (skip
commits that only remove rows), ``skipChangeCommits`` (skip every commit that removes or rewrites rows).
stream write: ``txnAppId`` (required: a stable name of the query; Spark does not tell a sink its id).

Limits: local or mounted (POSIX) paths; tables using deletion vectors or column mapping need the native
``delta`` engine (``delta_engine = delta-spark``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    DataSourceStreamArrowWriter,
    DataSourceStreamReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.streaming.datasource import SupportsTriggerAvailableNow
from pyspark.sql.types import StructType

# Markers let the lakehouse layer turn an error raised in a Python worker (which reaches the driver wrapped
# in a JVM exception) back into a named error with a one-line message.
SCHEMA_MISMATCH_MARKER = "XRAY_SCHEMA_MISMATCH"
STREAM_CHANGE_MARKER = "XRAY_DELTA_STREAM_CHANGE"
UNSUPPORTED_MARKER = "XRAY_DELTA_UNSUPPORTED"

TRUE_VALUES = {"true", "1", "yes"}
TIMESTAMP_ZONE = "UTC"
MAX_STAT_STRING = 256  # exact min/max only (never truncated): ids and most paths fit


class DeltaRsError(Exception):
    """An error of this data source; its message starts with a marker the lakehouse layer recognises."""


# ---------------------------------------------------------------------------------------------------------
# Schema helpers
# ---------------------------------------------------------------------------------------------------------


def spark_schema_of(table: Any) -> StructType:
    """The Spark schema of a delta-rs table; Delta's schema JSON is Spark's, comments included."""
    return StructType.fromJson(json.loads(table.schema().to_json()))


def arrow_schema_of_spark(schema: StructType) -> pa.Schema:
    """Arrow schema for a Spark schema, timestamps in zone UTC and column comments kept as metadata."""
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = normalize_arrow_schema(to_arrow_schema(schema, timezone=TIMESTAMP_ZONE))
    fields = []
    for arrow_field, spark_field in zip(arrow, schema.fields, strict=True):
        # Like Delta on Spark, columns are nullable: rows written before a column existed hold nulls.
        arrow_field = arrow_field.with_nullable(True)
        comment = (spark_field.metadata or {}).get("comment")
        fields.append(arrow_field.with_metadata({"comment": comment}) if comment else arrow_field)
    return pa.schema(fields)


def _normalize_type(data_type: pa.DataType) -> pa.DataType:
    # delta-rs accepts only zone "UTC" (Spark hands over e.g. "Etc/UTC"), and stores microseconds.
    if pa.types.is_timestamp(data_type):
        return pa.timestamp("us", tz=TIMESTAMP_ZONE if data_type.tz else None)
    if pa.types.is_large_string(data_type):
        return pa.string()
    if pa.types.is_large_binary(data_type):
        return pa.binary()
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return pa.list_(pa.field("element", _normalize_type(data_type.value_type), True))
    if pa.types.is_struct(data_type):
        return pa.struct([f.with_type(_normalize_type(f.type)) for f in data_type])
    if pa.types.is_map(data_type):
        return pa.map_(_normalize_type(data_type.key_type), _normalize_type(data_type.item_type))
    return data_type


def normalize_arrow_schema(schema: pa.Schema) -> pa.Schema:
    """Replace Arrow types Delta does not accept with the ones it does (same values)."""
    return pa.schema([f.with_type(_normalize_type(f.type)) for f in schema], metadata=schema.metadata)


def _spark_type_name(field_: Any) -> str:
    return field_.dataType.simpleString()


def schema_differences(table_schema: StructType, incoming: StructType) -> tuple[list[str], list[str]]:
    """(new columns, columns whose type differs) of ``incoming`` against the table, case-insensitively."""
    existing = {f.name.lower(): f for f in table_schema.fields}
    new_columns, changed = [], []
    for incoming_field in incoming.fields:
        current = existing.get(incoming_field.name.lower())
        if current is None:
            new_columns.append(incoming_field.name)
        elif _spark_type_name(current) != _spark_type_name(incoming_field):
            changed.append(
                f"{incoming_field.name} ({_spark_type_name(incoming_field)} != table's {_spark_type_name(current)})"
            )
    return new_columns, changed


def check_append_schema(table_path: str, table_schema: StructType, incoming: StructType, merge: bool) -> StructType:
    """The schema to commit with; raises a schema-mismatch error naming the columns that do not fit."""
    new_columns, changed = schema_differences(table_schema, incoming)
    if changed:
        raise DeltaRsError(
            f"{SCHEMA_MISMATCH_MARKER}: cannot write to {table_path}: column types differ: {', '.join(changed)}"
        )
    if new_columns and not merge:
        raise DeltaRsError(
            f"{SCHEMA_MISMATCH_MARKER}: cannot write to {table_path}: columns not in the table: "
            f"{', '.join(new_columns)} (drop them, or allow schema evolution with mergeSchema=true)"
        )
    if not new_columns:
        return table_schema
    by_name = {f.name: f for f in incoming.fields}
    return StructType(table_schema.fields + [by_name[name] for name in new_columns])


# ---------------------------------------------------------------------------------------------------------
# Writing files on executors
# ---------------------------------------------------------------------------------------------------------


@dataclass
class WrittenFile:
    """A Parquet file an executor wrote into the table folder (path relative to the table)."""

    path: str
    size: int
    num_records: int
    stats: str
    modification_time: int


@dataclass
class DeltaRsCommitMessage(WriterCommitMessage):
    files: list[WrittenFile] = field(default_factory=list)


def _column_stats(table: pa.Table) -> str:
    """Delta file statistics: row count, null counts, and min/max where they are cheap and exact."""
    stats: dict[str, Any] = {"numRecords": table.num_rows, "minValues": {}, "maxValues": {}, "nullCount": {}}
    for name, column in zip(table.column_names, table.columns, strict=True):
        data_type = column.type
        if pa.types.is_struct(data_type) or pa.types.is_list(data_type) or pa.types.is_map(data_type):
            continue
        stats["nullCount"][name] = column.null_count
        if column.null_count == len(column):
            continue
        if pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_boolean(data_type):
            extremes = pc.min_max(column)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
            if isinstance(low, float) and (low != low or high != high):  # NaN has no order
                continue
            stats["minValues"][name], stats["maxValues"][name] = low, high
        elif pa.types.is_string(data_type):
            extremes = pc.min_max(column)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
            # A truncated max would be wrong for data skipping; leave long strings out.
            if len(low) <= MAX_STAT_STRING and len(high) <= MAX_STAT_STRING:
                stats["minValues"][name], stats["maxValues"][name] = low, high
    return json.dumps(stats)


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """Cast a batch to the table's Arrow schema (time zones normalized, comments attached)."""
    table = pa.Table.from_batches([batch])
    return table.cast(schema) if table.schema != schema else table


class ParquetFileWriter:
    """Writes incoming Arrow batches into Parquet files in the table folder, rolling at a row target."""

    def __init__(self, table_path: str, schema: pa.Schema, options: dict[str, str], prefix: str = "part-"):
        self.table_path = table_path
        self.prefix = prefix  # `txn_file_prefix` for the files of an application transaction
        self.schema = schema
        self.target_file_rows = int(options.get("targetfilerows", 1_000_000))
        self.target_row_group_bytes = int(options.get("targetrowgroupbytes", 16 * 1024 * 1024))
        self.files: list[WrittenFile] = []
        self._writer: pq.ParquetWriter | None = None
        self._relative_path = ""
        self._rows_in_file = 0
        self._stats_parts: list[pa.Table] = []

    def _open(self) -> None:
        self._relative_path = f"{self.prefix}{uuid.uuid4()}-c000.zstd.parquet"
        # Binary columns hold already-compressed image bytes: zstd would spend CPU for nothing.
        compression = {f.name: "none" if pa.types.is_binary(f.type) else "zstd" for f in self.schema}
        self._writer = pq.ParquetWriter(
            os.path.join(self.table_path, self._relative_path), self.schema, compression=compression
        )
        self._rows_in_file = 0
        self._stats_parts = []

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        full_path = os.path.join(self.table_path, self._relative_path)
        # Statistics skip the binary columns, so keeping only the small columns in memory is cheap.
        small = [t.drop_columns([c for c in t.column_names if pa.types.is_binary(t.schema.field(c).type)])
                 for t in self._stats_parts]
        stats = _column_stats(pa.concat_tables(small)) if small else json.dumps({"numRecords": 0})
        stat = os.stat(full_path)
        self.files.append(
            WrittenFile(self._relative_path, stat.st_size, self._rows_in_file, stats, int(stat.st_mtime * 1000))
        )
        self._writer = None

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        table = conform_batch(batch, self.schema)
        if self._writer is None:
            self._open()
        row_bytes = max(1, table.nbytes // max(1, table.num_rows))
        rows_per_group = max(1, self.target_row_group_bytes // row_bytes)
        assert self._writer is not None
        try:
            self._writer.write_table(table, row_group_size=rows_per_group)
        except OSError as error:
            # pyarrow's message names no file; the path lets the driver say which table filled the disk.
            if error.errno == errno.ENOSPC or "errno 28" in str(error).lower():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                              os.path.join(self.table_path, self._relative_path)) from error
            raise
        self._rows_in_file += table.num_rows
        self._stats_parts.append(table)
        if self._rows_in_file >= self.target_file_rows:
            self._close()

    def finish(self) -> DeltaRsCommitMessage:
        self._close()
        return DeltaRsCommitMessage(files=self.files)


def _write_partition(table_path: str, schema: pa.Schema, options: dict[str, str],
                     iterator: Iterator[pa.RecordBatch]) -> DeltaRsCommitMessage:
    writer = ParquetFileWriter(table_path, schema, options)
    try:
        for batch in iterator:
            writer.write(batch)
        return writer.finish()
    except BaseException:
        # A failed task must not leave files behind (the driver never hears of them).
        writer._close()
        remove_files(table_path, writer.files)
        raise


def txn_file_prefix(app_id: str | None, version: int | None) -> str:
    """The name prefix of the files written for application transaction (app_id, version), so a redo of
    the transaction can find the files a killed attempt left behind (see `remove_orphans`)."""
    if app_id is None or version is None:
        return "part-"
    slug = "".join(c if c.isalnum() else "-" for c in app_id)[:24]
    # The hash keeps apps whose slugs coincide ("bronze:events", "bronze-events") apart.
    digest = hashlib.sha1(app_id.encode()).hexdigest()[:8]
    return f"part-txn-{slug}-{digest}-v{version}-"


def remove_orphans(table_path: str, app_id: str, version: int) -> list[str]:
    """Delete the files of transaction (app_id, version) that no commit references: what an attempt killed
    between writing and committing left in the table folder. Returns the names removed.

    Called by the driver before a (re)run of the transaction writes. Race-free: only the stream writes
    files with these prefixes, only one stream runs per lakehouse (its lock), and within it a batch's
    writes to a table happen after this call. Files the transaction's commit added are kept even when a
    later commit removed them (a MERGE): time travel still reads them until VACUUM.
    """
    prefix = txn_file_prefix(app_id, version)
    try:
        candidates = [n for n in os.listdir(table_path) if n.startswith(prefix)]
    except FileNotFoundError:
        return []
    if not candidates:
        return []
    referenced: set[str] = set()
    table = _open_table(table_path)
    if table is not None:
        referenced.update(pa.table(table.get_add_actions(flatten=False)).column("path").to_pylist())
        committed = table.transaction_version(app_id)
        if committed is not None and committed >= version:
            referenced.update(_added_by_transaction(table_path, app_id, version))
    removed = [n for n in candidates if n not in referenced]
    for name in removed:
        try:
            os.remove(os.path.join(table_path, name))
        except FileNotFoundError:
            pass
    return removed


def _added_by_transaction(table_path: str, app_id: str, version: int) -> set[str]:
    """Files added by the commit carrying (app_id, version), from the JSON commits still in the log."""
    log_dir = os.path.join(table_path, "_delta_log")
    names = sorted((n for n in os.listdir(log_dir) if n.endswith(".json") and n[:-5].isdigit()), reverse=True)
    for name in names:
        with open(os.path.join(log_dir, name)) as handle:
            actions = [json.loads(line) for line in handle if line.strip()]
        if any(a.get("txn", {}).get("appId") == app_id and a["txn"].get("version") == version for a in actions):
            return {a["add"]["path"] for a in actions if "add" in a}
    # The commit is only in a checkpoint: keep every file of the prefix rather than guess.
    return {n for n in os.listdir(table_path) if n.startswith(txn_file_prefix(app_id, version))}


def remove_files(table_path: str, files: Sequence[WrittenFile]) -> None:
    """Delete files that were written but will never be committed."""
    for written in files:
        try:
            os.remove(os.path.join(table_path, written.path))
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------------------------------------
# Committing on the driver
# ---------------------------------------------------------------------------------------------------------


def local_path(path: str) -> str:
    """A filesystem path for a plain path or a ``file:`` URI."""
    if path.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(path).path)
    return path


def _open_table(path: str, version: int | None = None) -> Any:
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(path):
        return None
    table = DeltaTable(path, version=version) if version is not None else DeltaTable(path)
    _check_supported(table, path)
    return table


def _check_supported(table: Any, path: str) -> None:
    protocol = table.protocol()
    features = set(protocol.reader_features or [])
    unsupported = features & {"deletionVectors", "columnMapping", "v2Checkpoint"}
    if unsupported:
        raise DeltaRsError(
            f"{UNSUPPORTED_MARKER}: table {path} uses {', '.join(sorted(unsupported))}; "
            "read it with the native Delta engine (delta_engine = delta-spark)"
        )


def commit_files(
    table_path: str,
    incoming_schema: StructType,
    messages: Sequence[DeltaRsCommitMessage | None],
    mode: str,
    app_id: str | None,
    app_version: int | None,
    merge_schema: bool = False,
    operation_metadata: dict[str, Any] | None = None,
) -> bool:
    """Commit the files of one write as one Delta transaction. Returns False when the application
    transaction (app_id, app_version) was already committed: the write is then skipped and its files deleted.
    """
    from deltalake import CommitProperties
    from deltalake.transaction import AddAction, Transaction, create_table_with_add_actions

    files = [f for message in messages if message is not None for f in message.files]
    actions = [
        AddAction(f.path, f.size, {}, f.modification_time, True, f.stats) for f in files
    ]
    transactions = [Transaction(app_id, app_version)] if app_id is not None and app_version is not None else None
    properties = CommitProperties(app_transactions=transactions, custom_metadata=operation_metadata or None)
    for attempt in range(5):
        table = _open_table(table_path)
        if table is not None and app_id is not None and app_version is not None:
            committed = table.transaction_version(app_id)
            if committed is not None and committed >= app_version:
                remove_files(table_path, files)
                return False
        if table is None:
            schema = arrow_schema_of_spark(incoming_schema)
            try:
                create_table_with_add_actions(
                    table_path, _delta_schema(schema), actions, mode="error", commit_properties=properties
                )
                return True
            except Exception as error:  # noqa: BLE001 - another writer created it first: append instead
                if "exist" not in str(error).lower() or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
                continue
        table_schema = spark_schema_of(table)
        commit_schema = check_append_schema(table_path, table_schema, incoming_schema, merge_schema)
        if len(commit_schema.fields) > len(table_schema.fields):
            # delta-rs keeps the table schema on a write transaction, so new columns are added first (a
            # separate metadata commit: readers see the new nullable columns a moment before the rows).
            added = _delta_schema(arrow_schema_of_spark(StructType(commit_schema.fields[len(table_schema.fields):])))
            table.alter.add_columns(list(added.fields))
            table = _open_table(table_path)
        table.create_write_transaction(
            actions,
            mode,
            _delta_schema(arrow_schema_of_spark(commit_schema)),
            commit_properties=properties,
        )
        return True
    raise AssertionError("unreachable")  # pragma: no cover


def _delta_schema(arrow_schema: pa.Schema) -> Any:
    from deltalake import Schema

    return Schema.from_arrow(arrow_schema)


# ---------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------


@dataclass
class FileSlice:
    """A Parquet file of the table, or some row groups of it (None: all)."""

    path: str
    partition_values: dict[str, str | None]
    row_groups: list[int] | None = None


class DeltaRsPartition(InputPartition):
    def __init__(self, slices: list[FileSlice]):
        super().__init__(slices)
        self.slices = slices


def _split_row_groups(table_path: str, slices: list[FileSlice], wanted: int) -> list[list[FileSlice]]:
    """Group file slices into partitions; with few files, split files by row group for parallelism."""
    if len(slices) >= wanted:
        return [[s] for s in slices]
    result = []
    for file_slice in slices:
        try:
            groups = pq.ParquetFile(os.path.join(table_path, file_slice.path)).metadata.num_row_groups
        except FileNotFoundError:
            groups = 1
        if groups <= 1:
            result.append([file_slice])
            continue
        per_part = max(1, -(-groups * len(slices) // wanted))
        for start in range(0, groups, per_part):
            result.append([FileSlice(file_slice.path, file_slice.partition_values,
                                     list(range(start, min(groups, start + per_part))))])
    return result


def read_slices(table_path: str, schema: StructType, slices: Sequence[FileSlice]) -> Iterator[pa.RecordBatch]:
    """Read file slices as Arrow batches in the requested schema (missing columns are null)."""
    target = arrow_schema_of_spark(schema)
    for file_slice in slices:
        parquet = pq.ParquetFile(os.path.join(table_path, file_slice.path))
        present = set(parquet.schema_arrow.names)
        columns = [name for name in target.names if name in present]
        for batch in parquet.iter_batches(batch_size=1024, row_groups=file_slice.row_groups, columns=columns):
            arrays = []
            for target_field in target:
                if target_field.name in present:
                    array = batch.column(target_field.name)
                    arrays.append(array if array.type == target_field.type else array.cast(target_field.type))
                elif target_field.name in file_slice.partition_values:
                    value = file_slice.partition_values[target_field.name]
                    arrays.append(pa.array([value] * batch.num_rows, pa.string()).cast(target_field.type))
                else:
                    arrays.append(pa.nulls(batch.num_rows, target_field.type))
            yield pa.RecordBatch.from_arrays(arrays, schema=target)


class DeltaRsReader(DataSourceReader):
    def __init__(self, path: str, schema: StructType, options: dict[str, str]):
        self.path = path
        self.schema = schema
        self.options = options

    def partitions(self) -> Sequence[InputPartition]:
        table = _open_table(self.path)
        if table is None:
            return []
        if "versionasof" in self.options:
            table.load_as_version(int(self.options["versionasof"]))
        elif "timestampasof" in self.options:
            table.load_as_version(self.options["timestampasof"])
        actions = pa.table(table.get_add_actions(flatten=False)).to_pylist()
        slices = [FileSlice(a["path"], dict(a.get("partition_values") or {})) for a in actions]
        groups = _split_row_groups(self.path, slices, wanted=int(self.options.get("minpartitions", 2)))
        return [DeltaRsPartition(group) for group in groups]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        # An empty table plans no partition; Spark then still asks for one, with a placeholder.
        if isinstance(partition, DeltaRsPartition):
            yield from read_slices(self.path, self.schema, partition.slices)


# ---------------------------------------------------------------------------------------------------------
# Streaming source: rows added by new table versions
# ---------------------------------------------------------------------------------------------------------


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
        groups = _split_row_groups(self.path, slices, wanted=int(self.options.get("minpartitions", 2)))
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
        table = _open_table(self.path, version)
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


# ---------------------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------------------


class _ParquetFilesWriter:
    """What the batch and the streaming writer share: the schema check before any task runs, executors
    writing Parquet files into the table folder, and removing the files of an aborted write."""

    def _prepare(self, path: str, schema: StructType, options: dict[str, str]) -> None:
        self.path = path
        self.spark_schema = schema
        self.arrow_schema = arrow_schema_of_spark(schema)
        self.options = options
        self.merge_schema = options.get("mergeschema", "").lower() in TRUE_VALUES
        os.makedirs(path, exist_ok=True)
        # Fail before any task runs when the rows cannot go into the table.
        table = _open_table(path)
        if table is not None:
            check_append_schema(path, spark_schema_of(table), schema, self.merge_schema)

    def write(self, iterator: Iterator[pa.RecordBatch]) -> DeltaRsCommitMessage:
        return _write_partition(self.path, self.arrow_schema, self.options, iterator)

    def _remove_written(self, messages: list[WriterCommitMessage | None]) -> None:
        for message in messages:
            if isinstance(message, DeltaRsCommitMessage):
                remove_files(self.path, message.files)


class DeltaRsWriter(_ParquetFilesWriter, DataSourceArrowWriter):
    def __init__(self, path: str, schema: StructType, overwrite: bool, options: dict[str, str]):
        self.overwrite = overwrite or options.get("mode") == "overwrite"
        self._prepare(path, schema, options)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        app_id = self.options.get("txnappid")
        version = int(self.options["txnversion"]) if "txnversion" in self.options else None
        commit_files(
            self.path, self.spark_schema, messages,  # type: ignore[arg-type]
            "overwrite" if self.overwrite else "append", app_id, version, self.merge_schema,
            _user_metadata(self.options),
        )

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        self._remove_written(messages)


class DeltaRsStreamWriter(_ParquetFilesWriter, DataSourceStreamArrowWriter):
    def __init__(self, path: str, schema: StructType, overwrite: bool, options: dict[str, str]):
        # Spark does not hand the query id or checkpoint to a sink, so the caller names the query.
        self.app_id = options.get("txnappid")
        if not self.app_id:
            raise DeltaRsError(
                f"{UNSUPPORTED_MARKER}: a deltars stream sink needs a txnAppId option (a name unique and "
                "stable for this query, e.g. its query name) to commit each micro-batch exactly once"
            )
        self._prepare(path, schema, options)

    def commit(self, messages: list[WriterCommitMessage | None], batchId: int) -> None:
        commit_files(self.path, self.spark_schema, messages, "append",  # type: ignore[arg-type]
                     str(self.app_id), batchId, self.merge_schema, _user_metadata(self.options))

    def abort(self, messages: list[WriterCommitMessage | None], batchId: int) -> None:
        self._remove_written(messages)


def _lower_keys(options: Any) -> dict[str, str]:
    # Spark hands options over case-insensitively; plain dicts keyed in lower case keep that when pickled.
    return {str(k).lower(): str(v) for k, v in options.items()}


def _user_metadata(options: dict[str, str]) -> dict[str, Any] | None:
    return {"userMetadata": options["usermetadata"]} if options.get("usermetadata") else None


# ---------------------------------------------------------------------------------------------------------
# The data source
# ---------------------------------------------------------------------------------------------------------


class DeltaRsDataSource(DataSource):
    """``spark.read.format("deltars").load(path)`` and friends; see the module docstring for options."""

    @classmethod
    def name(cls) -> str:
        return "deltars"

    @property
    def path(self) -> str:
        path = self.options.get("path")
        if not path:
            raise DeltaRsError(f"{UNSUPPORTED_MARKER}: the deltars data source needs a path")
        return local_path(path)

    def schema(self) -> StructType:
        table = _open_table(self.path)
        if table is None:
            raise DeltaRsError(f"{UNSUPPORTED_MARKER}: {self.path} is not a Delta table (no _delta_log)")
        return spark_schema_of(table)

    def reader(self, schema: StructType) -> DataSourceReader:
        return DeltaRsReader(self.path, schema, _lower_keys(self.options))

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceArrowWriter:
        return DeltaRsWriter(self.path, schema, overwrite, _lower_keys(self.options))

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return DeltaRsStreamReader(self.path, schema, _lower_keys(self.options))

    def streamWriter(self, schema: StructType, overwrite: bool) -> DataSourceStreamArrowWriter:
        return DeltaRsStreamWriter(self.path, schema, overwrite, _lower_keys(self.options))
