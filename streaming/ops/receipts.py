"""The RECEIVED section of `xray status`: associations, instances and studies `xray receive` took in over
the last day, from ``dicom_receipts`` (delta-rs, small columns; counts and keyed hashes only).

A study counts as received once ``study_idle_seconds`` passed without a new instance of it (modalities and
PACS send a study as a run of instances, with no end marker); until then it is still arriving.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from streaming.core.config import XrayConfig
from streaming.lakehouse.catalog import DICOM_RECEIPTS
from streaming.ops.text import iso_utc, short_time

__all__ = ["WINDOW", "receipts_lines", "receipts_status"]

WINDOW = dt.timedelta(hours=24)


def receipts_status(config: XrayConfig, now: dt.datetime) -> dict[str, Any] | None:
    """Counts of the last `WINDOW` of receipts; None when nothing was ever received."""
    from streaming.lakehouse.tables import read_arrow

    columns = ["receipt_time", "protocol", "association_id", "study_ref", "size_bytes", "outcome"]
    table = read_arrow(config, DICOM_RECEIPTS.name, columns=columns)
    every = [] if table is None else table.to_pylist()
    if not every:
        return None  # the stream creates the table empty: nothing was ever received
    rows = [r for r in every if r["receipt_time"] is not None and now - r["receipt_time"] <= WINDOW]
    instances = [r for r in rows if r["outcome"] != "refused"]
    last_of_study: dict[str, dt.datetime] = {}
    for row in instances:
        if row["study_ref"] and row["outcome"] != "failed":
            previous = last_of_study.get(row["study_ref"], row["receipt_time"])
            last_of_study[row["study_ref"]] = max(row["receipt_time"], previous)
    idle = dt.timedelta(seconds=config.study_idle_seconds)
    outcomes = {key: sum(r["outcome"] == key for r in instances)
                for key in ("stored", "duplicates", "versions", "failed")}
    return {
        "associations": len({r["association_id"] for r in instances if r["protocol"] == "c-store"}),
        "stow_requests": len({r["association_id"] for r in instances if r["protocol"] == "stow-rs"}),
        "refused": sum(r["outcome"] == "refused" for r in rows),
        **outcomes,
        "bytes_stored": sum(r["size_bytes"] or 0 for r in instances if r["outcome"] in ("stored", "versions")),
        "studies_received": sum(now - last >= idle for last in last_of_study.values()),
        "studies_arriving": sum(now - last < idle for last in last_of_study.values()),
        "last_time": iso_utc(max((r["receipt_time"] for r in rows), default=None)),
    }


def receipts_lines(status: dict) -> list[str]:
    """The RECEIVED section of the status screen (nothing when the lakehouse never received over DICOM)."""
    received = status.get("received")
    if received is None:
        return []
    return [
        f"RECEIVED  last 24 h (xray receive): {received['associations']} association(s), "
        f"{received['stow_requests']} STOW-RS request(s), {received['refused']} refused; last at "
        f"{short_time(received['last_time']) if received['last_time'] else '-'} UTC",
        f"  instances: {received['stored']} stored, {received['duplicates']} already held, {received['versions']} "
        f"new version(s), {received['failed']} failed; {received['bytes_stored'] / 1e6:.1f} MB",
        f"  studies: {received['studies_received']} received, {received['studies_arriving']} still arriving "
        f"(received: no new instance for {status.get('study_idle_seconds', 0):.0f} s)",
    ]
