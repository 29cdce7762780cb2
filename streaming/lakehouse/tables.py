"""The one door to Delta storage from the driver: a table opened by name, with one rule for "it exists".

Code outside ``streaming.lakehouse`` never imports ``deltalake`` (an import-linter contract in setup.cfg):
the commands and jobs that read or change a table without a SparkSession (`xray status`, `sql`, `forget`,
`feedback`, the preflight checks, the retrain schedule, the consistency check at start) open it here, so the
existence rule, the path of a table and the delta-rs version are known in one place. `engine.Lakehouse`
uses the same rule.

A table *exists* when delta-rs finds a Delta log at its path (``DeltaTable.is_deltatable``): a folder with
an empty or half-written ``_delta_log`` is not a table yet. ``deltalake`` is imported when a function runs,
never at import time, so ``xray --help`` and the preflight checks stay light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming.core.config import XrayConfig

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

# Also ``CommitFailedError``, served by the module's __getattr__ (so deltalake loads only when it is asked for).
__all__ = ["count_rows", "open_table", "read_arrow", "remove_stale_checksums", "table_exists", "table_path"]


def __getattr__(name: str) -> Any:
    """``CommitFailedError`` (delta-rs's "a concurrent commit won", worth trying again), imported when asked
    for: ``from streaming.lakehouse.tables import CommitFailedError`` inside the function that catches it."""
    if name == "CommitFailedError":
        from deltalake.exceptions import CommitFailedError

        return CommitFailedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def table_path(where: XrayConfig | Path | str, name: str | None = None) -> Path:
    """The folder of table ``name`` in the lakehouse of ``where`` (a config); with ``name`` None, ``where``
    is already a table's folder (a path a caller holds, e.g. the events table of a checkpoint check)."""
    if name is None:
        if isinstance(where, XrayConfig):
            raise TypeError("table_path(config) needs the table's name")
        return Path(where)
    if isinstance(where, XrayConfig):
        return where.table_path(name)
    return Path(where) / "tables" / name


def table_exists(where: XrayConfig | Path | str, name: str | None = None) -> bool:
    """Whether the table has a Delta log delta-rs can find (the one existence rule)."""
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(str(table_path(where, name)))


def open_table(where: XrayConfig | Path | str, name: str | None = None) -> DeltaTable | None:
    """The table's delta-rs handle at its current version; None when it does not exist. A table whose log
    delta-rs cannot read raises (its caller names the failure, see `failures.storage_error`)."""
    from deltalake import DeltaTable

    path = str(table_path(where, name))
    return DeltaTable(path) if DeltaTable.is_deltatable(path) else None


def read_arrow(where: XrayConfig | Path | str, name: str | None = None,
               columns: Sequence[str] | None = None) -> pa.Table | None:
    """The table's rows (only ``columns``) as Arrow; None when it does not exist. No filter is pushed down:
    delta-rs 1.6 prunes files wrongly on string columns without min/max statistics, so callers filter the
    result."""
    table = open_table(where, name)
    return None if table is None else table.to_pyarrow_table(columns=None if columns is None else list(columns))


def count_rows(where: XrayConfig | Path | str, name: str | None = None, predicate: Any = None) -> int:
    """Rows of the table (0 when it does not exist), from the log's statistics when no ``predicate`` (a
    ``pyarrow.dataset`` expression on non-string columns, or ``is_valid``) is given."""
    table = open_table(where, name)
    if table is None:
        return 0
    dataset = table.to_pyarrow_dataset()
    return dataset.count_rows() if predicate is None else dataset.count_rows(filter=predicate)


def remove_stale_checksums(where: XrayConfig | Path | str, name: str | None = None) -> list[str]:
    """Delete the checksum files of commits that are gone, and return their names.

    Delta Lake writes ``N.crc`` beside commit ``N.json``, and Hadoop's local file system hidden ``.N.json.crc``
    and ``.N.crc.crc``. When a commit's JSON is lost (a damaged disk, a partial restore) they stay, and both
    engines then refuse the table: delta-rs cannot open it ("CRC file version N is newer than log segment"),
    Delta Lake's next commit N fails its checksum. A checksum of a commit that does not exist checks nothing.
    """
    log = table_path(where, name) / "_delta_log"
    if not log.is_dir():
        return []
    names = os.listdir(log)
    commits = [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]
    newest = max(commits, default=-1)
    removed = []
    for entry in sorted(names):
        stem = entry.lstrip(".").split(".", 1)[0]
        if entry.endswith(".crc") and stem.isdigit() and int(stem) > newest:
            (log / entry).unlink(missing_ok=True)
            removed.append(entry)
    return removed
