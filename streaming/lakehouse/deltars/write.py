"""The batch and the streaming writer: executors write Parquet files, the driver commits them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pyarrow as pa
from pyspark.sql.datasource import DataSourceArrowWriter, DataSourceStreamArrowWriter, WriterCommitMessage
from pyspark.sql.types import StructType

from streaming.lakehouse.deltars.commit import commit_files
from streaming.lakehouse.deltars.errors import UNSUPPORTED_MARKER, DeltaRsError
from streaming.lakehouse.deltars.files import DeltaRsCommitMessage, remove_files, write_partition
from streaming.lakehouse.deltars.options import TRUE_VALUES, user_metadata
from streaming.lakehouse.deltars.schema import arrow_schema_of_spark, check_append_schema, spark_schema_of
from streaming.lakehouse.deltars.table import open_table


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
        table = open_table(path)
        if table is not None:
            check_append_schema(path, spark_schema_of(table), schema, self.merge_schema)

    def write(self, iterator: Iterator[pa.RecordBatch]) -> DeltaRsCommitMessage:
        return write_partition(self.path, self.arrow_schema, self.options, iterator)

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
            user_metadata(self.options),
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
                     str(self.app_id), batchId, self.merge_schema, user_metadata(self.options))

    def abort(self, messages: list[WriterCommitMessage | None], batchId: int) -> None:
        self._remove_written(messages)
