"""The Lakehouse (streaming/lakehouse/engine.py): driver-side reads."""

from __future__ import annotations

from streaming.lakehouse.engine import Lakehouse


def test_read_arrow_filters_do_not_lose_rows_of_long_strings(spark, config):
    """delta-rs 1.6 prunes files on a column without min/max statistics as if nothing matched."""
    house = Lakehouse(spark, config)
    long_reason = "corrupt or truncated JPEG: " + "deep " * 80  # longer than any min/max kept
    house.append_rows("silver_quarantine", [{"rule": "decodes", "reason": long_reason, "content_sha256": "s"}])
    found = house.read_arrow("silver_quarantine", columns=["rule"], filters=[("reason", "in", [long_reason])])
    assert found.column("rule").to_pylist() == ["decodes"]
    assert house.read_arrow("silver_quarantine", filters=[("reason", "=", "other")]).num_rows == 0


def test_a_table_of_an_older_version_gains_the_new_columns_and_keeps_its_rows(spark, config, caplog):
    """Upgrading over a lakehouse whose silver predates the DICOM columns: they are added (null for old
    rows), one INFO line says so; a table with a column this version does not declare is still refused."""
    import logging

    import pyarrow as pa
    import pytest
    from deltalake import DeltaTable, write_deltalake

    from streaming.core.errors import SchemaMismatchError
    from streaming.lakehouse.catalog import DICOM_COLUMNS, SILVER_METADATA
    from streaming.lakehouse.deltars import arrow_schema_of_spark

    new = {name for name, _, _ in DICOM_COLUMNS}
    full = arrow_schema_of_spark(SILVER_METADATA.schema)
    old = pa.schema([f for f in full if f.name not in new])
    path = str(config.table_path(SILVER_METADATA.name))
    write_deltalake(path, pa.Table.from_pylist([{"image_id": "old", "label": 0}], schema=old))
    caplog.set_level(logging.INFO, logger="streaming.lakehouse.engine")
    Lakehouse(spark, config).ensure_tables()
    table = DeltaTable(path).to_pyarrow_table()
    assert set(table.schema.names) == set(full.names)
    assert table.to_pylist()[0]["image_id"] == "old" and table.to_pylist()[0]["modality"] is None
    assert any("added the columns" in r.getMessage() and "study_ref" in r.getMessage() for r in caplog.records)

    write_deltalake(path, pa.Table.from_pylist([], schema=pa.schema([*full, pa.field("retired", pa.string())])),
                    mode="overwrite", schema_mode="overwrite")
    with pytest.raises(SchemaMismatchError, match="not declared: retired"):
        Lakehouse(spark, config).ensure_tables()
