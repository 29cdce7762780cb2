"""The retrain cycle, one at a time per lakehouse: retrain, rescore when gold lags the champion, metrics.

Run by a thread of continuous `xray stream` (`retrain_task`) or by `xray retrain --every` (`RetrainLoop` in
the main thread), when `batch.training.schedule` says it is due; `xray retrain` by hand runs the retrain
step under the same lock (`run_cycle` with ``full=False``). Every cycle that ends, done or failed, leaves
one ``retrain_runs`` row: the schedule's memory across restarts. A cycle cut short (the process stopped or
killed) leaves none and is due again at the next start.

Rescore runs when gold holds predictions of another version than the champion: after every promotion, and
also when a rescore of an earlier cycle failed (a promotion alone would not tell the next cycle). It runs
before metrics, so the report shows gold as re-scored and a failing report never leaves gold on the old
model. (Predictions of images without features of the champion's version stay stale, as `xray rescore`
says: each cycle then asks again, and re-scores none of them.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from batch.training import schedule
from streaming.core.config import XrayConfig
from streaming.core.errors import InsufficientDataError, LakehouseBusyError
from streaming.core.locks import held_lock
from streaming.lakehouse.catalog import GOLD_PREDICTIONS
from streaming.lakehouse.engine import Lakehouse

__all__ = ["RETRAIN_LOCK", "CycleResult", "RetrainLoop", "retrain_lock", "retrain_task", "run_cycle"]

log = logging.getLogger(__name__)

RETRAIN_LOCK = "retrain.lock"
# Spark jobs of a cycle run in their own scheduler pool (the session schedules FAIR), so a retrain inside
# `xray stream` shares the cores with the micro-batches instead of queueing them behind its jobs.
SPARK_POOL = "xray-retrain"


def retrain_lock(root: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``<root>/_locks/retrain.lock`` (an flock, released when the process dies) during a cycle or an
    `xray retrain`; `LakehouseBusyError` at once when another holds it."""
    return held_lock(root / "_locks" / RETRAIN_LOCK, lambda holder: (
        f"a retrain on {root} is running ({holder}); two would register competing versions: let it finish "
        "(its outcome goes to retrain_runs), or run xray retrain again later"))


@dataclass
class CycleResult:
    """What a cycle did; ``row`` is its ``retrain_runs`` row."""

    row: dict

    def summary(self) -> str:
        row = self.row
        seconds = (row["finished_time"] - row["started_time"]).total_seconds()
        done = (f"model version {row['model_version']} {'promoted' if row['promoted'] else 'not promoted'}"
                if row["model_version"] else row["outcome"])
        rescored = f"; {row['rescored_rows']} prediction(s) rescored" if row["rescored_rows"] is not None else ""
        return f"cycle ({row['trigger']}) {row['outcome']} in {seconds:.0f} s: {done}{rescored}"


def _scrubbed(config: XrayConfig, error: BaseException) -> str:
    """The error's first line, paths as keyed hashes (retrain_runs and logs hold no raw path)."""
    from streaming.ops.audit import scrub

    text = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return scrub(text, {}, config.patient_salt())[:1000]


@contextlib.contextmanager
def _labelled_spark_jobs(spark: SparkSession) -> Iterator[None]:
    """This thread's Spark jobs while the block runs: in the retrain pool, named in the Spark UI; the
    thread's properties as they were afterwards (best effort: a Databricks shared cluster may refuse)."""
    properties = {"spark.scheduler.pool": SPARK_POOL, "spark.jobGroup.id": SPARK_POOL,
                  "spark.job.description": "xray retrain cycle"}
    previous: dict[str, str | None] = {}
    try:
        context = spark.sparkContext
        previous = {key: context.getLocalProperty(key) for key in properties}
        for key, value in properties.items():
            context.setLocalProperty(key, value)
    except Exception:  # the cycle runs in the default pool then
        pass
    try:
        yield
    finally:
        for key, value in previous.items():
            with contextlib.suppress(Exception):
                context.setLocalProperty(key, value)


