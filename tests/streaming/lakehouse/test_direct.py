"""Spark-free writes of declared tables: the parsed schemas equal Spark's, rows append without a session."""

from __future__ import annotations

import datetime as dt

import pytest
from deltalake import DeltaTable
from support import table_rows

from streaming.lakehouse.catalog import ALL_TABLES, AUDIT_LOG
from streaming.lakehouse.direct import append_rows, parse_type, spec_schema, table_versions


def test_every_declared_schema_parses_as_spark_parses_it(spark):  # TableSpec.schema needs it
    for spec in ALL_TABLES:
        assert spec_schema(spec) == spec.schema, spec.name


@pytest.mark.parametrize("text", ["strin", "array<string", "map<string>", "struct<a string>", "int int"])
def test_an_unknown_type_string_is_refused(text):
    with pytest.raises(ValueError, match="unsupported type string"):
        parse_type(text)


def test_rows_append_without_spark_creating_the_table_once(config):
    config.root.mkdir(parents=True)
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    row = {"run_id": "r1", "event": "started", "event_time": when, "pid": 7,
           "tables": [{"table": "t", "version_before": None, "version_after": 3}]}
    assert table_versions(config, [AUDIT_LOG.name]) == {AUDIT_LOG.name: None}
    append_rows(config, AUDIT_LOG.name, [row])
    append_rows(config, AUDIT_LOG.name, [{**row, "run_id": "r2", "not_a_column": "ignored"}])
    assert table_versions(config, [AUDIT_LOG.name]) == {AUDIT_LOG.name: 2}  # created empty (0), two appends
    rows = sorted(table_rows(config, AUDIT_LOG.name), key=lambda r: r["run_id"])
    assert [r["run_id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["event_time"] == when and rows[0]["tables"] == row["tables"] and rows[0]["outcome"] is None
    table = DeltaTable(str(config.table_path(AUDIT_LOG.name)))
    assert table.metadata().name == AUDIT_LOG.name
    assert table.schema().fields[0].metadata == {"comment": AUDIT_LOG.columns[0][2]}
