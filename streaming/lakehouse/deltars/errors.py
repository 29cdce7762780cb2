"""The errors of the deltars data source, in the one form that carries a named error across the JVM."""

from __future__ import annotations

from streaming.core.errors import DeltaStreamChangeError, SchemaMismatchError, XrayError

# A DeltaRsError's message starts with one of these (`streaming.core.errors.transported`), so the lakehouse
# layer raises the named error again on the driver with a one-line message.
SCHEMA_MISMATCH_MARKER = f"XRAY_ERROR[{SchemaMismatchError.__name__}]"
STREAM_CHANGE_MARKER = f"XRAY_ERROR[{DeltaStreamChangeError.__name__}]"
UNSUPPORTED_MARKER = f"XRAY_ERROR[{XrayError.__name__}]"


class DeltaRsError(Exception):
    """An error of this data source; its message starts with a marker the lakehouse layer recognises."""
