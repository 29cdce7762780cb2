"""Opening a Delta table through delta-rs, refusing the table features this data source cannot handle."""

from __future__ import annotations

from typing import Any

from streaming.lakehouse.deltars.errors import UNSUPPORTED_MARKER, DeltaRsError


def open_table(path: str, version: int | None = None) -> Any:
    """The delta-rs table at ``path`` (at ``version`` when given); None when there is no Delta table there."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(path):
        return None
    table = DeltaTable(path, version=version) if version is not None else DeltaTable(path)
    _check_supported(table, path)
    return table


def _check_supported(table: Any, path: str) -> None:
    protocol = table.protocol()
    features = set(protocol.reader_features or [])
    unsupported = features & {"deletionVectors", "columnMapping", "v2Checkpoint"}
    if unsupported:
        raise DeltaRsError(
            f"{UNSUPPORTED_MARKER}: table {path} uses {', '.join(sorted(unsupported))}; "
            "read it with the native Delta engine (delta_engine = delta-spark)"
        )