def stale_predictions(config: XrayConfig) -> int:
    """Gold predictions made by another version than the champion (0 without a champion), via delta-rs."""
    from streaming.core.registry import champion

    ref = champion(config)
    if ref is None:
        return 0
    import pyarrow.compute as pc

    from streaming.lakehouse.tables import read_arrow

    # Compared after the read: a dataset filter fails on the `string_view` files a rescore's MERGE writes.
    rows = read_arrow(config, GOLD_PREDICTIONS.name, columns=["model_name", "model_version"])
    if rows is None or not rows.num_rows:
        return 0
    same = pc.and_(pc.equal(rows.column("model_name"), ref.name), pc.equal(rows.column("model_version"), ref.version))
    return rows.num_rows - pc.sum(pc.fill_null(same, False).cast("int64")).as_py()


def _steps(spark: SparkSession, config: XrayConfig, row: dict, seed: int, force_promote: bool, full: bool) -> None:
    """Retrain, then (``full``) rescore when gold lags the champion and metrics; fills ``row`` as it goes."""
    from batch.training.retrain import retrain

    # The budget (retrain_max_minutes) counts from the cycle's start: Spark's start and the collection too.
    result = retrain(spark, config, seed=seed, force_promote=force_promote, started=row["started_time"].timestamp())
    row.update(model_version=result.version.version, promoted=result.promoted, message=result.reason)
    if not full:
        return
    if stale_predictions(config):
        from batch.training.rescore import rescore

        row["rescored_rows"] = rescore(spark, config).updated_rows
    from batch.evaluation.metrics import run_metrics

    run_metrics(spark, config)


def run_cycle(spark: SparkSession | Callable[[], SparkSession], config: XrayConfig,
              trigger: str = schedule.TRIGGER_MANUAL, runner: str = "xray retrain", *, seed: int = 0,
              force_promote: bool = False, full: bool = True, locked: bool = False,
              stopping: Callable[[], bool] = lambda: False) -> CycleResult:
    """One cycle under the retrain lock (unless the caller holds it: ``locked``), recorded in ``retrain_runs``
    and its error, if any, raised again after the row is written. ``spark`` may be a factory: Spark starts
    only once the lock is held. ``full`` False: the retrain step alone (`xray retrain` by hand). A cycle that
    ends by a stop (an interrupt, or an error while ``stopping()``) is not recorded: it is due again."""
    if not locked:
        with retrain_lock(config.root):
            return run_cycle(spark, config, trigger, runner, seed=seed, force_promote=force_promote, full=full,
                             locked=True, stopping=stopping)
    from streaming.ops.audit import current_run_id

    counts = schedule.label_counts(config)
    row = {"trigger": trigger, "runner": runner, "started_time": dt.datetime.now(dt.timezone.utc),
           "outcome": schedule.OK, "labelled_rows": counts.labelled, "feedback_rows": counts.feedback,
           "audit_run_id": current_run_id(), "model_version": None, "promoted": None, "rescored_rows": None,
           "message": None}
    try:
        session = _started(spark)
        with _labelled_spark_jobs(session):
            _steps(session, config, row, seed, force_promote, full)
    except Exception as error:
        if stopping():
            raise
        row.update(outcome=schedule.INSUFFICIENT if isinstance(error, InsufficientDataError) else schedule.ERROR,
                   message=_scrubbed(config, error))
        _record(config, row)
        raise
    # Not reached by a stop (KeyboardInterrupt, SIGTERM): a cycle cut short is due again at the next start.
    _record(config, row)
    return CycleResult(row)


def _started(spark: SparkSession | Callable[[], SparkSession]) -> SparkSession:
    """The session; a factory's start (a JVM: 10 to 30 s) is shown as retrain's first step, not silence."""
    if not callable(spark):
        return spark
    from batch.training.retrain import PROGRESS_TICK_SECONDS
    from streaming.core.progress import progress

    with progress(None, "retrain", unit="step", tick=PROGRESS_TICK_SECONDS) as bar:
        bar.update(0, step="starting Spark")
        return spark()


