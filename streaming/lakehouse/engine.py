"""The lakehouse: where tables live and the one place that knows which Delta engine reads and writes them.

Code above this module asks for tables by name (``lakehouse.read("silver_xray_metadata")``) and never names
a format: the native ``delta`` format where the Delta JVM classes load (Databricks, a cluster with
delta-spark), else ``deltars`` (delta-rs behind a Python data source). Both write plain Delta tables.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import StructType

from streaming.core import profiling
from streaming.core.config import XrayConfig
from streaming.core.errors import (
    ConfigError,
    SchemaMismatchError,
    TableNotFoundError,
    XrayError,
    received,
)
from streaming.lakehouse.catalog import ALL_TABLES, TABLES_BY_NAME, TableSpec
from streaming.lakehouse.direct import arrow_rows, commit_arrow, create_table
from streaming.lakehouse.enginechoice import DELTA_RS_FORMAT, NATIVE_FORMAT, engine_choice
from streaming.lakehouse.failures import storage_error

log = logging.getLogger(__name__)



@contextlib.contextmanager
def translate_errors(table: str | None = None, table_path: str | None = None) -> Iterator[None]:
    """Turn errors raised inside Spark's Python workers back into named errors with one-line messages,
    and storage failures (full disk, damaged Delta log) into named errors naming ``table`` when given."""
    try:
        yield
    except XrayError:
        raise
    except Exception as error:  # only errors carrying our markers are translated
        named = received(str(error))
        if named is not None:
            raise named from None
        storage = storage_error(error, table, Path(table_path) if table_path else None)
        if storage is not None:
            raise storage from None
        raise


def await_termination(query: StreamingQuery, timeout: float | None = None) -> bool:
    """Wait for a streaming query; its failure surfaces as a named error when it is one of ours."""
    with translate_errors():
        if timeout is None:
            query.awaitTermination()
            return True
        return bool(query.awaitTermination(timeout))


class Lakehouse:
    """Tables by name under ``<root>/tables``, read and written through the configured Delta engine."""

    def __init__(self, spark: SparkSession, config: XrayConfig):
        self.spark = spark
        self.config = config
        self.format, self.engine_reason = engine_choice(spark, config)
        self._schema_checked: set[str] = set()  # tables whose columns were compared with their spec

    # -- locations ----------------------------------------------------------------------------------
    def path(self, table: str) -> str:
        """Filesystem path of a table."""
        return str(self.config.table_path(table))

    def exists(self, table: str) -> bool:
        from streaming.lakehouse.tables import table_exists

        return table_exists(self.config, table)  # the one existence rule

    # -- tables -------------------------------------------------------------------------------------
    def ensure_tables(self, specs: tuple[TableSpec, ...] = ALL_TABLES) -> None:
        """Create the declared tables that do not exist yet (empty, with schema and comments); an existing
        table whose columns are not the declared ones raises `SchemaMismatchError` (see `check_columns`)."""
        for spec in specs:
            if self.exists(spec.name):
                self.check_columns(spec)
                continue
            if self.format == DELTA_RS_FORMAT:
                with translate_errors(spec.name, self.path(spec.name)):
                    create_table(self.path(spec.name), spec, spec.schema)
            else:
                self._create_native(spec)
            log.debug("created table %s", spec.name)

    def _create_native(self, spec: TableSpec) -> None:
        """Delta Lake's CREATE TABLE: a metadata-only commit (no Spark job), columns with their comments;
        a concurrent creator winning is not a failure."""
        from delta.tables import DeltaTable as SparkDeltaTable

        try:
            with translate_errors(spec.name, self.path(spec.name)):
                (SparkDeltaTable.createIfNotExists(self.spark).location(self.path(spec.name))
                 .comment(spec.description).addColumns(spec.schema).execute())
        except Exception:
            if not self.exists(spec.name):
                raise

    def check_columns(self, spec: TableSpec) -> None:
        """Fail with one line when an existing table's columns differ from its declaration.

        A lakehouse written by an older version (e.g. silver with ``file_path`` before ``path_ref``
        replaced it) would otherwise fail later, inside a micro-batch, with a message naming a column but
        not the way out. Checked once per table and Lakehouse object.
        """
        if spec.name in self._schema_checked:
            return
        from streaming.lakehouse.deltars import spark_schema_of

        existing = {f.name.lower() for f in spark_schema_of(self.delta_table(spec.name)).fields}
        declared = {name.lower() for name in spec.column_names}
        if existing < declared:
            # An upgrade that only adds columns (e.g. the DICOM columns of silver): older rows read as null.
            self._add_columns(spec, [name for name in spec.column_names if name.lower() not in existing])
            existing = declared
        if existing != declared:
            missing, extra = sorted(declared - existing), sorted(existing - declared)
            raise SchemaMismatchError(
                f"table {spec.name} under {self.config.tables_dir} was written by another version of "
                f"xray-lakehouse (columns missing: {', '.join(missing) or 'none'}; not declared: "
                f"{', '.join(extra) or 'none'}); re-create the lakehouse (new --lakehouse folder, then "
                f"re-ingest landing) or migrate the table by hand (README: Patient identifiers)"
            )
        self._schema_checked.add(spec.name)

    def _add_columns(self, spec: TableSpec, names: list[str]) -> None:
        """Add declared nullable columns to an existing table (one INFO line says which)."""
        fields = [f for f in spec.schema.fields if f.name in names]
        if self.format == DELTA_RS_FORMAT:
            from deltalake import Schema
            from pyspark.sql.types import StructType

            from streaming.lakehouse.deltars import arrow_schema_of_spark

            self.delta_table(spec.name).alter.add_columns(
                list(Schema.from_arrow(arrow_schema_of_spark(StructType(fields))).fields))
        else:
            columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()} COMMENT '{f.metadata.get('comment', '')}'"
                                for f in fields)
            self.spark.sql(f"ALTER TABLE {NATIVE_FORMAT}.`{self.path(spec.name)}` ADD COLUMNS ({columns})")
        log.info("table %s: added the columns %s (this version declares them; older rows read as null)",
                 spec.name, ", ".join(names))

    def read(self, table: str, version: int | None = None, columns: list[str] | None = None) -> DataFrame:
        """A batch DataFrame of a table (optionally at a version: time travel); ``columns``: only those
        columns leave the files (Spark prunes native scans itself; the deltars source reads the columns of
        the schema it is given, so it is given theirs)."""
        if not self.exists(table):
            raise TableNotFoundError(
                f"table {table} does not exist under {self.config.tables_dir}; run 'xray stream' first"
            )
        reader = self.spark.read.format(self.format)
        if version is not None:
            reader = reader.option("versionAsOf", version)
        with translate_errors(table, self.path(table)):
            frame = reader.load(self.path(table))
            if columns is None:
                return frame
            if self.format == DELTA_RS_FORMAT:
                frame = reader.schema(StructType([f for f in frame.schema.fields if f.name in columns])).load(
                    self.path(table))
            return frame.select(*columns)

    def append(
        self,
        df: DataFrame,
        table: str,
        txn: tuple[str, int] | None = None,
        merge_schema: bool = False,
    ) -> None:
        """Append rows. ``txn`` = (application id, version) makes the write idempotent: a version already
        committed by that application is skipped (Delta's txnAppId/txnVersion)."""
        self._write(df, table, "append", txn, merge_schema)

    def overwrite(self, df: DataFrame, table: str, txn: tuple[str, int] | None = None) -> None:
        """Replace a table's rows in one transaction."""
        self._write(df, table, "overwrite", txn, False)

    def _write(self, df: DataFrame, table: str, mode: str, txn: tuple[str, int] | None, merge: bool) -> None:
        writer = df.write.format(self.format).mode(mode)
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
        if merge:
            writer = writer.option("mergeSchema", "true")
        with translate_errors(table, self.path(table)):
            writer.save(self.path(table))

    def append_rows(self, table: str, rows: list[dict[str, Any]], txn: tuple[str, int] | None = None) -> None:
        """Append a few rows built on the driver (events, summaries) to a declared table."""
        if rows:
            self.append_arrow(table, self._arrow_rows(table, rows), txn)

    def overwrite_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Replace a small declared table's rows (summaries) with rows built on the driver, in one commit."""
        self.append_arrow(table, self._arrow_rows(table, rows), mode="overwrite")

    def _arrow_rows(self, table: str, rows: list[dict[str, Any]]) -> Any:
        return arrow_rows(TABLES_BY_NAME[table].schema, rows)

    def append_arrow(self, table: str, data: Any, txn: tuple[str, int] | None = None, mode: str = "append") -> None:
        """Write an Arrow table held by the driver (a micro-batch's small results) to a declared table.

        With delta-rs the rows are committed straight from the driver, sparing a Spark job; the commit is
        the same idempotent transaction as any other write. ``mode`` is append or overwrite.
        """
        if data.num_rows == 0 and mode == "append":
            return
        spec = TABLES_BY_NAME[table]
        if self.format != DELTA_RS_FORMAT:
            self._write(self.spark.createDataFrame(data, schema=spec.schema), table, mode, txn, False)
            return
        with profiling.timed(f"commit {table}"):
            self.ensure_tables((spec,))
            with translate_errors(table, self.path(table)):
                commit_arrow(self.path(table), spec.schema, data, mode, txn)

    def read_arrow(self, table: str, columns: list[str] | None = None, filters: Any = None,
                   version: int | None = None) -> Any:
        """A table's rows (current, or as of ``version``) as an Arrow table on the driver, through delta-rs
        (any engine wrote it). For small reads only (ids, labels, events): no Spark job is started.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        if not filters:
            return self._read_snapshot(table, columns, version)
        # Filters are applied here, after the read: delta-rs 1.6 prunes files on a filtered column whose
        # statistics lack min/max (long strings) as if they held no match, and would lose rows.
        needed = None if columns is None else list(dict.fromkeys([*columns, *(f[0] for f in filters)]))
        data = self._read_snapshot(table, needed, version)
        operators = {"=": pc.equal, "==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
                     ">": pc.greater, ">=": pc.greater_equal}
        expression = None
        for column, op, value in filters:
            field = ds.field(column)
            if op == "in":
                term = pc.is_in(field, value_set=pa.array(list(value), data.schema.field(column).type))
            elif op == "not in":
                term = ~pc.is_in(field, value_set=pa.array(list(value), data.schema.field(column).type))
            else:
                term = operators[op](field, value)
            expression = term if expression is None else expression & term
        data = data.filter(expression)
        return data if columns is None else data.select(columns)

    def _read_snapshot(self, table: str, columns: list[str] | None, version: int | None) -> Any:
        """The rows of the current version (or of ``version``). A current-version read that finds a file
        gone is retried on a fresh snapshot: maintenance compacted the table and vacuumed the replaced
        files between the snapshot and the read (only with a short retention), the new files hold the
        same rows."""
        for attempt in range(3):
            delta = self.delta_table(table)
            if version is not None:
                delta.load_as_version(version)
            try:
                return delta.to_pyarrow_table(columns=columns)
            except FileNotFoundError:
                if version is not None or attempt == 2:
                    raise
                log.debug("table %s: a file was vacuumed during the read; reading the new version", table)
        raise AssertionError("unreachable")  # pragma: no cover

    def txn_commit_version(self, table: str, txn: tuple[str, int]) -> int | None:
        """Version of the commit that carries application transaction ``txn`` (None if not committed)."""
        from streaming.lakehouse.deltars import txn_commit_version

        with translate_errors(table, self.path(table)):
            return txn_commit_version(self.path(table), txn[0], txn[1])

    def check_stream_checkpoint(self, checkpoint: Path) -> None:
        """Refuse, in one line, a query reading a table whose checkpoint the other engine's streaming source
        wrote: their offsets differ (Delta's ``reservoirVersion`` vs. deltars' ``version``), and Spark would
        fail inside the query. Only separate silver/gold queries read a table as a stream; the default fused
        query reads landing through the service's own source, the same for both engines."""
        offsets = sorted((p for p in (checkpoint / "offsets").glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
        if not offsets:
            return
        text = offsets[-1].read_text(errors="replace")
        written = NATIVE_FORMAT if "reservoirVersion" in text else DELTA_RS_FORMAT if '"snapshot"' in text else None
        if written is not None and written != self.format:
            engine = "delta-spark" if written == NATIVE_FORMAT else "delta-rs"
            raise ConfigError(
                f"the stream checkpoint {checkpoint} was written with delta_engine = {engine}: run this query "
                f"with --delta-engine {engine}, or run the layers fused (xray stream without --layer), whose "
                "checkpoint both engines share")

    def read_stream(self, table: str, **options: Any) -> DataFrame:
        """A streaming DataFrame of the rows appended to a table."""
        self.ensure_tables(tuple(s for s in ALL_TABLES if s.name == table))
        reader = self.spark.readStream.format(self.format)
        for key, value in options.items():
            if value is not None:
                reader = reader.option(key, str(value))
        with translate_errors():
            return reader.load(self.path(table))

    def write_stream(self, df: DataFrame, table: str, query_name: str, **trigger: Any) -> StreamingQuery:
        """Stream rows into a table, exactly once (checkpoint + idempotent Delta commits)."""
        writer = (
            df.writeStream.format(self.format)
            .queryName(query_name)
            .option("checkpointLocation", str(self.config.checkpoint_path(query_name)))
            .option("txnAppId", query_name)
        )
        if trigger:
            writer = writer.trigger(**trigger)
        with translate_errors():
            return writer.start(self.path(table))

    # -- inspection ---------------------------------------------------------------------------------
    def delta_table(self, table: str) -> Any:
        """The delta-rs handle of a table (works whichever engine wrote it)."""
        from deltalake import DeltaTable

        if not self.exists(table):
            raise TableNotFoundError(f"table {table} does not exist under {self.config.tables_dir}")
        return DeltaTable(self.path(table))

    def version(self, table: str) -> int:
        return self.delta_table(table).version()

    def row_count(self, table: str) -> int:
        """Rows in the current version, from the log's file statistics (no data read)."""
        import pyarrow as pa

        actions = pa.table(self.delta_table(table).get_add_actions(flatten=True))
        return int(sum(n or 0 for n in actions.column("num_records").to_pylist())) if actions.num_rows else 0

    def merge_by_key(self, source: DataFrame, table: str, key: str) -> dict[str, int]:
        """Upsert ``source`` rows into ``table`` matching on ``key`` (update when matched, else insert)."""
        if self.format == NATIVE_FORMAT:
            from delta.tables import DeltaTable as SparkDeltaTable

            target = SparkDeltaTable.forPath(self.spark, self.path(table))
            (
                target.alias("t").merge(source.alias("s"), f"t.{key} = s.{key}")
                .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
            )
            return {}
        from streaming.lakehouse.deltars import arrow_schema_of_spark

        spec = TABLES_BY_NAME[table]
        rows = source.select(*spec.column_names).toArrow().cast(arrow_schema_of_spark(spec.schema))
        if rows.num_rows == 0:
            return {"num_target_rows_updated": 0, "num_target_rows_inserted": 0}
        from deltalake.exceptions import CommitFailedError

        for attempt in range(3):
            try:
                metrics = (
                    self.delta_table(table)
                    .merge(rows, predicate=f"t.{key} = s.{key}", source_alias="s", target_alias="t")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute()
                )
                return {k: v for k, v in metrics.items() if isinstance(v, int)}
            except CommitFailedError as error:
                # A compaction (xray maintain) committed while the merge ran: nothing was written, and the
                # merge is idempotent by key, so it runs again on the new version.
                if "concurrent" not in str(error) or attempt == 2:
                    raise
                log.info("table %s: a concurrent commit (maintenance) ended the merge; merging again", table)
        raise AssertionError("unreachable")  # pragma: no cover
