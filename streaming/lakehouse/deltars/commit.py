"""Committing the files of one write on the driver: one Delta transaction, idempotent per application
transaction, creating the table or adding new columns when needed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pyspark.sql.types import StructType

from streaming.lakehouse.deltars.files import DeltaRsCommitMessage, remove_files
from streaming.lakehouse.deltars.schema import (
    arrow_schema_of_spark,
    check_append_schema,
    delta_schema,
    spark_schema_of,
)
from streaming.lakehouse.deltars.table import open_table
from streaming.lakehouse.deltars.txn import txn_metadata


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
    from deltalake.transaction import AddAction, create_table_with_add_actions

    files = [f for message in messages if message is not None for f in message.files]
    actions = [
        AddAction(f.path, f.size, {}, f.modification_time, True, f.stats) for f in files
    ]
    properties = _commit_properties(app_id, app_version, operation_metadata)
    for attempt in range(5):
        table = open_table(table_path)
        if table is not None and app_id is not None and app_version is not None:
            committed = table.transaction_version(app_id)
            if committed is not None and committed >= app_version:
                remove_files(table_path, files)
                return False
        if table is None:
            schema = arrow_schema_of_spark(incoming_schema)
            try:
                create_table_with_add_actions(
                    table_path, delta_schema(schema), actions, mode="error", commit_properties=properties
                )
                return True
            except Exception as error:  # another writer created it first: append instead
                if "exist" not in str(error).lower() or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
                continue
        _write_transaction(table, table_path, incoming_schema, merge_schema, actions, mode, properties)
        return True
    raise AssertionError("unreachable")  # pragma: no cover


def _commit_properties(app_id: str | None, app_version: int | None,
                       operation_metadata: dict[str, Any] | None) -> Any:
    """The caller's commit metadata and the application transaction, which the commit also names in its
    metadata (for `txn_commit_version`)."""
    from deltalake import CommitProperties
    from deltalake.transaction import Transaction

    if app_id is None or app_version is None:
        return CommitProperties(custom_metadata=operation_metadata or None)
    return CommitProperties(app_transactions=[Transaction(app_id, app_version)],
                            custom_metadata={**(operation_metadata or {}), **txn_metadata(app_id, app_version)})


def _write_transaction(table: Any, table_path: str, incoming_schema: StructType, merge_schema: bool,
                       actions: list[Any], mode: str, properties: Any) -> None:
    """Commit add actions to an existing table, adding the incoming new columns first when allowed."""
    table_schema = spark_schema_of(table)
    commit_schema = check_append_schema(table_path, table_schema, incoming_schema, merge_schema)
    if len(commit_schema.fields) > len(table_schema.fields):
        # delta-rs keeps the table schema on a write transaction, so new columns are added first (a
        # separate metadata commit: readers see the new nullable columns a moment before the rows).
        added = delta_schema(arrow_schema_of_spark(StructType(commit_schema.fields[len(table_schema.fields):])))
        table.alter.add_columns(list(added.fields))
        table = open_table(table_path)
    table.create_write_transaction(
        actions,
        mode,
        delta_schema(arrow_schema_of_spark(commit_schema)),
        commit_properties=properties,
    )
