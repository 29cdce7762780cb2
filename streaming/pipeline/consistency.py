"""Checkpoint and tables agree, or the service says so; ``xray recover`` rewinds a checkpoint that is ahead.

Every micro-batch of a streaming query writes its tables with the Delta application transaction (query,
batch id) and ends with one ``pipeline_events`` commit carrying (``<query>:events``, batch id), also for an
empty batch (a commit without rows, see `mark_empty_batch`). Spark then records the batch in the query's
checkpoint (``commits/<N>``). So at start, for the last committed batch N of each query:

- ``pipeline_events`` must hold the query's events transaction at N or later, and
- every table the events rows say a batch wrote (bronze output_rows > 0 → bronze; silver output_rows > 0 →
  silver metadata and features; quarantined_rows > 0 → quarantine; gold output_rows > 0 → predictions)
  must hold the query's transaction at that batch or later.

A table behind (its newest commit lost, or the table gone) would otherwise be a silent gap: the checkpoint
never replays a committed batch. Recovery rewinds the checkpoint to the last batch every table holds; the
replayed batches are skipped by each table that holds them (idempotent transactions) and written again by
the one that lost them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from streaming.core.checkpoints import batch_ids, newest_batch
from streaming.core.config import XrayConfig
from streaming.core.errors import CheckpointAheadError, CheckpointDamagedError
from streaming.core.names import LAYERS
from streaming.lakehouse.catalog import (
    ALL_TABLES,
    BRONZE_IMAGES,
    GOLD_PREDICTIONS,
    PIPELINE_EVENTS,
    SILVER_FEATURES,
    SILVER_METADATA,
    SILVER_QUARANTINE,
)
from streaming.lakehouse.tables import open_table, remove_stale_checksums

log = logging.getLogger(__name__)

QUERIES = LAYERS
# The events commits of the newest batches are read to know which tables they wrote; older batches are
# only checked through the tables' newest transaction (a bound on the start-up cost of a long-lived log).
MAX_EVENT_COMMITS = 500


@dataclass
class Lag:
    """A table behind a query's checkpoint: it holds ``held`` (None: nothing, or no table) of ``needed``."""

    query: str
    table: str
    held: int | None
    needed: int
    missing: bool = False


def events_apps(query: str) -> tuple[str, ...]:
    """The events transactions a query's batches write: its own first, then gold's inside silver's."""
    return (f"{query}:events", f"{query}/gold:events") if query == "silver" else (f"{query}:events",)


def tables_written(row: dict) -> list[str]:
    """The tables an events row says its batch wrote."""
    query, out, quarantined = row.get("query"), row.get("output_rows") or 0, row.get("quarantined_rows") or 0
    if query == "bronze":
        return [BRONZE_IMAGES.name] if out else []
    if query == "silver":
        return ([SILVER_METADATA.name, SILVER_FEATURES.name] if out else []) + (
            [SILVER_QUARANTINE.name] if quarantined else [])
    if query == "gold":
        return [GOLD_PREDICTIONS.name] if out else []
    return []


def last_committed_batch(checkpoint: Path) -> int | None:
    """The highest batch id in a checkpoint's ``commits`` folder (None: none committed)."""
    return newest_batch(checkpoint / "commits")


def _held(path: Path, app: str) -> tuple[int | None, bool]:
    """(transaction version the table holds for ``app``, whether the table is missing)."""
    table = open_table(path)
    if table is None:
        return None, True
    return table.transaction_version(app), False


def newest_batch_per_table(events_path: Path, apps: tuple[str, ...], last: int) -> dict[str, int]:
    """For each table, the newest batch (≤ ``last``) whose events say it wrote the table, from the JSON
    commits of ``pipeline_events`` carrying one of ``apps`` (newest first, at most MAX_EVENT_COMMITS)."""
    log_dir = events_path / "_delta_log"
    names = sorted((n for n in os.listdir(log_dir) if n.endswith(".json") and n[:-5].isdigit()), reverse=True)
    found: dict[str, int] = {}
    snapshot = _SnapshotRows(events_path)
    for name in names[:MAX_EVENT_COMMITS]:
        with open(log_dir / name) as handle:
            actions = [json.loads(line) for line in handle if line.strip()]
        txns = [a["txn"] for a in actions if "txn" in a and a["txn"].get("appId") in apps]
        if not txns or txns[0].get("version", last + 1) > last:
            continue
        batch = int(txns[0]["version"])
        for row in _commit_rows(events_path, actions, txns[0]["appId"], batch, snapshot):
            for table in tables_written(row):
                found.setdefault(table, batch)
        if len(found) == 5:
            break
    return found


