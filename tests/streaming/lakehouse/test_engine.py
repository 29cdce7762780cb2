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
