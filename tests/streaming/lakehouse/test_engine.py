"""The Lakehouse (streaming/lakehouse/engine.py): the engine it picks, table creation, writes, driver-side
reads; on both Delta engines, and a lakehouse switching between them."""

from __future__ import annotations

import pytest

from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.enginechoice import DELTA_RS_FORMAT, NATIVE_FORMAT

pytestmark = pytest.mark.engine_dependent


def test_the_engine_is_the_configured_one_and_commits_say_so(spark, config, delta_engine):
    from deltalake import DeltaTable

    house = Lakehouse(spark, config)
    assert house.format == {"delta-rs": DELTA_RS_FORMAT, "delta-spark": NATIVE_FORMAT}[delta_engine]
    assert house.engine_reason.startswith(f"delta_engine = {delta_engine}")
    house.ensure_tables()
    house.append_rows("silver_quarantine", [{"rule": "decodes", "reason": "r", "content_sha256": "s"}], txn=("t", 0))
    history = DeltaTable(house.path("silver_quarantine")).history()
    engine_info = [entry.get("engineInfo", "") for entry in history]
    if delta_engine == "delta-spark":
        assert all("Delta-Lake/" in info for info in engine_info), engine_info
        # auto: delta-rs in a session built here, even with the jars loaded (they came from our cache).
        auto = Lakehouse(spark, config.with_overrides(delta_engine="auto"))
        assert auto.format == DELTA_RS_FORMAT and "Spark session built here" in auto.engine_reason
        # Delta's CREATE keeps the declared comments, as delta-rs's does.
        fields = {f.name: f.metadata for f in DeltaTable(house.path("silver_quarantine")).schema().fields}
        assert fields["rule"].get("comment")
    else:
        assert all(info.startswith("delta-rs") for info in engine_info), engine_info


@pytest.mark.parametrize("first", ["delta-rs", "delta-spark"])
def test_a_batch_committed_by_one_engine_is_skipped_by_the_other(spark, config, first):
    """Both engines record a batch as Delta's txn action (app id, version): a replay on the other engine
    writes nothing again, and the next version is written by either."""
    import pyarrow as pa

    other = "delta-spark" if first == "delta-rs" else "delta-rs"
    one = Lakehouse(spark, config.with_overrides(delta_engine=first))
    two = Lakehouse(spark, config.with_overrides(delta_engine=other))
    one.ensure_tables()
    rows = [{"rule": "decodes", "reason": "r", "content_sha256": "a"}]
    one.append_rows("silver_quarantine", rows, txn=("bronze", 0))
    two.append_rows("silver_quarantine", rows, txn=("bronze", 0))  # the replay after a switch
    two.append_rows("silver_quarantine", [{**rows[0], "content_sha256": "c"}], txn=("bronze", 1))
    one.append_rows("silver_quarantine", [{**rows[0], "content_sha256": "c"}], txn=("bronze", 1))
    data = one.read_arrow("silver_quarantine", columns=["content_sha256"])
    assert sorted(data.column("content_sha256").to_pylist()) == ["a", "c"]
    assert one.txn_commit_version("silver_quarantine", ("bronze", 1)) == two.version("silver_quarantine")
    assert pa.table(one.delta_table("silver_quarantine").get_add_actions(flatten=True)).num_rows == 2


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


def test_a_table_stream_checkpoint_of_the_other_engine_is_refused_in_one_line(spark, config, delta_engine):
    """Separate silver/gold queries read a table as a stream; the two engines' sources write different
    offsets, so a switch is refused with the way out rather than failing inside Spark."""
    from streaming.core.errors import ConfigError

    house = Lakehouse(spark, config)
    house.ensure_tables()
    house.append_rows("silver_quarantine", [{"rule": "decodes", "reason": "r", "content_sha256": "a"}])
    checkpoint = config.checkpoint_path("silver")
    house.check_stream_checkpoint(checkpoint)  # none yet
    query = (house.read_stream("silver_quarantine").writeStream.format("noop")
             .option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start())
    query.awaitTermination(300)
    house.check_stream_checkpoint(checkpoint)  # its own: fine
    other = "delta-rs" if delta_engine == "delta-spark" else "delta-spark"
    with pytest.raises(ConfigError, match=f"written with delta_engine = {delta_engine}: run this query with"):
        Lakehouse(spark, config.with_overrides(delta_engine=other)).check_stream_checkpoint(checkpoint)


def test_maintenance_on_native_is_delta_lakes_own_optimize_and_vacuum(spark, config, delta_engine):
    """With the native engine `maintain_tables` compacts with Delta's OPTIMIZE and vacuums with VACUUM
    LITE (commits by Delta Lake), and the rows stay the same."""
    from deltalake import DeltaTable

    from streaming.lakehouse.maintenance import maintain_tables
    from streaming.lakehouse.tablepass import COMPACT_MIN_FILES

    house = Lakehouse(spark, config)
    house.ensure_tables()
    for version in range(COMPACT_MIN_FILES):
        house.append_rows("silver_quarantine", [{"rule": "decodes", "reason": "r", "content_sha256": str(version)}],
                          txn=("t", version))
    native = spark if house.format == NATIVE_FORMAT else None
    report = maintain_tables(config, tables=["silver_quarantine"], retention_hours=0, orphan_min_age_hours=0,
                             spark=native)
    (result,) = report.tables
    assert result.error is None and result.compacted == COMPACT_MIN_FILES
    assert result.vacuumed == COMPACT_MIN_FILES and result.files_after == 1
    table = DeltaTable(house.path("silver_quarantine"))
    assert sorted(table.to_pyarrow_table().column("content_sha256").to_pylist()) == [
        str(v) for v in range(COMPACT_MIN_FILES)]
    operations = {entry["operation"]: entry.get("engineInfo", "") for entry in table.history(limit=5)}
    assert "OPTIMIZE" in operations
    if delta_engine == "delta-spark":
        assert "Delta-Lake/" in operations["OPTIMIZE"]