_EVENT_COLUMNS = ["query", "batch_id", "output_rows", "quarantined_rows"]


class _SnapshotRows:
    """The current rows of ``pipeline_events`` (a few columns), read once when first needed."""

    def __init__(self, events_path: Path):
        self.events_path = events_path
        self._rows: list[dict] | None = None

    def rows(self) -> list[dict]:
        if self._rows is None:
            table = open_table(self.events_path)
            self._rows = [] if table is None else table.to_pyarrow_table(columns=_EVENT_COLUMNS).to_pylist()
        return self._rows


def _commit_rows(events_path: Path, actions: list[dict], app: str, batch: int, snapshot: _SnapshotRows
                 ) -> list[dict]:
    """The events rows one commit added. Its files may be gone: `xray maintain` compacted them into larger
    files and vacuumed them after the retention period. Their rows are then found in the current snapshot
    by batch id and the queries the transaction writes for, when exactly as many rows match as the commit
    added; otherwise (another writer's rows with the same batch id) the commit is not used."""
    adds = [a["add"] for a in actions if "add" in a]
    rows: list[dict] = []
    for add in adds:
        try:
            rows += pq.read_table(events_path / add["path"], columns=_EVENT_COLUMNS).to_pylist()
        except FileNotFoundError:
            break
    else:
        return rows
    expected = sum(json.loads(add.get("stats") or "{}").get("numRecords", -1) for add in adds)
    writer = app.removesuffix(":events").split("/")[-1]
    queries = set(QUERIES) if writer == QUERIES[0] else {writer}  # bronze's batch writes every layer's row
    matching = [r for r in snapshot.rows() if r["batch_id"] == batch and r["query"] in queries]
    return matching if len(matching) == expected else []


def query_lags(config: XrayConfig, query: str) -> tuple[int | None, list[Lag]]:
    """(last committed batch, tables behind it) for one query; no checkpoint: (None, [])."""
    last = last_committed_batch(config.checkpoint_path(query))
    if last is None:
        return None, []
    events_path = config.table_path(PIPELINE_EVENTS.name)
    held, missing = _held(events_path, events_apps(query)[0])
    if missing:
        return last, [Lag(query, PIPELINE_EVENTS.name, None, last, missing=True)]
    lags = [Lag(query, PIPELINE_EVENTS.name, held, last)] if held is None or held < last else []
    for table, needed in sorted(newest_batch_per_table(events_path, events_apps(query), last).items()):
        version, gone = _held(config.table_path(table), query)
        if gone or version is None or version < needed:
            lags.append(Lag(query, table, version, needed, missing=gone))
    return last, lags


def _holds(lag: Lag) -> str:
    if lag.missing:
        return "is missing"
    return f"holds batch {lag.held}" if lag.held is not None else "holds no batch"


def commits_without_offsets(checkpoint: Path) -> list[int]:
    """Committed batches newer than the newest ``offsets/N``: that file was lost (deleted, a restore that
    missed it). Spark would then fail every start with CONCURRENT_STREAM_LOG_UPDATE; `recover` drops these
    commits so the batch is planned again (the landing log gives it the same files, the tables skip what
    they hold)."""
    newest_offset = newest_batch(checkpoint / "offsets")
    return sorted(k for k in batch_ids(checkpoint / "commits") if newest_offset is None or k > newest_offset)


def mend_stale_checksums(config: XrayConfig) -> list[str]:
    """Remove the checksum files a lost commit left (`tables.remove_stale_checksums`), one warning per table:
    then the check below names the lost commit, rather than a Delta engine failing to read the table."""
    removed = []
    for spec in ALL_TABLES:
        names = remove_stale_checksums(config, spec.name)
        if names:
            log.warning("table %s: removed %s, checksum(s) of a commit that is gone", spec.name, ", ".join(names))
            removed += [f"{spec.name}/_delta_log/{n}" for n in names]
    return removed


