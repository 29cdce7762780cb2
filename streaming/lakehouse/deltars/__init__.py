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

Modules: ``source`` (the data source), ``read`` and ``stream`` (batch and stream readers), ``write`` (batch and
stream writers), ``files`` (Parquet files on executors, orphans), ``commit`` (one Delta transaction on the
driver), ``txn`` (application transactions: file prefixes, the commit's marker, finding that commit again),
``schema`` (Spark <-> Arrow), ``table`` (opening a table), ``options``, ``errors`` (markers).
"""

from streaming.lakehouse.deltars.commit import commit_files
from streaming.lakehouse.deltars.errors import (
    SCHEMA_MISMATCH_MARKER,
    STREAM_CHANGE_MARKER,
    UNSUPPORTED_MARKER,
    DeltaRsError,
)
from streaming.lakehouse.deltars.files import (
    MAX_STAT_STRING,
    DeltaRsCommitMessage,
    ParquetFileWriter,
    WrittenFile,
    conform_batch,
    remove_files,
    remove_orphans,
)
from streaming.lakehouse.deltars.options import TRUE_VALUES, local_path
from streaming.lakehouse.deltars.read import DeltaRsPartition, DeltaRsReader, FileSlice, read_slices
from streaming.lakehouse.deltars.schema import (
    TIMESTAMP_ZONE,
    arrow_schema_of_spark,
    check_append_schema,
    normalize_arrow_schema,
    schema_differences,
    spark_schema_of,
)
from streaming.lakehouse.deltars.source import DeltaRsDataSource
from streaming.lakehouse.deltars.stream import DeltaRsStreamReader, VersionFiles
from streaming.lakehouse.deltars.txn import TXN_METADATA_KEY, txn_commit_version, txn_file_prefix
from streaming.lakehouse.deltars.write import DeltaRsStreamWriter, DeltaRsWriter

__all__ = [
    "MAX_STAT_STRING",
    "SCHEMA_MISMATCH_MARKER",
    "STREAM_CHANGE_MARKER",
    "TIMESTAMP_ZONE",
    "TRUE_VALUES",
    "TXN_METADATA_KEY",
    "UNSUPPORTED_MARKER",
    "DeltaRsCommitMessage",
    "DeltaRsDataSource",
    "DeltaRsError",
    "DeltaRsPartition",
    "DeltaRsReader",
    "DeltaRsStreamReader",
    "DeltaRsStreamWriter",
    "DeltaRsWriter",
    "FileSlice",
    "ParquetFileWriter",
    "VersionFiles",
    "WrittenFile",
    "arrow_schema_of_spark",
    "check_append_schema",
    "commit_files",
    "conform_batch",
    "local_path",
    "normalize_arrow_schema",
    "read_slices",
    "remove_files",
    "remove_orphans",
    "schema_differences",
    "spark_schema_of",
    "txn_commit_version",
    "txn_file_prefix",
]
