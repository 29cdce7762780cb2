"""The errors of the deltars data source and the markers that carry them across the JVM."""

from __future__ import annotations

# Markers let the lakehouse layer turn an error raised in a Python worker (which reaches the driver wrapped
# in a JVM exception) back into a named error with a one-line message.
SCHEMA_MISMATCH_MARKER = "XRAY_SCHEMA_MISMATCH"
STREAM_CHANGE_MARKER = "XRAY_DELTA_STREAM_CHANGE"
UNSUPPORTED_MARKER = "XRAY_DELTA_UNSUPPORTED"


class DeltaRsError(Exception):
    """An error of this data source; its message starts with a marker the lakehouse layer recognises."""
