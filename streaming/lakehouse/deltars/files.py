"""Parquet files in the table folder: written by executors (or the driver) before a commit, with Delta
statistics, named by their application transaction, and removed when no commit will ever name them."""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql.datasource import WriterCommitMessage

from streaming.lakehouse.deltars.table import open_table
from streaming.lakehouse.deltars.txn import txn_file_prefix

MAX_STAT_STRING = 256  # exact min/max only (never truncated): ids and most paths fit


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
        # Binary columns hold already-compressed image bytes, each distinct: zstd, a dictionary (which
        # hashes every value) and min/max statistics (never used) would spend CPU for nothing.
        binary = {f.name for f in self.schema if pa.types.is_binary(f.type)}
        small = [f.name for f in self.schema if f.name not in binary]
        compression = {f.name: "none" if f.name in binary else "zstd" for f in self.schema}
        self._writer = pq.ParquetWriter(
            os.path.join(self.table_path, self._relative_path), self.schema, compression=compression,
            use_dictionary=small, write_statistics=small,
        )
        self._rows_in_file = 0
        self._stats_parts = []

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        full_path = os.path.join(self.table_path, self._relative_path)
        parts = self._stats_parts
        stats = _column_stats(pa.concat_tables(parts)) if parts else json.dumps({"numRecords": 0})
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
        # Statistics skip the binary columns: only the small columns stay in memory until the file is closed
        # (the bytes would stay held for the whole file, past the slice that brought them).
        self._stats_parts.append(table.drop_columns(
            [c for c in table.column_names if pa.types.is_binary(table.schema.field(c).type)]))
        if self._rows_in_file >= self.target_file_rows:
            self._close()

    def finish(self) -> DeltaRsCommitMessage:
        self._close()
        return DeltaRsCommitMessage(files=self.files)

    def discard(self) -> None:
        """Close and delete every file written: a failed write, whose files no commit will ever name."""
        self._close()
        remove_files(self.table_path, self.files)


def write_partition(table_path: str, schema: pa.Schema, options: dict[str, str],
                    iterator: Iterator[pa.RecordBatch]) -> DeltaRsCommitMessage:
    writer = ParquetFileWriter(table_path, schema, options)
    try:
        for batch in iterator:
            writer.write(batch)
        return writer.finish()
    except BaseException:
        writer.discard()  # a failed task must not leave files behind (the driver never hears of them)
        raise


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
    table = open_table(table_path)
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
