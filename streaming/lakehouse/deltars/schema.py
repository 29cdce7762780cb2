"""Spark and Arrow schemas of Delta tables: conversion both ways, and the check of an append's columns."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from pyspark.sql.types import StructType

from streaming.lakehouse.deltars.errors import SCHEMA_MISMATCH_MARKER, DeltaRsError

TIMESTAMP_ZONE = "UTC"


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


def delta_schema(arrow_schema: pa.Schema) -> Any:
    from deltalake import Schema

    return Schema.from_arrow(arrow_schema)