def _record(config: XrayConfig, row: dict) -> None:
    row["finished_time"] = dt.datetime.now(dt.timezone.utc)
    try:
        schedule.record_run(config, row)
    except Exception as error:  # the cycle's own outcome (or error) is what the caller needs
        log.warning("retrain: could not record the cycle in retrain_runs (%s); the schedule counts from the "
                    "cycle recorded before it", _scrubbed(config, error))


@dataclass
class RetrainLoop:
    """Asks `schedule.due` and runs a cycle when due, until ``stop_event``: the body of `xray retrain
    --every` and of the stream's retrain thread. A failed cycle is one WARNING line and the loop goes on;
    a cycle in progress when another process holds the lock is skipped until the next check."""

    config: XrayConfig
    policy: schedule.RetrainPolicy
    spark: Callable[[], SparkSession]
    runner: str
    seed: int = 0
    cycles: int = 0  # cycles run (whatever their end)
    failures: int = 0

    def run(self, stop_event: threading.Event) -> None:
        announce = True  # the schedule at INFO once at start and after each cycle; every check at DEBUG
        while not stop_event.is_set():
            cycles = self.cycles
            decision = self.step(stop_event)
            if decision is None:
                stop_event.wait(max(schedule.MIN_WAIT_SECONDS, self.policy.check_seconds))
                continue
            log.log(logging.INFO if announce or self.cycles != cycles else logging.DEBUG, "retrain: %s",
                    decision.reason)
            announce = False
            stop_event.wait(decision.wait_seconds)

    def step(self, stop_event: threading.Event) -> schedule.Decision | None:
        """One check, and a cycle when due; the decision to wait on afterwards (None: the check failed)."""
        cycle = False
        try:
            decision = schedule.due(self.config, policy=self.policy)
            if not decision.due:
                return decision
            with retrain_lock(self.config.root):
                decision = schedule.due(self.config, policy=self.policy)  # another process may have just run one
                if not decision.due:
                    return decision
                log.info("retrain: cycle starts (%s)", decision.reason)
                self.cycles, cycle = self.cycles + 1, True
                result = run_cycle(self.spark, self.config, decision.trigger, self.runner, seed=self.seed,
                                   locked=True, stopping=stop_event.is_set)
            log.info("retrain: %s", result.summary())
        except LakehouseBusyError:
            log.info("retrain: another retrain on this lakehouse is running; checking again later")
        except InsufficientDataError as error:
            log.info("retrain: %s (recorded; the next cycle waits for new labels)", _scrubbed(self.config, error))
        except Exception as error:  # retraining must never stop the stream or the loop
            if stop_event.is_set():
                log.info("retrain: the cycle ended with the stop; it runs again at the next start")
                return None
            self.failures += 1
            log.warning("retrain: %s (%s); %s", "the cycle failed" if cycle else "the check failed",
                        _scrubbed(self.config, error),
                        "recorded in retrain_runs, the next cycle retries" if cycle else "it runs again later")
            return None
        try:
            return schedule.due(self.config, policy=self.policy)
        except Exception:  # the next step reports it
            return None


def retrain_task(config: XrayConfig) -> Callable[[Lakehouse, threading.Event], threading.Thread] | None:
    """The stream's background task (`run_stream`'s ``background``): a daemon thread running `RetrainLoop`
    on the stream's SparkSession; None when both triggers are off."""
    policy = schedule.RetrainPolicy.from_config(config)
    if not policy.enabled:
        return None

    def start(lakehouse: Lakehouse, stop_event: threading.Event) -> threading.Thread:
        loop = RetrainLoop(config, policy, lambda: lakehouse.spark, "xray stream")
        return threading.Thread(target=loop.run, args=(stop_event,), name="xray-retrain", daemon=True)

    return start
