"""The log line of a pipeline event: a batch by its id, the catch-up scoring (batch id -1) by name."""

from __future__ import annotations

import logging

from streaming.lakehouse.events import BatchEvent, record_events


class RecordingLakehouse:
    def __init__(self):
        self.rows = []

    def append_rows(self, name, rows, txn=None):  # the engine's signature
        self.rows += rows


def test_catch_up_scoring_is_named_not_numbered(caplog):
    house = RecordingLakehouse()
    caplog.set_level(logging.INFO, logger="streaming.lakehouse.events")
    record_events(house, [BatchEvent("gold", 3, input_rows=2, output_rows=2), BatchEvent("gold", -1)], None)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("gold batch 3: in=2 out=2")
    assert lines[1].startswith("gold catch-up: in=0")
    assert "-1" not in lines[1]
    assert [row["batch_id"] for row in house.rows] == [3, -1]  # the table keeps the id


def test_an_older_pipeline_events_gains_the_drift_columns_when_written(config):
    """A lakehouse of a version before drift: the first row written without Spark (a maintenance pass of
    `xray maintain`) adds the columns; older rows read them as null."""
    import json

    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from streaming.lakehouse.catalog import PIPELINE_EVENTS
    from streaming.lakehouse.deltars import arrow_schema_of_spark
    from streaming.lakehouse.direct import append_rows, spec_schema

    new = ("drift_psi", "predicted_prevalence", "drift")
    full = arrow_schema_of_spark(spec_schema(PIPELINE_EVENTS))
    path = str(config.table_path(PIPELINE_EVENTS.name))
    write_deltalake(path, pa.Table.from_pylist([{"query": "bronze", "batch_id": 0}],
                                               schema=pa.schema([f for f in full if f.name not in new])))
    event = BatchEvent("gold", 1, input_rows=3, drift_psi=0.4, predicted_prevalence=0.5,
                       drift={"psi": {"mean_intensity": 0.4}})
    append_rows(config, PIPELINE_EVENTS.name, [event.as_row()])
    table = DeltaTable(path).to_pyarrow_table()
    assert table.schema.names == full.names
    old, gold = sorted(table.to_pylist(), key=lambda r: r["batch_id"])
    assert (old["drift_psi"], old["predicted_prevalence"], old["drift"]) == (None, None, None)
    assert (gold["drift_psi"], gold["predicted_prevalence"]) == (0.4, 0.5)
    assert json.loads(gold["drift"]) == {"psi": {"mean_intensity": 0.4}}
