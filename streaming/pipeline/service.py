"""``xray stream``: landing → bronze → silver → gold as streaming queries, each with its own checkpoint.

By default one query does it all: bronze's micro-batch reads each landing file once on the executors,
writes bronze, decodes and inspects, and the driver writes silver and gold from the small results (see
`plan_queries`). Silver alone re-reads bronze as a Delta stream, gold alone reads silver features. In
``once`` mode (availableNow) the queries run one after the other until the landing folder is drained; in
continuous mode they run side by side on a processing-time trigger until Ctrl-C, SIGTERM or the timeout,
and stop at a micro-batch boundary. Images that reach silver while no model is champion are scored when
one is (checked every few seconds). A query that fails on something transient is restarted from its
checkpoint (exactly once either way); errors a restart cannot fix stop the service with their message.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from streaming.bronze.source import landing_stream
from streaming.core.config import XrayConfig
from streaming.core.errors import XrayError, first_line, transported
from streaming.core.locks import stream_lock
from streaming.gold import scoring as gold
from streaming.lakehouse.catalog import ALL_TABLES, BRONZE_IMAGES, SILVER_FEATURES
from streaming.lakehouse.engine import Lakehouse, await_termination, translate_errors
from streaming.lakehouse.events import BatchEvent
from streaming.lakehouse.failures import check_table_logs
from streaming.pipeline import alerting, fused
from streaming.pipeline.background import join_within, start_maintenance, start_watcher
from streaming.pipeline.consistency import check_checkpoints, mark_empty_batch
from streaming.pipeline.drain import DrainProgress
from streaming.pipeline.plan import LAYER_ORDER, plan_queries
from streaming.pipeline.stopping import StopBudget, install_stop_signals, waiting_for
from streaming.silver.refeature import features_status, stale_features_message

log = logging.getLogger(__name__)

# A background task of continuous mode (`run_stream`'s ``background``): given the lakehouse and the stop
# event, a thread to start beside the queries, which ends once the event is set. Tasks of upper layers (the
# periodic retrain of `batch.retraining`) reach the service this way, without an upward import.
BackgroundTask = Callable[[Lakehouse, threading.Event], threading.Thread]

MAX_RESTARTS = 5
QUERY_STOP_SECONDS = 15.0  # of the stop's budget, kept for each query's own stop
CHAMPION_POLL_SECONDS = 5.0


def foreach_batch(process: Callable[[Lakehouse, DataFrame, int], object], lakehouse: Lakehouse):
    """Wrap a batch function for ``foreachBatch``: our named errors keep their name across the JVM."""

    def run(batch: DataFrame, batch_id: int) -> None:
        try:
            # Storage failures in the driver's part of the batch become named errors here: past the JVM
            # only their text would remain.
            with translate_errors():
                result = process(lakehouse, batch, batch_id)
                if isinstance(result, BatchEvent) and result.input_rows == 0:
                    # An empty batch writes no events row; its events transaction still marks it done.
                    mark_empty_batch(lakehouse, result.query, batch_id)
        except XrayError as error:
            raise RuntimeError(transported(type(error), str(error))) from error

    return run


def _trigger(config: XrayConfig, once: bool) -> dict:
    return {"availableNow": True} if once else {"processingTime": f"{config.trigger_seconds} seconds"}


def drop_orphan_checksums(checkpoint: Path) -> None:
    """Remove the ``.N.crc`` sidecars of offset/commit entries that are gone (lost, or removed by `xray
    recover`): Spark would refuse to write entry N again, blaming "multiple streaming queries"."""
    for log_name in ("offsets", "commits"):
        folder = checkpoint / log_name
        if not folder.is_dir():
            continue
        for sidecar in folder.glob(".*.crc"):
            if not (folder / sidecar.name[1:-4]).exists():
                sidecar.unlink(missing_ok=True)


def start_query(lakehouse: Lakehouse, name: str, inline: Sequence[str], once: bool) -> StreamingQuery | None:
    """Start one streaming query; None when it cannot run yet (gold alone without a champion model)."""
    spark, config = lakehouse.spark, lakehouse.config
    drop_orphan_checksums(config.checkpoint_path(name))
    if name != "bronze":  # reads a table as a stream: its checkpoint must be this engine's
        lakehouse.check_stream_checkpoint(config.checkpoint_path(name))
    if name == "bronze":
        source = landing_stream(spark, config)
        process = functools.partial(fused.process_bronze_batch, silver_inline="silver" in inline,
                                    gold_inline="gold" in inline)
    elif name == "silver":
        # Bronze only appends, but for an erasure (`xray forget`): its delete commit is skipped, not re-read.
        source = lakehouse.read_stream(BRONZE_IMAGES.name, maxFilesPerTrigger=config.max_files_per_trigger,
                                       skipChangeCommits=True)
        process = functools.partial(fused.process_silver_batch, gold_inline="gold" in inline)
    elif name == "gold":
        if not gold.champion_available(config):
            return None
        source = lakehouse.read_stream(SILVER_FEATURES.name, maxFilesPerTrigger=config.max_files_per_trigger,
                                       skipChangeCommits=True)
        process = gold.process_gold_batch
    else:
        raise ValueError(f"unknown query {name}")
    with translate_errors():
        return (
            source.writeStream.queryName(name)
            .foreachBatch(foreach_batch(process, lakehouse))
            .option("checkpointLocation", str(config.checkpoint_path(name)))
            .trigger(**_trigger(config, once))
            .start()
        )


@dataclass
class StreamService:
    """The running queries of ``xray stream`` and how to stop them."""

    lakehouse: Lakehouse
    layers: Sequence[str]
    once: bool = False
    stop_event: threading.Event = field(default_factory=threading.Event)
    queries: dict[str, StreamingQuery] = field(default_factory=dict)
    restarts: dict[str, list[float]] = field(default_factory=dict)
    next_champion_check: float = 0.0
    scored_for: object = None  # the champion the last catch-up of unscored images ran for
    budget: StopBudget | None = None  # set when the stop begins
    processed: int = 0  # rows the queries of ``once`` read, and images the catch-up scored: 0 is "nothing new"

    @property
    def plan(self) -> dict[str, tuple[str, ...]]:
        return plan_queries(self.layers)

    @property
    def gold_inline(self) -> bool:
        return any("gold" in inline for inline in self.plan.values())

    def catch_up_gold(self) -> None:
        """Score silver images that have no prediction yet, once per champion (images that reached silver
        while no champion existed) and again after batches left images pending (the champion could not be
        loaded); cheap to skip while the champion is the same and nothing is pending."""
        config = self.lakehouse.config
        ref = gold.champion(config)
        was_pending = gold.pending(config)
        if ref is None or (ref == self.scored_for and not was_pending):
            return
        try:
            written = gold.score_unscored(self.lakehouse)
        except Exception as error:  # the model still cannot be loaded: the next tick tries again
            log.warning("gold: catching up failed (%s); trying again in %.0f s", first_line(error)[:200],
                        CHAMPION_POLL_SECONDS)
            return
        self.scored_for = ref
        self.processed += written
        if was_pending:
            alerting.model_available(config, written, f"{ref.name} v{ref.version}")
        elif written:
            log.info("gold: scored %d image(s) that reached silver before model %s v%s was champion",
                     written, ref.name, ref.version)

    def run_once(self) -> None:
        """Drain landing through every query, one after the other."""
        for name, inline in self.plan.items():
            query = start_query(self.lakehouse, name, inline, once=True)
            if query is None:
                log.warning("gold: no model has the 'champion' alias yet; run 'xray retrain' to score images")
                continue
            self.queries[name] = query
            drain = DrainProgress(name)  # files out of the backlog, per micro-batch: a bar or INFO lines
            try:
                while not await_termination(query, timeout=0.5):
                    drain.poll(query)
                    if self.stop_event.is_set():
                        self.stop()
                        return
                drain.poll(query)
            finally:
                drain.close()
                self.processed += drain.rows
        if self.gold_inline:
            self.catch_up_gold()

    def run_continuous(self, timeout: float | None = None) -> None:
        """Run the queries side by side until stopped; restart failed queries from their checkpoints."""
        deadline = time.monotonic() + timeout if timeout else None
        waiting_logged = False
        try:
            while not self.stop_event.is_set():
                for name, inline in self.plan.items():
                    query = self.queries.get(name)
                    if query is not None and query.isActive:
                        continue
                    if query is not None:
                        self._handle_stopped(name, query)
                    if name == "gold" and time.monotonic() < self.next_champion_check:
                        continue
                    started = start_query(self.lakehouse, name, inline, once=False)
                    if started is None:
                        self.next_champion_check = time.monotonic() + CHAMPION_POLL_SECONDS
                        if not waiting_logged:
                            log.warning("gold: waiting for a model with the 'champion' alias (xray retrain); "
                                        "new images wait in silver until then")
                            waiting_logged = True
                        continue
                    log.info("%s: streaming%s (checkpoint %s)", name,
                             f", with {' and '.join(inline)} in its batches" if inline else "",
                             self.lakehouse.config.checkpoint_path(name))
                    self.queries[name] = started
                if self.gold_inline and time.monotonic() >= self.next_champion_check:
                    # Looking the registry up costs a little CPU: not at every tick.
                    self.next_champion_check = time.monotonic() + CHAMPION_POLL_SECONDS
                    self.catch_up_gold()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.stop_event.wait(min(1.0, self.lakehouse.config.trigger_seconds))
        finally:
            self.stop()

    def _handle_stopped(self, layer: str, query: StreamingQuery) -> None:
        error = query.exception()
        if error is None:
            return
        try:
            with translate_errors():
                raise error
        except XrayError:
            raise
        except Exception:  # anything else may be transient: restart from the checkpoint
            recent = [t for t in self.restarts.get(layer, []) if time.monotonic() - t < 600]
            if len(recent) >= MAX_RESTARTS:
                raise
            self.restarts[layer] = [*recent, time.monotonic()]
            alerting.query_failed(self.lakehouse.config, layer, error)
            log.error("%s: query failed (%s); restarting from its checkpoint", layer, first_line(error))
            time.sleep(min(30.0, 2.0 ** len(recent)))

    def stop_budget(self) -> StopBudget:
        """The time left of this stop, counted from its first call (`streaming.pipeline.stopping`)."""
        if self.budget is None:
            self.budget = StopBudget()
        return self.budget

    def stop(self) -> None:
        """Stop every query at a micro-batch boundary. A running batch may end within the stop's budget,
        less `QUERY_STOP_SECONDS` kept for the query's own stop; past that the query is stopped where it is
        and its unfinished batch runs again at the next start."""
        budget = self.stop_budget()
        for layer, query in list(self.queries.items()):
            waiting_for(f"the {layer} query's running micro-batch")
            while (query.isActive and query.status.get("isTriggerActive")
                   and budget.remaining() > QUERY_STOP_SECONDS):
                time.sleep(0.05)
            if not query.isActive:
                continue
            waiting_for(f"the {layer} query to stop")
            asked = time.monotonic()
            try:
                query.stop()  # bounded by spark.sql.streaming.stopTimeout (`bound_query_stops`)
            except Exception as error:  # stopping anyway: the checkpoint has the batch
                # Said as it happened: a timeout only when the stop's time ran out (a JVM that went away
                # fails the call at once).
                spent = time.monotonic() - asked
                how = (f"did not stop within {QUERY_STOP_SECONDS:.0f} s" if spent >= 0.9 * QUERY_STOP_SECONDS else
                       f"could not be stopped ({type(error).__name__} after {spent:.1f} s)")
                log.warning("%s: the query %s: %s; its unfinished micro-batch runs again at the next start",
                            layer, how, first_line(error)[:200])
            else:
                log.info("%s: stopped", layer)


def bound_query_stops(spark: SparkSession) -> None:
    """``query.stop()`` waits for the query's thread with no limit by default: give it one."""
    try:
        spark.conf.set("spark.sql.streaming.stopTimeout", str(int(QUERY_STOP_SECONDS * 1000)))
    except Exception as error:  # a platform that fixes it keeps its own; the watchdog remains
        log.debug("spark.sql.streaming.stopTimeout not set: %s", error)


