"""Failures of the storage under the lakehouse, said in one line: a full disk and a damaged Delta log.

Both reach us in many shapes: an ``OSError`` in the driver, a Python worker's error wrapped in a Py4J or
streaming-query exception (only its text survives), a delta-rs ``DeltaError`` whose message names neither
table nor file, or a ``JSONDecodeError`` from reading a commit ourselves. This module recognises them from
the exception's text and says what happened, where (table and file when the text or the caller knows),
and what to do. Nothing is lost either way: a batch whose commit did not happen is redone on the next run.
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

from streaming.core.errors import DamagedTableError, DiskFullError, XrayError, first_line

_DISK_FULL = re.compile(r"No space left on device|\[Errno 28\]|os error 28|errno 28", re.IGNORECASE)
# delta-rs (kernel) and Python's json module, reading a commit that is not JSON or is cut short.
_DAMAGED_LOG = re.compile(r"Json error|JSONDecodeError|Expecting value|Unterminated string|Invalid JSON in log",
                          re.IGNORECASE)
_TABLE_IN_PATH = re.compile(r"/tables/([A-Za-z0-9_]+)")
# Only lakehouse paths: a stack trace quotes other files (libraries) that would mislead.
_QUOTED_PATH = re.compile(r"'(/[^'\n]*/(?:tables|checkpoints)/[^'\n]+)'")


def disk_full(error: BaseException, table: str | None = None) -> DiskFullError | None:
    """A DiskFullError for an ENOSPC however it arrived (driver OSError, worker text), else None."""
    text = str(error)
    if not (isinstance(error, OSError) and error.errno == errno.ENOSPC) and not _DISK_FULL.search(text):
        return None
    filename = getattr(error, "filename", None) or next(iter(_QUOTED_PATH.findall(text)), None)
    table = table or next(iter(_TABLE_IN_PATH.findall(f"{filename or ''} {text}")), None)
    where = (f" while writing table {table}" if table else "") + (f" (file {filename})" if filename else "")
    return DiskFullError(
        f"the disk is full{where}: free space on the lakehouse's filesystem (and Spark's local/temp "
        "directory), then run the same command again; batches that were not committed are redone, nothing "
        "is lost"
    )


def damaged_commit(table_path: Path) -> tuple[Path, str] | None:
    """(commit file, what is wrong) for the first unreadable JSON commit the table's log still replays
    (those after its last checkpoint), else None."""
    log_dir = table_path / "_delta_log"
    after = -1
    try:
        after = int(json.loads((log_dir / "_last_checkpoint").read_text()).get("version", -1))
    except (OSError, ValueError, AttributeError):
        pass  # no checkpoint (or an unreadable pointer): check every commit
    try:
        commits = sorted((p for p in log_dir.glob("*.json") if p.stem.isdigit() and int(p.stem) > after),
                         key=lambda p: int(p.stem))
    except OSError:
        return None
    for commit in commits:
        reason = commit_problem(commit)
        if reason:
            return commit, reason
    return None


def commit_problem(commit: Path) -> str | None:
    """Why a Delta commit file cannot be read (empty, cut short, not JSON), or None when it reads."""
    try:
        lines = [line for line in commit.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        return f"unreadable ({error.__class__.__name__})"
    if not lines:
        return "empty"
    for number, line in enumerate(lines, start=1):
        try:
            action = json.loads(line)
        except ValueError:
            return f"line {number} is not JSON (truncated or overwritten)"
        if not isinstance(action, dict):
            return f"line {number} is not a Delta action"
    return None


def damaged_table_error(table: str, commit: Path, reason: str) -> DamagedTableError:
    return DamagedTableError(
        f"the Delta log of table {table} is damaged: {commit} is {reason}; restore that file from a backup "
        f"(or, if it is the newest commit and was cut short by a crash or a full disk, move it away and run "
        f"'xray recover'), then run the command again"
    )


def damaged_log(error: BaseException, table: str | None = None, table_path: Path | None = None
                ) -> DamagedTableError | None:
    """A DamagedTableError for an unreadable Delta log, naming table and file when they can be found."""
    text = f"{type(error).__name__}: {error}"
    if not _DAMAGED_LOG.search(text) and not isinstance(error, json.JSONDecodeError):
        return None
    if table_path is not None:
        found = damaged_commit(table_path)
        if found:
            return damaged_table_error(table or table_path.name, *found)
    name = table or next(iter(_TABLE_IN_PATH.findall(text)), None)
    return DamagedTableError(
        f"the Delta log of {'table ' + name if name else 'a table'} is damaged ({first_line(str(error))[:160]}); "
        "restore the damaged commit file under its _delta_log from a backup, then run the command again"
    )


def storage_error(error: BaseException, table: str | None = None, table_path: Path | None = None
                  ) -> XrayError | None:
    """The named error for a storage failure (full disk, damaged log), or None for anything else."""
    return disk_full(error, table) or damaged_log(error, table, table_path)


def check_table_logs(tables_dir: Path, names: list[str]) -> None:
    """Refuse to start on a table whose Delta log is damaged, naming table and commit file."""
    for name in names:
        found = damaged_commit(tables_dir / name)
        if found:
            raise damaged_table_error(name, *found)
