"""The threads `xray stream` runs beside its queries in continuous mode: the periodic maintenance pass and
the inbox watcher, and the join that gives each the time left of the stop's budget. None of them is on the
hot path; a failure in one is a WARNING line and the stream goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from streaming.core.config import XrayConfig
from streaming.core.errors import LakehouseBusyError, first_line
from streaming.lakehouse.engine import Lakehouse
from streaming.lakehouse.enginechoice import NATIVE_FORMAT
from streaming.pipeline.stopping import StopBudget, waiting_for

log = logging.getLogger(__name__)

__all__ = ["PeriodicMaintenance", "join_within", "start_maintenance", "start_watcher"]


def join_within(budget: StopBudget, maintenance: threading.Thread | None, tasks: Sequence[threading.Thread],
                 watcher: threading.Thread | None, warming: threading.Thread | None) -> None:
    """The background threads end once the stop event is set; each may finish what it is doing (a
    maintenance pass its table, a retrain its cycle) within what is left of the stop's budget."""
    waits = [(maintenance, "the periodic maintenance pass", None)]
    waits += [(thread, f"the background task {thread.name}", None) for thread in tasks]
    waits += [(watcher, "the inbox watcher", 10.0),
              (warming, "the champion model's loading", 60.0)]  # never leave it loading native libraries
    for thread, what, cap in waits:
        if thread is not None and thread.is_alive():
            waiting_for(what)
            thread.join(timeout=budget.remaining(cap))


class PeriodicMaintenance(threading.Thread):
    """`maintain_tables` every ``maintenance_interval_minutes`` beside the queries, first after one interval.

    Off the hot path: a daemon thread running delta-rs (no Spark job; with the native engine Delta Lake's
    OPTIMIZE/VACUUM, Spark jobs in the default pool), one pass at a time; a failed
    pass is one WARNING line and the stream goes on. Each pass records its ``pipeline_events`` row.
    """

    def __init__(self, lakehouse: Lakehouse, stop_event: threading.Event):
        super().__init__(name="xray-maintenance", daemon=True)
        self.lakehouse = lakehouse
        self.stop_event = stop_event
        self.interval = lakehouse.config.maintenance_interval_minutes * 60
        self.passes = 0

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.run_pass()

    def run_pass(self) -> None:
        from streaming.lakehouse.maintenance import maintain_tables, record_maintenance

        try:
            native = self.lakehouse.spark if self.lakehouse.format == NATIVE_FORMAT else None
            report = maintain_tables(self.lakehouse.config, should_stop=self.stop_event.is_set, spark=native)
            if report.tables:
                record_maintenance(self.lakehouse.config, report)
            self.passes += 1
            log.info("maintenance: %s", report.summary())
        except LakehouseBusyError:
            log.info("maintenance: skipped the periodic pass: another pass (xray maintain) is running")
        except Exception as error:  # maintenance must never stop the stream
            log.warning("maintenance: the periodic pass failed (%s); the stream goes on, the next pass "
                        "retries", first_line(error))


def start_maintenance(lakehouse: Lakehouse, stop_event: threading.Event) -> PeriodicMaintenance | None:
    if lakehouse.config.maintenance_interval_minutes <= 0:
        return None
    thread = PeriodicMaintenance(lakehouse, stop_event)
    thread.start()
    return thread


def start_watcher(config: XrayConfig, inbox: str, stop_event: threading.Event) -> threading.Thread:
    from streaming.ingest.watch import watch_inbox

    thread = threading.Thread(target=watch_inbox, args=(config, inbox), kwargs={"stop_event": stop_event},
                              name="xray-watch", daemon=True)
    thread.start()
    return thread