def run_stream(
    spark: SparkSession,
    config: XrayConfig,
    layers: Sequence[str] = LAYER_ORDER,
    once: bool = False,
    watch_inbox: str | None = None,
    timeout: float | None = None,
    stop_event: threading.Event | None = None,
    background: Sequence[BackgroundTask] = (),
) -> StreamService:
    """Run the streaming layers (see module docstring). Returns the service after it stopped.

    ``background`` tasks run beside the queries in continuous mode (off the hot path: their failures are
    theirs to report) and are joined when the service stops, within the stop's budget (`stopping`).

    Holds the lakehouse's stream lock throughout: a second stream on the same lakehouse is refused at
    once (two would race on the same checkpoints and tables, and on the orphan clean-up of bronze).
    """
    # Alerts: a monitor beside continuous queries, one when the stream stops on an error, flushed at the end.
    with stream_lock(config.root), alerting.watching(spark, config, layers, once):
        return _run_locked(spark, config, layers, once, watch_inbox, timeout, stop_event, background)


def _run_locked(spark: SparkSession, config: XrayConfig, layers: Sequence[str], once: bool,
                watch_inbox: str | None, timeout: float | None, stop_event: threading.Event | None,
                background: Sequence[BackgroundTask] = ()) -> StreamService:
    lakehouse = Lakehouse(spark, config)
    bound_query_stops(spark)
    # Before any table is created or written: a damaged log is named with its file, not a parser error.
    check_table_logs(config.tables_dir, [spec.name for spec in ALL_TABLES])
    # Before tables are created: a table that vanished behind its checkpoint must not come back empty.
    check_checkpoints(config)
    lakehouse.ensure_tables()
    stale = stale_features_message(features_status(lakehouse))
    if stale:
        log.warning("silver: %s", stale)
    config.landing_dir.mkdir(parents=True, exist_ok=True)
    ordered = [layer for layer in LAYER_ORDER if layer in layers]
    service = StreamService(lakehouse, ordered, once, stop_event or threading.Event())
    warming = gold.warm_up(config) if "gold" in ordered else None  # a lookup when `xray stream` loaded it
    watcher = start_watcher(config, watch_inbox, service.stop_event) if watch_inbox else None
    restore = install_stop_signals(service.stop_event)
    maintenance = None
    tasks: list[threading.Thread] = []
    try:
        if service.stop_event.is_set():
            return service  # asked to stop before anything started
        if once:
            service.run_once()
        else:
            maintenance = start_maintenance(lakehouse, service.stop_event)
            for task in background:
                tasks.append(task(lakehouse, service.stop_event))
                tasks[-1].start()
            service.run_continuous(timeout)
    finally:
        restore()
        service.stop_event.set()
        join_within(service.stop_budget(), maintenance, tasks, watcher, warming)
    return service
