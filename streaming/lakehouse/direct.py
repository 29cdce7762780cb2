"""Writing declared tables with delta-rs straight from the driver, without a SparkSession.

`Lakehouse` writes its small driver-side results through here (`commit_arrow`, `create_table`); commands
that may never start Spark (the audit trail of `xray recover`, `xray forget`) append rows with
`append_rows`, and `xray feedback` upserts by key with `merge_rows`. A `TableSpec`'s Spark schema is parsed by Spark itself (`TableSpec.schema` needs a running
session), so `spec_schema` parses the catalogue's type strings here: pyspark's type classes are plain
Python, no JVM. The result equals `TableSpec.schema` (a test compares every table), so a table created
here and one created by Spark are the same table.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streaming.core.config import XrayConfig
from streaming.lakehouse.catalog import TABLES_BY_NAME, TableSpec

__all__ = ["append_rows", "arrow_rows", "commit_arrow", "create_table", "merge_rows", "parse_type", "spec_schema",
           "table_versions"]

_PRIMITIVES: dict[str, DataType] = {
    "string": StringType(), "bigint": LongType(), "int": IntegerType(), "double": DoubleType(),
    "float": FloatType(), "boolean": BooleanType(), "binary": BinaryType(), "timestamp": TimestampType(),
    "date": DateType(),
}
_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[<>,:])")


def parse_type(text: str) -> DataType:
    """The Spark type of a catalogue type string (``bigint``, ``array<struct<a:string,b:bigint>>``, ...)."""
    tokens = [m.group(1) for m in _TOKEN.finditer(text)]
    if "".join(tokens) != re.sub(r"\s+", "", text):
        raise ValueError(f"unsupported type string {text!r}")
    data_type, end = _parse(tokens, 0, text)
    if end != len(tokens):
        raise ValueError(f"unsupported type string {text!r}")
    return data_type


def _expect(tokens: list[str], at: int, token: str, text: str) -> int:
    if at >= len(tokens) or tokens[at] != token:
        raise ValueError(f"unsupported type string {text!r}: expected {token!r}")
    return at + 1


def _parse(tokens: list[str], at: int, text: str) -> tuple[DataType, int]:
    """Recursive descent over the tokens from ``at``: (type, index after it). Nullable everywhere, as Spark's
    DDL parser makes them."""
    name = tokens[at].lower() if at < len(tokens) else ""
    if name in _PRIMITIVES:
        return _PRIMITIVES[name], at + 1
    if name == "array":
        element, at = _parse(tokens, _expect(tokens, at + 1, "<", text), text)
        return ArrayType(element, True), _expect(tokens, at, ">", text)
    if name == "map":
        key, at = _parse(tokens, _expect(tokens, at + 1, "<", text), text)
        value, at = _parse(tokens, _expect(tokens, at, ",", text), text)
        return MapType(key, value, True), _expect(tokens, at, ">", text)
    if name == "struct":
        fields: list[StructField] = []
        at = _expect(tokens, at + 1, "<", text)
        while True:
            field_name = tokens[at]
            field_type, at = _parse(tokens, _expect(tokens, at + 1, ":", text), text)
            fields.append(StructField(field_name, field_type, True))
            if tokens[at] == ">":
                return StructType(fields), at + 1
            at = _expect(tokens, at, ",", text)
    raise ValueError(f"unsupported type string {text!r}")


def spec_schema(spec: TableSpec) -> StructType:
    """`TableSpec.schema` without a SparkSession: column comments in the metadata, every column nullable."""
    return StructType([StructField(name, parse_type(sql_type), True, {"comment": comment})
                       for name, sql_type, comment in spec.columns])


def arrow_rows(schema: StructType, rows: Iterable[dict[str, Any]]) -> Any:
    """An Arrow table of row dicts in the table's column order (a missing key is null)."""
    import pyarrow as pa

    from streaming.lakehouse.deltars import arrow_schema_of_spark

    arrow_schema = arrow_schema_of_spark(schema)
    return pa.Table.from_pylist([{k: row.get(k) for k in arrow_schema.names} for row in rows], schema=arrow_schema)