def check_checkpoints(config: XrayConfig) -> None:
    """Stop with one line when a checkpoint lost its newest offsets or a table is behind the checkpoint of
    a query that writes it."""
    mend_stale_checksums(config)
    for query in QUERIES:
        lost = commits_without_offsets(config.checkpoint_path(query))
        if lost:
            raise CheckpointDamagedError(
                f"the checkpoint of query {query} lost offsets/{lost[0]} (under {config.checkpoint_path(query)}) "
                f"while batch {lost[0]} is committed: run 'xray recover --query {query}' to mend it (the batch "
                "is planned again from landing; the tables keep what they hold)")
    for query in QUERIES:
        last, lags = query_lags(config, query)
        if lags:
            lag = lags[0]
            more = f" (and {len(lags) - 1} more table(s))" if len(lags) > 1 else ""
            raise CheckpointAheadError(
                f"table {lag.table} {_holds(lag)} of query {query} but the query's checkpoint committed batch "
                f"{last}{' (which wrote it in batch ' + str(lag.needed) + ')' if lag.needed != last else ''}"
                f"{more}: a Delta commit was lost. Restore the missing commit under "
                f"{config.table_path(lag.table)}/_delta_log from a backup, or run 'xray recover --query {query}' "
                "to replay the batches the table lacks (README: Recovery)"
            )


@dataclass
class Rewind:
    """What `recover` did to one query's checkpoint."""

    query: str
    last: int
    target: int
    removed: list[str]
    mended: list[int] = field(default_factory=list)  # commits whose offsets were lost, removed first

    def describe(self) -> str:
        lost = ""
        if self.mended:
            lost = f"removed {', '.join(f'commits/{k}' for k in self.mended)} (its offsets file was lost); "
            if self.last == self.target:
                return f"{self.query}: {lost}the next 'xray stream' plans batch {self.mended[0]} again"
        if self.last == self.target:
            return f"{self.query}: checkpoint and tables agree at batch {self.last}; nothing to do"
        first = f"batch {self.target + 1}" if self.target + 1 == self.last else \
            f"batches {self.target + 1}..{self.last}"
        return (f"{self.query}: {lost}rewound the checkpoint from batch {self.last} to "
                f"{'before batch 0' if self.target < 0 else 'batch ' + str(self.target)} "
                f"(removed {len(self.removed)} offsets/commits file(s)); the next 'xray stream' replays {first}")


def rewind_target(last: int, lags: list[Lag]) -> int:
    """The last batch every table holds: each lagging table holds its transactions up to ``held``."""
    return min([last, *(-1 if lag.held is None else lag.held for lag in lags)])


def rewind_checkpoint(checkpoint: Path, target: int) -> list[str]:
    """Delete ``offsets/<k>`` and ``commits/<k>`` (and Hadoop's ``.<k>.crc``) for every k > target."""
    removed = []
    for folder in ("offsets", "commits"):
        directory = checkpoint / folder
        if not directory.is_dir():
            continue
        for name in sorted(os.listdir(directory)):
            batch = name[1:-4] if name.startswith(".") and name.endswith(".crc") else name
            if batch.isdigit() and int(batch) > target:
                (directory / name).unlink()
                removed.append(f"{folder}/{name}")
    return removed


def recover(config: XrayConfig, queries: tuple[str, ...] = QUERIES) -> list[Rewind]:
    """Rewind each query's checkpoint to the last batch every table it writes holds (see module docstring).

    Holds the stream lock: a running stream would race with the rewind.
    """
    from streaming.core.locks import stream_lock

    results = []
    with stream_lock(config.root):
        mend_stale_checksums(config)
        for query in queries:
            checkpoint = config.checkpoint_path(query)
            mended = commits_without_offsets(checkpoint)
            if mended:
                rewind_checkpoint(checkpoint, mended[0] - 1)  # only commits: no offsets file is that new
            last, lags = query_lags(config, query)
            if last is None:
                if mended:
                    results.append(Rewind(query, -1, -1, [], mended))
                continue
            target = rewind_target(last, lags)
            removed = rewind_checkpoint(checkpoint, target) if target < last else []
            results.append(Rewind(query, last, target, removed, mended))
    return results


def mark_empty_batch(lakehouse, query: str, batch_id: int) -> None:  # Lakehouse, lazily
    """Commit the events transaction of a batch that wrote nothing (no rows), so the start-up check can
    tell "empty batch" from "lost commit". Skipped when the transaction is already held (a replay)."""
    from streaming.lakehouse.deltars import DeltaRsCommitMessage, commit_files
    from streaming.lakehouse.enginechoice import DELTA_RS_FORMAT

    txn = (f"{query}:events", batch_id)
    if lakehouse.format == DELTA_RS_FORMAT:
        commit_files(lakehouse.path(PIPELINE_EVENTS.name), PIPELINE_EVENTS.schema, [DeltaRsCommitMessage()],
                     "append", *txn)
    else:
        lakehouse.append(lakehouse.spark.createDataFrame([], PIPELINE_EVENTS.schema), PIPELINE_EVENTS.name, txn)
