"""What landing still holds for bronze, as ``xray status`` and the stream's alert monitor see it from
outside a micro-batch: the newest modification time bronze ingested, and the landing files after it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from streaming.lakehouse.catalog import BRONZE_IMAGES
from streaming.landing.backlog import Backlog, backlog_scan

if TYPE_CHECKING:
    from streaming.lakehouse.engine import Lakehouse

__all__ = ["newest_ingested_time", "waiting_after"]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


def newest_ingested_time(lakehouse: Lakehouse) -> dt.datetime | None:
    """Modification time of the newest landing file bronze ingested (None: no bronze yet).

    Taken from the file statistics in the Delta log when every file has them (no data read), else from
    the one ``modification_time`` column (delta-rs writes no timestamp statistics).
    """
    if not lakehouse.exists(BRONZE_IMAGES.name):
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    table = lakehouse.delta_table(BRONZE_IMAGES.name)
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return None
    stat = "max.modification_time"
    if stat in actions.column_names and actions.column(stat).null_count == 0:
        return _utc(pc.max(actions.column(stat)).as_py())
    column = table.to_pyarrow_table(columns=["modification_time"]).column("modification_time")
    return _utc(pc.max(column).as_py())


def waiting_after(landing: Path, newest: dt.datetime | None) -> Backlog:
    """Landing files modified after ``newest``. Spark lists modification times in whole milliseconds while
    the filesystem keeps finer ones, so the threshold is the end of that millisecond: the newest ingested
    file itself is not waiting."""
    return backlog_scan(landing, newest + dt.timedelta(microseconds=999) if newest is not None else None)
