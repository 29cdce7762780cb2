"""Batch reads: the table's data files (at a version for time travel) as Spark partitions of file slices."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql.datasource import DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from streaming.lakehouse.deltars.schema import arrow_schema_of_spark
from streaming.lakehouse.deltars.table import open_table


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


def split_row_groups(table_path: str, slices: list[FileSlice], wanted: int) -> list[list[FileSlice]]:
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
        table = open_table(self.path)
        if table is None:
            return []
        if "versionasof" in self.options:
            table.load_as_version(int(self.options["versionasof"]))
        elif "timestampasof" in self.options:
            table.load_as_version(self.options["timestampasof"])
        actions = pa.table(table.get_add_actions(flatten=False)).to_pylist()
        slices = [FileSlice(a["path"], dict(a.get("partition_values") or {})) for a in actions]
        groups = split_row_groups(self.path, slices, wanted=int(self.options.get("minpartitions", 2)))
        return [DeltaRsPartition(group) for group in groups]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        # An empty table plans no partition; Spark then still asks for one, with a placeholder.
        if isinstance(partition, DeltaRsPartition):
            yield from read_slices(self.path, self.schema, partition.slices)
