"""The Lakehouse (streaming/lakehouse/engine.py): driver-side reads."""

from __future__ import annotations


import datetime as dt

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from imagefiles import bad_inputs, jpeg_bytes, write, xray_like

from streaming.core.errors import DataQualityFailure
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.events import BatchEvent
from streaming.pipeline.plan import plan_queries
from streaming.pipeline.service import run_stream
from streaming.quality.arrow import split_flagged
from streaming.quality.expectations import Expectation
from streaming.quality.spark import apply_expectations, flag_expectations
from streaming.silver.batch import write_silver
from streaming.silver.expectations import silver_expectations
from streaming.silver.transform import first_copies, to_metadata_rows


def test_read_arrow_filters_do_not_lose_rows_of_long_strings(spark, config):
    """delta-rs 1.6 prunes files on a column without min/max statistics as if nothing matched."""
    house = Lakehouse(spark, config)
    long_reason = "corrupt or truncated JPEG: " + "deep " * 80  # longer than any min/max kept
    house.append_rows("silver_quarantine", [{"rule": "decodes", "reason": long_reason, "content_sha256": "s"}])
    found = house.read_arrow("silver_quarantine", columns=["rule"], filters=[("reason", "in", [long_reason])])
    assert found.column("rule").to_pylist() == ["decodes"]
    assert house.read_arrow("silver_quarantine", filters=[("reason", "=", "other")]).num_rows == 0
