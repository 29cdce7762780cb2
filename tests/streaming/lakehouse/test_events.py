"""The log line of a pipeline event: a batch by its id, the catch-up scoring (batch id -1) by name."""

from __future__ import annotations

import logging

from streaming.lakehouse.events import BatchEvent, record_events


class RecordingLakehouse:
    def __init__(self):
        self.rows = []

    def append_rows(self, name, rows, txn=None):  # noqa: ARG002 - the engine's signature
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