def create_table(path: str, spec: TableSpec, schema: StructType | None = None) -> None:
    """Create a declared table, empty, with its schema, comments and description, unless one exists."""
    from deltalake import DeltaTable

    from streaming.lakehouse.deltars import arrow_schema_of_spark

    if DeltaTable.is_deltatable(path):
        return
    try:
        DeltaTable.create(path, arrow_schema_of_spark(schema or spec_schema(spec)), mode="ignore",
                          name=spec.name, description=spec.description)
    except Exception:
        if not DeltaTable.is_deltatable(path):  # not a concurrent creator winning: a real failure
            raise


def commit_arrow(path: str, schema: StructType, data: Any, mode: str = "append",
                 txn: tuple[str, int] | None = None, merge_schema: bool = False) -> None:
    """Write an Arrow table as Parquet files of the Delta table at ``path`` and commit them in one
    transaction (``mode`` append or overwrite). ``txn`` (application id, version) makes it idempotent;
    ``merge_schema`` adds the columns of ``schema`` the table lacks."""
    from streaming.lakehouse.deltars import (
        ParquetFileWriter,
        arrow_schema_of_spark,
        commit_files,
        remove_orphans,
        txn_file_prefix,
    )

    arrow_schema = arrow_schema_of_spark(schema)
    app, version = txn if txn else (None, None)
    if txn:  # files of a killed attempt of this transaction go before it is redone
        remove_orphans(path, txn[0], txn[1])
    writer = ParquetFileWriter(path, arrow_schema, {}, prefix=txn_file_prefix(app, version))
    try:
        for batch in data.select(arrow_schema.names).cast(arrow_schema).to_batches():
            writer.write(batch)
        message = writer.finish()
    except BaseException:
        writer.discard()
        raise
    commit_files(path, schema, [message], mode, app, version, merge_schema=merge_schema)


def append_rows(config: XrayConfig, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """Append a few rows to a declared table with delta-rs, creating the table when missing, and adding
    the declared columns a table of an older version lacks (e.g. ``pipeline_events.drift_psi`` when
    ``xray maintain`` records a pass before any stream upgraded the table): no Spark.

    Errors are the library's (an ``OSError`` on a full disk, a ``DeltaError``); the caller decides how to
    say them (`streaming.lakehouse.failures.storage_error` names the common ones).
    """
    if not rows:
        return
    spec = TABLES_BY_NAME[table]
    schema = spec_schema(spec)
    path = str(config.table_path(table))
    create_table(path, spec, schema)
    commit_arrow(path, schema, arrow_rows(schema, rows), merge_schema=True)


MERGE_ATTEMPTS = 3


def merge_rows(config: XrayConfig, table: str, rows: Sequence[dict[str, Any]], key: str,
               changed: str) -> dict[str, int]:
    """Upsert rows into a declared table by ``key`` with delta-rs, creating the table when missing: a row
    whose key is new is inserted, one whose key is there replaces it when its ``changed`` column differs,
    anything else changes nothing (no commit at all when nothing changed). Keys must be unique in ``rows``.

    Returns delta-rs's counts (``num_target_rows_inserted``, ``num_target_rows_updated``, ...). A commit by
    someone else during the merge (a compaction, an erasure) ends it without writing: it runs again on the
    new version, which is safe since the merge is idempotent by key.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError

    spec = TABLES_BY_NAME[table]
    schema = spec_schema(spec)
    path = str(config.table_path(table))
    create_table(path, spec, schema)
    source = arrow_rows(schema, rows)
    for attempt in range(MERGE_ATTEMPTS):
        try:
            metrics = (DeltaTable(path).merge(source, predicate=f"t.{key} = s.{key}", source_alias="s",
                                              target_alias="t")
                       .when_matched_update_all(predicate=f"t.{changed} <> s.{changed}")
                       .when_not_matched_insert_all()
                       .execute())
            return {name: value for name, value in metrics.items() if isinstance(value, int)}
        except CommitFailedError as error:
            if "concurrent" not in str(error).lower() or attempt == MERGE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def table_versions(config: XrayConfig, names: Iterable[str]) -> dict[str, int | None]:
    """The current Delta version of each named table (None: missing or unreadable), from the log only."""
    from deltalake import DeltaTable

    versions: dict[str, int | None] = {}
    for name in names:
        path = config.table_path(name)
        versions[name] = None
        if (path / "_delta_log").is_dir():
            with contextlib.suppress(Exception):  # a damaged log: the command itself will say so
                versions[name] = DeltaTable(str(path), without_files=True).version()
    return versions
